package vsphere

import (
	"cmp"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The firmware rule (boot.followEfiBit), checked on the VM in the simulator.
// The seed VMs are powered off with EFI firmware.

var (
	pxeOnceLegacy       = machine.BootOverride{Enabled: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}
	pxePersistentLegacy = machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}
	diskPersistent      = machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk}
)

// waitFor polls cond until it holds. Its deadline only catches a hang: no
// outcome depends on how fast the simulator is.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// savedRecords keeps what a VM persists.
type savedRecords struct {
	mu  sync.Mutex
	rec Record
}

func (s *savedRecords) persist(r Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rec = r
	return nil
}

func (s *savedRecords) last() Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec
}

func (e *testEnv) firmware(t *testing.T, v *VM) string {
	t.Helper()
	return e.vmConfig(t, v).Config.Firmware
}

// oneTimeUsed boots v and waits until the one-time override is cleared,
// which happens after the boot has been seen and the boot order restored.
func oneTimeUsed(t *testing.T, v *VM) {
	t.Helper()
	ctx := context.Background()
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the one-time override to be used", func() bool {
		o, err := v.BootOverride(ctx)
		return err == nil && !o.Enabled && !v.record().OneTime
	})
}

// powerOffOn powers v off and, once the inventory shows it off (the power
// path's own business, tested elsewhere), on again through the bridge,
// which applies a pending firmware change first.
func powerOffOn(t *testing.T, v *VM) {
	t.Helper()
	ctx := context.Background()
	if err := v.Power(ctx, machine.Off); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the inventory to show the VM off", func() bool {
		s, err := v.PowerState(ctx)
		return err == nil && s == machine.PowerOff
	})
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
}

// The reproducer: VM off, `chassis bootdev pxe` (EFI bit clear),
// power on, the boot: the VM is EFI throughout and its boot order is back.
func TestOneTimeLegacyOverrideKeepsEFI(t *testing.T) {
	t.Parallel()
	for _, policy := range []FirmwarePolicy{"", FollowPersistent, FollowNever} {
		t.Run(string(cmp.Or(policy, "default")), func(t *testing.T) {
			e := startEnv(t)
			ctx := context.Background()
			var saved savedRecords
			v := e.bind(t, "skinner-worker-2", VMOptions{FollowEFIBit: policy, Persist: saved.persist})
			if err := v.SetBootOverride(ctx, diskPersistent); err != nil {
				t.Fatal(err)
			}
			if err := v.SetBootOverride(ctx, pxeOnceLegacy); err != nil {
				t.Fatal(err)
			}
			if fw := e.firmware(t, v); fw != "efi" {
				t.Fatalf("one-time legacy override switched the firmware to %s", fw)
			}
			if got := e.firstBoot(t, v); got != "ethernet" {
				t.Fatalf("one-time pxe: first boot %q", got)
			}
			if r := saved.last(); r.PendingFirmware != "" || r.RestoreFirmware != "" {
				t.Fatalf("record %+v", r)
			}
			oneTimeUsed(t, v)
			if fw := e.firmware(t, v); fw != "efi" {
				t.Errorf("firmware after the boot: %s", fw)
			}
			if got := e.firstBoot(t, v); got != "disk" {
				t.Errorf("boot order after the boot: %q first", got)
			}
			o, _ := v.BootOverride(ctx)
			if o.Enabled || o.Mode != machine.BootModeUEFI {
				t.Errorf("override after the boot: %v", o)
			}
			if r := saved.last(); r.OneTime || r.PendingFirmware != "" || r.RestoreFirmware != "" || r.Restore != nil {
				t.Errorf("record after the boot: %+v", r)
			}
		})
	}
}

// Persistent overrides change the firmware, except under "never".
func TestPersistentOverrideFirmware(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy FirmwarePolicy
		want   string
	}{
		{"", "bios"},
		{FollowPersistent, "bios"},
		{FollowAlways, "bios"},
		{FollowNever, "efi"},
	}
	for _, tt := range tests {
		t.Run(string(cmp.Or(tt.policy, "default")), func(t *testing.T) {
			e := startEnv(t)
			ctx := context.Background()
			v := e.bind(t, "skinner-worker-1", VMOptions{FollowEFIBit: tt.policy})
			if err := v.SetBootOverride(ctx, pxePersistentLegacy); err != nil {
				t.Fatal(err)
			}
			if fw := e.firmware(t, v); fw != tt.want {
				t.Fatalf("firmware %s, want %s", fw, tt.want)
			}
			// A firmware choice alone (Redfish's BootSourceOverrideMode
			// PATCH, IPMI's `bootdev none options=efiboot,persistent`).
			uefi := machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootNone, Mode: machine.BootModeUEFI}
			if err := v.SetBootOverride(ctx, uefi); err != nil {
				t.Fatal(err)
			}
			if fw := e.firmware(t, v); fw != "efi" {
				t.Fatalf("firmware after a UEFI choice: %s", fw)
			}
			// It lasts: a boot does not undo it.
			if err := v.Power(ctx, machine.On); err != nil {
				t.Fatal(err)
			}
			if err := v.Power(ctx, machine.Off); err != nil {
				t.Fatal(err)
			}
			if fw := e.firmware(t, v); fw != "efi" {
				t.Fatalf("firmware after a boot: %s", fw)
			}
		})
	}
}

