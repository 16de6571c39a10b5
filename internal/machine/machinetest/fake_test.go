package machinetest

import (
	"context"
	"errors"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// A boot consumes a one-time override and keeps a persistent one, as the
// vSphere machine does and IPMI §28.13 says of the boot flags.
func TestOneTimeOverrideConsumedByABoot(t *testing.T) {
	ctx := context.Background()
	once := machine.BootOverride{Enabled: true, Device: machine.BootPXE}
	for _, tc := range []struct {
		name     string
		from     machine.PowerState
		boot     machine.PowerAction
		override machine.BootOverride
		kept     bool
	}{
		{"power-on", machine.PowerOff, machine.On, once, false},
		{"reset", machine.PowerOn, machine.Reset, once, false},
		{"cycle", machine.PowerOn, machine.Cycle, once, false},
		{"guest restart", machine.PowerOn, machine.SoftReset, once, false},
		{"persistent kept", machine.PowerOff, machine.On, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE}, true},
		{"on while on is no boot", machine.PowerOn, machine.On, once, true},
		{"nmi is no boot", machine.PowerOn, machine.NMI, once, true},
	} {
		f := &Fake{State: tc.from}
		if err := f.SetBootOverride(ctx, tc.override); err != nil {
			t.Fatal(err)
		}
		if err := f.Power(ctx, tc.boot); err != nil {
			t.Fatal(err)
		}
		if o, _ := f.BootOverride(ctx); o.Enabled != tc.kept {
			t.Errorf("%s: override %v, kept %v, want %v", tc.name, o, o.Enabled, tc.kept)
		}
	}
}

// An override selecting a device class the fake lacks is refused and
// changes nothing, as PlanBoot refuses it for the vSphere machine.
func TestFakeBootDevices(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		devices []string
		device  machine.BootDevice
		ok      bool
	}{
		{"default has a NIC", nil, machine.BootPXE, true},
		{"default has a CD drive", nil, machine.BootCD, true},
		{"no NIC", []string{machine.ClassDisk}, machine.BootPXE, false},
		{"no CD drive", []string{machine.ClassDisk, machine.ClassEthernet}, machine.BootCD, false},
		{"BIOS setup needs no device", []string{}, machine.BootBIOSSetup, true},
	} {
		f := &Fake{Devices: tc.devices}
		err := f.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Persistent: true, Device: tc.device})
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, machine.ErrInvalidArgument)) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if o, _ := f.BootOverride(ctx); o.Enabled != tc.ok {
			t.Errorf("%s: override %v", tc.name, o)
		}
	}
}
