package machinetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

var (
	pxeOnce        = machine.BootOverride{Enabled: true, Device: machine.BootPXE}
	pxePersistent  = machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE}
	diskPersistent = machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk}
	cdPersistent   = machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootCD}
	// pxeOnceLegacy is `ipmitool chassis bootdev pxe`: the EFI bit clear.
	pxeOnceLegacy       = machine.BootOverride{Enabled: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}
	pxePersistentLegacy = machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}
)

func (c *checker) set(o machine.BootOverride) {
	c.t.Helper()
	if err := c.m.SetBootOverride(ctx, o); err != nil {
		c.t.Fatalf("set %v: %v", o, err)
	}
}

func (c *checker) override() machine.BootOverride { c.t.Helper(); return read(c, c.m.BootOverride) }

// first waits for the boot order to start with class.
func (c *checker) first(class string) {
	c.t.Helper()
	c.eventually(class+" first in the boot order", func() bool {
		order := c.ident().BootOrder
		return len(order) > 0 && order[0] == class
	})
}

// readBack: an override reads back as set, with the firmware of the next
// boot as its mode (Redfish's BootSourceOverrideMode, IPMI's EFI bit), and
// the device it selects leads the boot order.
func (c *checker) readBack() {
	for _, s := range []struct {
		o     machine.BootOverride
		first string
	}{
		{pxePersistent, machine.ClassEthernet},
		{cdPersistent, machine.ClassCDROM},
		{machine.BootOverride{Enabled: true, Device: machine.BootDisk}, machine.ClassDisk},
		// BIOS setup selects no device: the persistent order stays.
		{machine.BootOverride{Enabled: true, Device: machine.BootBIOSSetup}, machine.ClassCDROM},
		{machine.BootOverride{}, machine.ClassCDROM},
	} {
		c.set(s.o)
		want := s.o
		want.Mode = machine.BootModeUEFI
		if got := c.override(); got != want {
			c.t.Errorf("set %v, read back %v", s.o, got)
		}
		c.first(s.first)
	}
}

// oneTime: the next boot uses a one-time override and clears it, as a
// BMC clears its boot flags (IPMI v2.0 §28.13, Redfish's Once), and the
// boot order it replaced comes back.
func (c *checker) oneTime(boot machine.PowerAction) {
	if boot != machine.On {
		c.do(machine.On, machine.PowerOn)
	}
	c.set(diskPersistent)
	c.set(pxeOnce)
	c.first(machine.ClassEthernet)
	if err := c.m.Power(ctx, boot); err != nil {
		c.t.Fatal(err)
	}
	c.eventually("the override used by the boot", func() bool { return c.override() == machine.BootOverride{Mode: machine.BootModeUEFI} })
	c.first(machine.ClassDisk)
	c.eventually("the system running", func() bool { return c.state() == machine.PowerOn })
}

// persistent: a boot leaves a persistent override alone.
func (c *checker) persistent() {
	c.set(pxePersistent)
	c.do(machine.On, machine.PowerOn)
	c.eventually("the power-on in the event log", func() bool {
		return slices.ContainsFunc(c.m.Events(0), func(ev machine.Event) bool { return ev.Kind == machine.EventPowerOn })
	})
	c.do(machine.Off, machine.PowerOff)
	want := pxePersistent
	want.Mode = machine.BootModeUEFI
	if got := c.override(); got != want {
		c.t.Errorf("after a boot: %v, want %v", got, want)
	}
	c.first(machine.ClassEthernet)
}

// clearedBeforeBoot: clearing a one-time override before its boot puts
// back the order it replaced at once.
func (c *checker) clearedBeforeBoot() {
	c.set(cdPersistent)
	c.set(pxeOnce)
	c.first(machine.ClassEthernet)
	c.set(machine.BootOverride{})
	c.first(machine.ClassCDROM)
	if o := c.override(); o.Enabled {
		c.t.Errorf("cleared, reads %v", o)
	}
}

// firmwarePolicy: the mode an override reads back is the firmware of the
// next boot, which the override changed or not as the policy says; a
// one-time change lasts one boot, a persistent one every boot.
func firmwarePolicy(t *testing.T, p machine.FirmwarePolicy, fresh func(*testing.T) *checker) {
	mode := func(follows bool) machine.BootMode {
		if follows {
			return machine.BootModeLegacy
		}
		return machine.BootModeUEFI
	}
	t.Run("one-time", func(t *testing.T) {
		c := fresh(t)
		c.set(pxeOnceLegacy)
		if got, want := c.override().Mode, mode(p == machine.FollowAlways); got != want {
			t.Errorf("one-time legacy override: next boot %s, want %s", got, want)
		}
		c.do(machine.On, machine.PowerOn)
		c.eventually("the override used by the boot", func() bool { return !c.override().Enabled })
		if got := c.override().Mode; got != machine.BootModeUEFI {
			t.Errorf("after its boot: next boot %s, want the firmware it replaced", got)
		}
	})
	for _, running := range []bool{false, true} {
		name := map[bool]string{false: "persistent, off", true: "persistent, running"}[running]
		t.Run(name, func(t *testing.T) {
			c := fresh(t)
			if running {
				c.do(machine.On, machine.PowerOn)
			}
			c.set(pxePersistentLegacy)
			want := mode(p != machine.FollowNever)
			if got := c.override().Mode; got != want {
				t.Errorf("persistent legacy override: next boot %s, want %s", got, want)
			}
			c.do(machine.Off, machine.PowerOff)
			c.do(machine.On, machine.PowerOn)
			if got := c.override().Mode; got != want {
				t.Errorf("after a boot: next boot %s, want %s", got, want)
			}
		})
	}
}

// secureBoot: a change is made at once on a system that is off, waits for
// the next power-on on a running one (SecureBootNext tells it meanwhile),
// and needs UEFI firmware.
func (c *checker) secureBoot() {
	if err := c.m.SetSecureBoot(ctx, true); err != nil {
		c.t.Fatal(err)
	}
	c.eventually("secure boot on", func() bool { id := c.ident(); return id.SecureBoot && id.SecureBootNext })
	c.do(machine.On, machine.PowerOn)
	if err := c.m.SetSecureBoot(ctx, false); err != nil {
		c.t.Fatal(err)
	}
	if id := c.ident(); !id.SecureBoot || id.SecureBootNext {
		c.t.Errorf("turned off while running: secure boot %v, next %v; want on until the next power-on", id.SecureBoot, id.SecureBootNext)
	}
	c.do(machine.Off, machine.PowerOff)
	c.do(machine.On, machine.PowerOn)
	c.eventually("secure boot off after the power-on", func() bool { id := c.ident(); return !id.SecureBoot && !id.SecureBootNext })
	c.do(machine.Off, machine.PowerOff)
	c.set(machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy})
	if err := c.m.SetSecureBoot(ctx, true); !errors.Is(err, machine.ErrInvalidArgument) {
		c.t.Errorf("secure boot with legacy firmware: %v, want invalid argument", err)
	}
	if id := c.ident(); id.SecureBootNext {
		c.t.Error("legacy firmware, yet secure boot next")
	}
}
