// Package machinetest provides an in-memory machine.Machine for protocol
// tests, in the manner of net/http/httptest.
package machinetest

import (
	"cmp"
	"context"
	"fmt"
	"sync"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Fake is an in-memory Machine. Its zero value is a powered-off system with
// UEFI firmware and no boot override. Err, when set, is returned by every
// call, to exercise error mapping.
type Fake struct {
	mu       sync.Mutex
	ID       machine.Identity
	State    machine.PowerState
	Override machine.BootOverride
	Firmware machine.BootMode
	Usage    machine.Stats
	// Actions records every accepted power action in order.
	Actions []machine.PowerAction
	Err     error
	// Log, when nil, is created on first use with room for 64 events.
	Log *machine.EventLog
	// CD is the virtual CD drive. InsertMedia accepts any URL that
	// BadMedia does not list.
	CD       machine.Media
	BadMedia map[string]bool
}

func (f *Fake) log() *machine.EventLog {
	if f.Log == nil {
		f.Log = machine.NewEventLog(64, nil)
	}
	return f.Log
}

var _ machine.Machine = (*Fake)(nil)

// Identity implements machine.Machine.
// ID.NMI says whether the backend can send NMIs at all; the identity
// reports it only while the system runs, as a real backend does.
func (f *Fake) Identity(context.Context) (machine.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.ID
	id.NMI = id.NMI && f.State == machine.PowerOn
	// A fake is a VMware VM unless told otherwise.
	id.Manufacturer = cmp.Or(id.Manufacturer, "VMware, Inc.")
	id.Model = cmp.Or(id.Model, "VMware Virtual Platform")
	return id, f.Err
}

// SetSecureBoot implements machine.Machine: at once (the fake has no
// power-on to wait for), and only with UEFI firmware.
func (f *Fake) SetSecureBoot(_ context.Context, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	if on && f.Firmware == machine.BootModeLegacy {
		return fmt.Errorf("secure boot needs UEFI firmware: %w", machine.ErrInvalidArgument)
	}
	f.ID.SecureBoot, f.ID.SecureBootNext = on, on
	return nil
}

// SetIdentity changes the identity under the fake's lock, as the
// backend's inventory changes while it is served.
func (f *Fake) SetIdentity(change func(*machine.Identity)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.ID)
}

// PowerState implements machine.Machine.
func (f *Fake) PowerState(context.Context) (machine.PowerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.State == machine.PowerUnknown {
		return machine.PowerOff, f.Err
	}
	return f.State, f.Err
}

// Power implements machine.Machine with the same state rules as the vSphere
// machine: cycle, reset and NMI need a running system, and a boot (a
// power-on, a cycle, a reset, a guest restart) consumes a one-time boot
// override, as IPMI's boot flags are valid for one boot (§28.13).
func (f *Fake) Power(_ context.Context, a machine.PowerAction) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	on := f.State == machine.PowerOn
	switch a {
	case machine.On:
		if !on {
			f.log().Add(machine.EventPowerOn, "")
			f.bootedLocked()
		}
		f.State = machine.PowerOn
	case machine.Off, machine.SoftOff:
		if on {
			f.log().Add(machine.EventPowerOff, "")
		}
		f.State = machine.PowerOff
	case machine.Cycle, machine.Reset, machine.NMI, machine.SoftReset:
		if !on {
			return machine.ErrInvalidState
		}
		if a != machine.NMI {
			f.log().Add(machine.EventReset, a.String())
			f.bootedLocked()
		}
	default:
		return machine.ErrInvalidArgument
	}
	f.Actions = append(f.Actions, a)
	return nil
}

// bootedLocked ends a one-time override: the boot used it.
func (f *Fake) bootedLocked() {
	if f.Override.Enabled && !f.Override.Persistent {
		f.Override = machine.BootOverride{}
		f.log().Add(machine.EventBootOverride, "one-time override used")
	}
}

// BootOverride implements machine.Machine. Like a real machine it reports the
// firmware in force as the mode.
func (f *Fake) BootOverride(context.Context) (machine.BootOverride, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.Override
	o.Mode = f.Firmware
	if o.Mode == machine.BootModeUnspecified {
		o.Mode = machine.BootModeUEFI
	}
	return o, f.Err
}

// SetBootOverride implements machine.Machine.
func (f *Fake) SetBootOverride(_ context.Context, o machine.BootOverride) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	if o.Enabled && o.Mode != machine.BootModeUnspecified {
		f.Firmware = o.Mode
	}
	f.Override = o
	f.log().Add(machine.EventBootOverride, o.String())
	return nil
}

// Stats implements machine.Machine.
func (f *Fake) Stats(context.Context) (machine.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Usage, f.Err
}

// Events implements machine.Machine.
func (f *Fake) Events(since uint64) []machine.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log().Since(since)
}

// Media implements machine.Machine.
func (f *Fake) Media(context.Context) (machine.Media, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.CD, f.Err
}

// InsertMedia implements machine.Machine.
func (f *Fake) InsertMedia(_ context.Context, url string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	if f.BadMedia[url] {
		return fmt.Errorf("fetch %s: %w", url, machine.ErrInvalidArgument)
	}
	f.CD = machine.Media{Inserted: true, Image: url, VerifyCertificate: f.CD.VerifyCertificate}
	return nil
}

// SetMediaVerify implements machine.Machine.
func (f *Fake) SetMediaVerify(_ context.Context, verify bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	f.CD.VerifyCertificate = verify
	return nil
}

// EjectMedia implements machine.Machine.
func (f *Fake) EjectMedia(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	f.CD = machine.Media{VerifyCertificate: f.CD.VerifyCertificate}
	return nil
}

// PowerActions returns a copy of Actions, read under the Fake's lock, for
// tests whose client runs in another process (the race detector cannot see
// the ordering that process provides).
func (f *Fake) PowerActions() []machine.PowerAction {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]machine.PowerAction(nil), f.Actions...)
}