// Under "always" a one-time override switches the firmware for its boot,
// and the firmware it replaced comes back after it: the VM is running
// then, so before the next power-on.
func TestOneTimeFirmwareRestoredAfterBoot(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	var saved savedRecords
	v := e.bind(t, "skinner-master-0", VMOptions{FollowEFIBit: FollowAlways, Persist: saved.persist})
	if err := v.SetBootOverride(ctx, diskPersistent); err != nil {
		t.Fatal(err)
	}
	if err := v.SetBootOverride(ctx, pxeOnceLegacy); err != nil {
		t.Fatal(err)
	}
	if fw := e.firmware(t, v); fw != "bios" {
		t.Fatalf("always: one-time legacy override left firmware %s", fw)
	}
	if r := saved.last(); r.RestoreFirmware != "efi" {
		t.Fatalf("firmware to restore not saved: %+v", r)
	}
	oneTimeUsed(t, v)
	if got := e.firstBoot(t, v); got != "disk" {
		t.Errorf("boot order after the boot: %q first", got)
	}
	if o, _ := v.BootOverride(ctx); o.Mode != machine.BootModeUEFI {
		t.Errorf("override after the boot: %v, want the EFI firmware of the next boot", o)
	}
	if r := saved.last(); r.PendingFirmware != "efi" || r.RestoreFirmware != "" {
		t.Errorf("record after the boot: %+v", r)
	}
	powerOffOn(t, v)
	if fw := e.firmware(t, v); fw != "efi" {
		t.Fatalf("firmware not restored at the next power-on: %s", fw)
	}
	if r := saved.last(); r.PendingFirmware != "" {
		t.Errorf("record: %+v", r)
	}
}

// A VM found powered off when its one-time override is cleared after the
// boot gets its firmware back at once.
func TestOneTimeFirmwareRestoredWhenOff(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-1", VMOptions{FollowEFIBit: FollowAlways})
	if err := v.SetBootOverride(ctx, pxeOnceLegacy); err != nil {
		t.Fatal(err)
	}
	if fw := e.firmware(t, v); fw != "bios" {
		t.Fatalf("firmware %s", fw)
	}
	// What booted() does once the hold has passed, for a VM that is off
	// by then.
	v.mu.Lock()
	err := v.restore()
	v.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if fw := e.firmware(t, v); fw != "efi" {
		t.Fatalf("firmware after the restore of an off VM: %s", fw)
	}
	if r := v.record(); r.PendingFirmware != "" || r.RestoreFirmware != "" || r.OneTime {
		t.Errorf("record: %+v", r)
	}
}

// Under "always", a one-time override replaced or cleared before its boot
// takes its firmware change with it, as it does its boot order.
func TestOneTimeFirmwareUndoneBeforeBoot(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-2", VMOptions{FollowEFIBit: FollowAlways})
	steps := []struct {
		o    machine.BootOverride
		want string
	}{
		{pxeOnceLegacy, "bios"},
		// Replaced by a one-time override in EFI mode: back to EFI.
		{machine.BootOverride{Enabled: true, Device: machine.BootCD, Mode: machine.BootModeUEFI}, "efi"},
		{pxeOnceLegacy, "bios"},
		// Another legacy one: still BIOS, EFI still to come back.
		{machine.BootOverride{Enabled: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy}, "bios"},
		// Cleared: the firmware comes back at once.
		{machine.BootOverride{}, "efi"},
	}
	for i, s := range steps {
		if err := v.SetBootOverride(ctx, s.o); err != nil {
			t.Fatal(err)
		}
		if fw := e.firmware(t, v); fw != s.want {
			t.Fatalf("step %d (%v): firmware %s, want %s", i, s.o, fw, s.want)
		}
	}
	if r := v.record(); r.RestoreFirmware != "" || r.PendingFirmware != "" {
		t.Errorf("record: %+v", r)
	}
}

// The rule on a running VM: under the default a one-time legacy override
// queues no firmware change; under "always" the queued change is dropped
// when the boot uses the override, since the running VM kept its firmware.
func TestOneTimeFirmwareWhileRunning(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		policy  FirmwarePolicy
		pending string
	}{{FollowPersistent, ""}, {FollowAlways, "bios"}} {
		t.Run(string(tt.policy), func(t *testing.T) {
			e := startEnv(t)
			ctx := context.Background()
			v := e.bind(t, "skinner-worker-2", VMOptions{FollowEFIBit: tt.policy})
			if err := v.Power(ctx, machine.On); err != nil {
				t.Fatal(err)
			}
			if err := v.SetBootOverride(ctx, pxeOnceLegacy); err != nil {
				t.Fatal(err)
			}
			if r := v.record(); r.PendingFirmware != tt.pending {
				t.Fatalf("pending firmware %q, want %q", r.PendingFirmware, tt.pending)
			}
			if err := v.Power(ctx, machine.Reset); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the one-time override to be used", func() bool { return !v.record().OneTime })
			if r := v.record(); r.PendingFirmware != "" || r.RestoreFirmware != "" {
				t.Errorf("record after the boot: %+v", r)
			}
			powerOffOn(t, v)
			if fw := e.firmware(t, v); fw != "efi" {
				t.Errorf("firmware at the next power-on: %s", fw)
			}
		})
	}
}
