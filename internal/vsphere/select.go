package vsphere

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Filter selects VMs; every field given must match, and the zero Filter
// selects every VM.
type Filter struct {
	// Name is a glob over the VM's name (path.Match syntax).
	Name string
	// Folder is an inventory path such as /DC0/vm/ocp: VMs in that folder
	// or below it, in vApps too.
	Folder string
	// Tag is a vSphere tag the VM must carry.
	Tag Tag
}

// VMInfo describes a VM for discovery.
type VMInfo struct {
	Name  string `json:"name"`
	Power string `json:"power"`
	UUID  string `json:"uuid"`
	// InstanceUUID is vCenter's id of the VM (see machine.Identity).
	InstanceUUID string   `json:"instanceUuid"`
	Firmware     string   `json:"firmware"`
	MACs         []string `json:"macs"`
}

// NamedVM is a VM by name and BIOS UUID (lower case): what enrolment needs
// of each of thousands of VMs, without the rest of VMInfo.
type NamedVM struct{ Name, UUID string }

// List returns the VMs f selects, sorted by name.
func (inv *Inventory) List(ctx context.Context, f Filter) ([]VMInfo, error) {
	var out []VMInfo
	err := inv.each(ctx, f, func(vm *mo.VirtualMachine) {
		id := identity(vm)
		out = append(out, VMInfo{Name: vm.Name, Power: powerState(vm.Runtime.PowerState).String(), UUID: id.UUID, InstanceUUID: id.InstanceUUID, Firmware: vm.Config.Firmware, MACs: id.MACs})
	})
	slices.SortFunc(out, func(a, b VMInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, err
}

// Matching returns the name and BIOS UUID of the VMs f selects, unsorted.
func (inv *Inventory) Matching(ctx context.Context, f Filter) ([]NamedVM, error) {
	var out []NamedVM
	err := inv.each(ctx, f, func(vm *mo.VirtualMachine) {
		out = append(out, NamedVM{Name: vm.Name, UUID: strings.ToLower(vm.Config.Uuid)})
	})
	return out, err
}

// each calls fn, under the inventory's read lock, for every VM f selects.
// Names and folders come from the watched inventory and cost vCenter
// nothing; a tag costs one call to its tagging service (see tagReader).
// A folder or tag that does not exist is machine.ErrInvalidArgument, so
// that a mistyped one does not read as "no VMs there".
func (inv *Inventory) each(ctx context.Context, f Filter, fn func(*mo.VirtualMachine)) error {
	if _, err := path.Match(f.Name, ""); err != nil {
		return fmt.Errorf("filter %q: %v: %w", f.Name, err, machine.ErrInvalidArgument)
	}
	var tagged map[types.ManagedObjectReference]bool
	if f.Tag != (Tag{}) {
		if err := inv.Available(); err != nil {
			return err
		}
		var err error
		if tagged, err = inv.c.tags.attached(ctx, f.Tag); err != nil {
			return err
		}
	}
	folder := strings.TrimSuffix(f.Folder, "/")
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	if err := inv.availableLocked(); err != nil {
		return err
	}
	if folder != "" && !inv.folderLocked(folder) {
		return fmt.Errorf("folder %s not found: give an inventory path such as /DC0/vm/FOLDER: %w", f.Folder, machine.ErrInvalidArgument)
	}
	for ref, vm := range inv.vms {
		if vm.Config == nil || (tagged != nil && !tagged[bare(ref)]) || (folder != "" && !inv.inFolderLocked(vm, folder)) {
			continue
		}
		if ok, _ := path.Match(f.Name, vm.Name); f.Name != "" && !ok {
			continue
		}
		fn(vm)
	}
	return nil
}

// inFolderLocked reports whether vm lies in the folder with the path
// folder, or below it.
func (inv *Inventory) inFolderLocked(vm *mo.VirtualMachine, folder string) bool {
	place := placeOf(vm)
	if place == nil {
		return false
	}
	p, ok := inv.paths[*place]
	return ok && (p == folder || strings.HasPrefix(p, folder+"/"))
}

// folderLocked reports whether a folder (or datacenter) has the path.
func (inv *Inventory) folderLocked(p string) bool {
	for _, q := range inv.paths {
		if q == p {
			return true
		}
	}
	return false
}
