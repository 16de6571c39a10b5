package vsphere

import (
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// entity is a folder, a datacenter or a vApp as the inventory watches
// it: what the VMs' inventory paths are made of. A vApp's place is its
// parent vApp when nested, else its folder.
type entity struct {
	name         string
	parent, vApp types.ManagedObjectReference
}

// up is where e sits.
func (e entity) up() types.ManagedObjectReference {
	if e.vApp.Value != "" {
		return e.vApp
	}
	return e.parent
}

// applyEntities applies an update set of the folders' collector and
// computes the paths again.
func (inv *Inventory) applyEntities(set *types.UpdateSet, s *syncState) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, fs := range set.FilterSet {
		for _, u := range fs.ObjectSet {
			if !s.synced {
				s.seen[u.Obj] = true
			}
			inv.applyEntityLocked(u)
		}
	}
	inv.paths = inv.pathsLocked()
}

// newPlaces reports whether set moves a VM to a folder or vApp the
// inventory does not know yet.
func (inv *Inventory) newPlaces(set *types.UpdateSet) bool {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	for _, fs := range set.FilterSet {
		for _, u := range fs.ObjectSet {
			for _, p := range u.ChangeSet {
				if ref, ok := p.Val.(types.ManagedObjectReference); ok && (p.Name == "parent" || p.Name == "parentVApp") {
					if _, known := inv.entities[ref]; !known {
						return true
					}
				}
			}
		}
	}
	return false
}

// applyEntityLocked applies an update of a folder, datacenter or vApp.
func (inv *Inventory) applyEntityLocked(u types.ObjectUpdate) {
	if u.Kind == types.ObjectUpdateKindLeave {
		delete(inv.entities, u.Obj)
		return
	}
	e := inv.entities[u.Obj]
	for _, p := range u.ChangeSet {
		switch v := p.Val.(type) {
		case string:
			if p.Name == "name" {
				e.name = v
			}
		case types.ManagedObjectReference:
			switch p.Name {
			case "parent", "parentFolder":
				e.parent = v
			case "parentVApp":
				e.vApp = v
			}
		}
	}
	inv.entities[u.Obj] = e
}

// maxDepth bounds an inventory path: a parent loop (which vCenter never
// sends, but a bad update could) ends there instead of recursing forever.
const maxDepth = 64

// pathsLocked computes every folder's and datacenter's inventory path,
// as govc and the find package spell them: the root folder is "", and
// each entity is its parent's path, "/" and its name (vSphere escapes a
// "/" in a name as %2f). Entities not below the root folder get none.
func (inv *Inventory) pathsLocked() map[types.ManagedObjectReference]string {
	paths := map[types.ManagedObjectReference]string{inv.c.vim.ServiceContent.RootFolder: ""}
	var pathOf func(ref types.ManagedObjectReference, depth int) (string, bool)
	pathOf = func(ref types.ManagedObjectReference, depth int) (string, bool) {
		if p, ok := paths[ref]; ok {
			return p, true
		}
		e, ok := inv.entities[ref]
		if !ok || depth > maxDepth {
			return "", false
		}
		parent, ok := pathOf(e.up(), depth+1)
		if !ok {
			return "", false
		}
		paths[ref] = parent + "/" + e.name
		return paths[ref], true
	}
	for ref := range inv.entities {
		pathOf(ref, 0)
	}
	return paths
}

// placeOf is where vm sits: its folder or, in a vApp (where vCenter
// leaves parent unset), its vApp.
func placeOf(vm *mo.VirtualMachine) *types.ManagedObjectReference {
	if vm.Parent != nil {
		return vm.Parent
	}
	return vm.ParentVApp
}

// sameRef compares two optional references.
func sameRef(a, b *types.ManagedObjectReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
