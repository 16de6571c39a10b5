package vsphere

import (
	"context"
	"fmt"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Unbound returns a machine for a BMC whose VM cannot be looked up because
// vCenter is unavailable (not connected yet, a refused login, a TLS
// failure, a hang): its endpoint serves, and every request is answered
// machine.ErrUnavailable with the reason, until the BMC is bound. Its
// identity is the configured VM reference and the nil UUID.
func (inv *Inventory) Unbound(vm string) machine.Machine { return unbound{inv: inv, vm: vm} }

type unbound struct {
	inv *Inventory
	vm  string
}

// NilUUID is the BIOS UUID an unbound machine reports.
const NilUUID = "00000000-0000-0000-0000-000000000000"

func (u unbound) err() error {
	if err := u.inv.Available(); err != nil {
		return fmt.Errorf("vm %s: %w", u.vm, err)
	}
	return fmt.Errorf("vm %s: not bound to its VM yet: %w", u.vm, machine.ErrUnavailable)
}

func (u unbound) Identity(context.Context) (machine.Identity, error) {
	return machine.Identity{Name: u.vm, UUID: NilUUID}, nil
}
func (u unbound) PowerState(context.Context) (machine.PowerState, error) {
	return machine.PowerUnknown, u.err()
}
func (u unbound) Power(context.Context, machine.PowerAction) error { return u.err() }
func (u unbound) BootOverride(context.Context) (machine.BootOverride, error) {
	return machine.BootOverride{}, u.err()
}
func (u unbound) SetBootOverride(context.Context, machine.BootOverride) error { return u.err() }
func (u unbound) Stats(context.Context) (machine.Stats, error)                { return machine.Stats{}, u.err() }
func (u unbound) Events(uint64) []machine.Event                               { return nil }
func (u unbound) Media(context.Context) (machine.Media, error)                { return machine.Media{}, u.err() }
func (u unbound) InsertMedia(context.Context, string) error                   { return u.err() }
func (u unbound) EjectMedia(context.Context) error                            { return u.err() }
func (u unbound) SetMediaVerify(context.Context, bool) error                  { return u.err() }
func (u unbound) SetSecureBoot(context.Context, bool) error                   { return u.err() }

// SerialConsole: an unbound BMC offers none until its VM is known.
func (u unbound) SerialConsole() machine.SerialConsole { return nil }
