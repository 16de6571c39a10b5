// Package machinetest provides an in-memory machine.Machine for protocol
// tests, in the manner of net/http/httptest, and Run, the conformance
// suite that holds it and the vSphere machine to the same contract.
package machinetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Fake is an in-memory Machine. Its zero value is a powered-off system with
// UEFI firmware, a disk, a NIC and a CD drive, and no boot override. Its
// boot overrides, firmware and secure boot follow machine.PlanBoot,
// PlanBooted and PlanSecureBoot, the rules the vSphere machine follows,
// and Run checks both against the same contract. Err, when set, is
// returned by every call, to exercise error mapping.
type Fake struct {
	mu    sync.Mutex
	ID    machine.Identity
	State machine.PowerState
	// Override is the override last set, as the protocol sent it (its
	// mode included, which protocol tests compare), until a boot uses a
	// one-time override.
	Override machine.BootOverride
	// Firmware is the configured firmware (BootModeUnspecified: UEFI).
	Firmware machine.BootMode
	// FollowEFIBit says which overrides change the firmware; empty:
	// machine.FollowAlways, so that a protocol test reads back the mode
	// it wrote.
	FollowEFIBit machine.FirmwarePolicy
	// Devices are the classes the system can boot from; nil: disk, cdrom
	// and ethernet.
	Devices []string
	Usage   machine.Stats
	// Actions records every accepted power action in order.
	Actions []machine.PowerAction
	Err     error
	// Log, when nil, is created on first use with room for 64 events.
	Log *machine.EventLog
	// CD is the virtual CD drive. InsertMedia accepts any URL that
	// BadMedia does not list.
	CD       machine.Media
	BadMedia map[string]bool
	// Console is what SerialConsole returns (nil: no console).
	Console machine.SerialConsole

	// What machine.BootState keeps beyond the fields above: the changes
	// waiting for the next power-on, and what a one-time override
	// replaced.
	pendingFirmware   machine.BootMode
	pendingSecureBoot *bool
	restore           []string
	restoreFirmware   machine.BootMode
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
// reports it only while the system runs, as a real backend does. Secure
// boot reads as vSphere reports it: enforced only with UEFI firmware, and
// SecureBootNext telling a change waiting for the next power-on.
func (f *Fake) Identity(context.Context) (machine.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.ID
	id.NMI = id.NMI && f.State == machine.PowerOn
	id.BootOrder = slices.Clone(id.BootOrder)
	id.SecureBoot = id.SecureBoot && f.bootState().Firmware == machine.BootModeUEFI
	id.SecureBootNext = id.SecureBoot
	if f.pendingSecureBoot != nil {
		id.SecureBootNext = *f.pendingSecureBoot
	}
	// A fake is a VMware VM unless told otherwise.
	id.Manufacturer = cmp.Or(id.Manufacturer, "VMware, Inc.")
	id.Model = cmp.Or(id.Model, "VMware Virtual Platform")
	return id, f.Err
}

// SetSecureBoot implements machine.Machine (machine.PlanSecureBoot).
func (f *Fake) SetSecureBoot(_ context.Context, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	next, _, err := machine.PlanSecureBoot(f.bootState(), on)
	if err != nil {
		return err
	}
	f.keep(next)
	return nil
}

// bootState is the fake's boot configuration as the planner sees it. The
// boot order is ID.BootOrder, so that an identity change made with
// SetIdentity is the order the next override starts from.
func (f *Fake) bootState() machine.BootState {
	devices := f.Devices
	if devices == nil {
		devices = []string{machine.ClassDisk, machine.ClassCDROM, machine.ClassEthernet}
	}
	return machine.BootState{
		Policy:   cmp.Or(f.FollowEFIBit, machine.FollowAlways),
		Off:      f.State != machine.PowerOn && f.State != machine.PowerSuspended,
		Devices:  devices,
		Order:    f.ID.BootOrder,
		Firmware: cmp.Or(f.Firmware, machine.BootModeUEFI), PendingFirmware: f.pendingFirmware,
		SecureBoot: f.ID.SecureBoot, PendingSecureBoot: f.pendingSecureBoot,
		Override: f.Override, OneTime: f.Override.Enabled && !f.Override.Persistent,
		Restore: f.restore, RestoreFirmware: f.restoreFirmware,
	}
}

// keep makes s the fake's boot configuration, but for Override, which
// the callers set.
func (f *Fake) keep(s machine.BootState) {
	f.ID.BootOrder = s.Order
	f.Firmware, f.pendingFirmware = s.Firmware, s.PendingFirmware
	f.ID.SecureBoot, f.pendingSecureBoot = s.SecureBoot, s.PendingSecureBoot
	f.restore, f.restoreFirmware = slices.Clone(s.Restore), s.RestoreFirmware
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
// machine: cycle, reset and NMI need a running system; a power-on (a
// cycle's too) first applies the firmware and secure-boot changes that
// waited for it; and a boot (a power-on, a cycle, a reset, a guest
// restart) consumes a one-time boot override, as IPMI's boot flags are
// valid for one boot (§28.13).
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
			f.keep(f.bootState().PoweredOn())
			f.State = machine.PowerOn
			f.log().Add(machine.EventPowerOn, "")
			f.bootedLocked()
		}
	case machine.Off, machine.SoftOff:
		if on {
			f.log().Add(machine.EventPowerOff, "")
		}
		f.State = machine.PowerOff
	case machine.Cycle, machine.Reset, machine.NMI, machine.SoftReset:
		if !on {
			return machine.ErrInvalidState
		}
		if a == machine.Cycle {
			f.keep(f.bootState().PoweredOn())
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

// bootedLocked ends a one-time override: the boot used it
// (machine.PlanBooted). The system runs by then, so a firmware to put
// back waits for the next power-on, as on vSphere.
func (f *Fake) bootedLocked() {
	next, _, ok := machine.PlanBooted(f.bootState())
	if !ok {
		return
	}
	f.keep(next)
	f.Override = next.Override
	f.log().Add(machine.EventBootOverride, "one-time override used")
}

// BootOverride implements machine.Machine. Like a real machine it reports
// the firmware of the next boot as the mode.
func (f *Fake) BootOverride(context.Context) (machine.BootOverride, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.Override
	o.Mode = f.bootState().NextFirmware()
	return o, f.Err
}

// SetBootOverride implements machine.Machine (machine.PlanBoot).
func (f *Fake) SetBootOverride(_ context.Context, o machine.BootOverride) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	next, _, err := machine.PlanBoot(f.bootState(), o)
	if err != nil {
		return err
	}
	f.keep(next)
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

// SerialConsole returns f.Console.
func (f *Fake) SerialConsole() machine.SerialConsole {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Console
}
