package bridge

import (
	"fmt"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// Find returns the BMC with the address (host:port) or key (Spec.Key) or
// the VM name or reference id, or nil when there is none or more than one.
func (b *Bridge) Find(id string) *BMC {
	bm, _ := b.Lookup(id)
	return bm
}

// Lookup returns the BMC with the address (host:port) or the VM name or
// reference id. A VM with two BMCs is ErrAmbiguous, naming their
// addresses, so that an operator never acts on one of them by chance.
func (b *Bridge) Lookup(id string) (*BMC, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lookup(id)
}

func (b *Bridge) lookup(id string) (*BMC, error) {
	if bm := b.byAddress(id); bm != nil {
		return bm, nil
	}
	found := b.byVM(id)
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s: %w", id, ErrUnknownBMC)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%s: %w: %s", id, ErrAmbiguous, addresses(found))
}

// byAddress finds a BMC by its configured address or, for port 0, the
// address it bound. b.mu must be held.
func (b *Bridge) byAddress(addr string) *BMC {
	for _, bm := range b.bmcs {
		if bm.spec.Key() == addr {
			return bm
		}
	}
	for _, bm := range b.bmcs {
		if bm.boundAddr() == addr {
			return bm
		}
	}
	return nil
}

// byVM lists the BMCs configured with the VM reference id or serving a VM
// named id. b.mu must be held.
func (b *Bridge) byVM(id string) []*BMC {
	var out []*BMC
	for _, bm := range b.bmcs {
		if bm.spec.VM == id || bm.vmName() == id {
			out = append(out, bm)
		}
	}
	return out
}

// addresses lists the IDs that name each of bms unambiguously.
func addresses(bms []*BMC) string {
	var ids []string
	for _, bm := range bms {
		id := bm.boundAddr()
		if id == "" {
			id = bm.spec.Key()
		}
		ids = append(ids, id)
	}
	return strings.Join(ids, ", ")
}

// sameVM returns the BMC configured for s's VM or serving ref (s.VM
// resolved, unless err) in s's vCenter, or nil: references are unique
// within a vCenter only. b.mu must be held.
func (b *Bridge) sameVM(s Spec, ref types.ManagedObjectReference, err error) *BMC {
	for _, bm := range b.bmcs {
		if bm.spec.VCenter != s.VCenter {
			continue
		}
		if bm.spec.VM == s.VM {
			return bm
		}
		if err != nil {
			continue
		}
		bm.mu.Lock()
		same := bm.vm != nil && bm.vm.Reference() == ref
		bm.mu.Unlock()
		if same {
			return bm
		}
	}
	return nil
}

// ServesConsole reports whether a BMC with a serial console (Spec.Console)
// serves the VM with the BIOS UUID uuid and, when that BMC's VM has one,
// the vCenter instance UUID instance: whom the console concentrator lets
// in. Only console BMCs' VMs are read, so a connection naming an unknown
// VM costs a pass over the specs, not every BMC's state.
func (b *Bridge) ServesConsole(uuid, instance string) bool {
	for _, bm := range b.BMCs() {
		if !bm.spec.Console {
			continue
		}
		id := bm.boundIdentity()
		if id.UUID != "" && strings.EqualFold(id.UUID, uuid) && (id.InstanceUUID == "" || strings.EqualFold(id.InstanceUUID, instance)) {
			return true
		}
	}
	return false
}

// ByVM maps each BMC's VM to the BMC's key (Spec.Key): by Spec.VCenter,
// "/" and the VM as configured, and by Spec.VCenter, "/" and its current
// name. It reads the VMs' names alone, not every BMC's power and
// sessions as Info does: vms and bmc add --all ask it for each call.
func (b *Bridge) ByVM() map[string]string {
	m := map[string]string{}
	for _, bm := range b.BMCs() {
		m[bm.spec.VCenter+"/"+bm.spec.VM] = bm.spec.Key()
		if name := bm.vmName(); name != "" {
			m[bm.spec.VCenter+"/"+name] = bm.spec.Key()
		}
	}
	return m
}
