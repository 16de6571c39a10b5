package bridge

import (
	"context"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// inventory is what a bridge needs of the VMs it serves: vSphere's
// (*vsphere.Inventory, which Start adapts) or, in the tests, one in
// memory, so that binding, reconciling and closing are tested without a
// vCenter.
type inventory interface {
	// Resolve finds a VM by name, inventory path or BIOS UUID:
	// machine.ErrNotFound when there is none, machine.ErrUnavailable
	// while vCenter cannot be asked.
	Resolve(ctx context.Context, vm string) (types.ManagedObjectReference, error)
	// Identity is what a BMC reports about the VM ref; its UUID keys the
	// VM's saved state.
	Identity(ref types.ManagedObjectReference) (machine.Identity, error)
	// NewVM returns a machine bound to the VM ref.
	NewVM(ref types.ManagedObjectReference, opts vsphere.VMOptions) boundVM
	// Unbound returns a machine answering machine.ErrUnavailable, with
	// the reason, for a VM that cannot be looked up.
	Unbound(vm string) machine.Machine
	// OnChange registers fn for every change seen after the first
	// synchronisation; fn must not block.
	OnChange(fn func(vsphere.Change))
	// Ready is closed once the inventory first holds every VM.
	Ready() <-chan struct{}
}

// boundVM is a machine bound to one VM by reference, which the bridge
// closes when it stops serving it.
type boundVM interface {
	machine.Machine
	Reference() types.ManagedObjectReference
	// Close ends the machine's background work; it may wait a moment
	// for vCenter actions it answered.
	Close()
}

// vsphereInventory adapts *vsphere.Inventory, whose NewVM returns its
// concrete machine, to inventory.
type vsphereInventory struct{ *vsphere.Inventory }

func (v vsphereInventory) NewVM(ref types.ManagedObjectReference, opts vsphere.VMOptions) boundVM {
	return v.Inventory.NewVM(ref, opts)
}
