package machinetest

import (
	"context"
	"errors"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// NewMachine returns a fresh machine for one of Run's tests: powered off,
// with UEFI firmware, secure boot off, no boot override, and a disk, a NIC
// and a CD drive; its boot overrides change the firmware as policy says.
type NewMachine func(t *testing.T, policy machine.FirmwarePolicy) machine.Machine

// Options are what a machine under Run may legitimately do differently.
type Options struct {
	// NMILearnt: the backend learns only by trying that it cannot send an
	// NMI (vSphere without SendNMI, the simulator): an NMI it allowed may
	// fail with machine.ErrUnsupported, and then it no longer allows one
	// and refuses every NMI so, whatever the power state. Machines
	// from one backend may share what it learnt.
	NMILearnt bool
}

// Run checks the machine.Machine contract, the one every protocol relies
// on, against machines from newMachine: power actions and what
// Identity.Allows promises, boot overrides and their consumption by the
// next boot, the firmware policy, secure boot and the identity. A backend
// may take a moment to show what an action did (an inventory that
// follows vCenter): Run waits for it, with a deadline that only catches a
// hang.
func Run(t *testing.T, newMachine NewMachine, opts Options) {
	fresh := func(t *testing.T) *checker {
		return &checker{t: t, m: newMachine(t, machine.FollowPersistent), opts: opts}
	}
	t.Run("identity", func(t *testing.T) { fresh(t).identity() })
	t.Run("power", func(t *testing.T) { fresh(t).power() })
	t.Run("cycle", func(t *testing.T) { fresh(t).cycle() })
	t.Run("allowed actions work", func(t *testing.T) { fresh(t).allowed() })
	t.Run("boot override read back", func(t *testing.T) { fresh(t).readBack() })
	for _, b := range []machine.PowerAction{machine.On, machine.Reset, machine.Cycle} {
		t.Run("one-time override used by "+b.String(), func(t *testing.T) { fresh(t).oneTime(b) })
	}
	t.Run("persistent override kept by a boot", func(t *testing.T) { fresh(t).persistent() })
	t.Run("one-time override cleared before its boot", func(t *testing.T) { fresh(t).clearedBeforeBoot() })
	for _, p := range machine.FirmwarePolicies {
		t.Run("firmware policy "+string(p), func(t *testing.T) {
			firmwarePolicy(t, p, func(t *testing.T) *checker {
				return &checker{t: t, m: newMachine(t, p), opts: opts}
			})
		})
	}
	t.Run("secure boot", func(t *testing.T) { fresh(t).secureBoot() })
}

// checker drives one machine for one test.
type checker struct {
	t    *testing.T
	m    machine.Machine
	opts Options
}

var (
	ctx       = context.Background()
	canonical = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// eventually polls cond until it holds.
func (c *checker) eventually(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *checker) identity() {
	id := c.ident()
	switch {
	case id.Name == "", !canonical.MatchString(id.UUID), id.SerialNumber == "", id.Manufacturer == "", id.Model == "":
		c.t.Errorf("naming fields: %+v", id)
	case id.CPUs <= 0, id.MemoryMiB <= 0:
		c.t.Errorf("hardware: %d CPUs, %d MiB", id.CPUs, id.MemoryMiB)
	case len(id.MACs) == 0, len(id.Disks) == 0:
		c.t.Errorf("a NIC and a disk: MACs %v, disks %+v", id.MACs, id.Disks)
	case id.NMI, id.SecureBoot, id.SecureBootNext:
		c.t.Errorf("off, secure boot off: NMI %v, secure boot %v, next %v", id.NMI, id.SecureBoot, id.SecureBootNext)
	case !id.Allows(machine.On) || !id.Allows(machine.Off) || id.Allows(machine.NMI):
		c.t.Errorf("an off system allows on and off, no NMI: %+v", id)
	}
	for _, mac := range id.MACs {
		if _, err := net.ParseMAC(mac); err != nil {
			c.t.Errorf("MAC %q: %v", mac, err)
		}
	}
	for _, d := range id.Disks {
		if d.ID == "" || d.CapacityBytes <= 0 {
			c.t.Errorf("disk %+v", d)
		}
	}
	if !id.Equal(c.ident()) {
		c.t.Error("two reads of an unchanged system differ")
	}
}

// read returns what get, one of the machine's readers, returns, failing
// the test on an error.
func read[T any](c *checker, get func(context.Context) (T, error)) T {
	c.t.Helper()
	v, err := get(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

func (c *checker) ident() machine.Identity { c.t.Helper(); return read(c, c.m.Identity) }

func (c *checker) state() machine.PowerState { c.t.Helper(); return read(c, c.m.PowerState) }

// do performs a and waits for the machine to show state want.
func (c *checker) do(a machine.PowerAction, want machine.PowerState) {
	c.t.Helper()
	if err := c.m.Power(ctx, a); err != nil {
		c.t.Fatalf("%s: %v", a, err)
	}
	c.eventually("the system "+want.String()+" after "+a.String(), func() bool { return c.state() == want })
}

// power: on and off are idempotent, the actions that need a running
// system fail with ErrInvalidState when it is off (IPMI v2.0 §28.3), and
// the event log records power changes in order.
func (c *checker) power() {
	for i, s := range []struct {
		a    machine.PowerAction
		err  error
		want machine.PowerState
	}{
		{machine.Reset, machine.ErrInvalidState, machine.PowerOff},
		{machine.Cycle, machine.ErrInvalidState, machine.PowerOff},
		{machine.NMI, machine.ErrInvalidState, machine.PowerOff},
		{machine.SoftReset, machine.ErrInvalidState, machine.PowerOff},
		{machine.PowerAction(99), machine.ErrInvalidArgument, machine.PowerOff},
		{machine.Off, nil, machine.PowerOff},
		{machine.On, nil, machine.PowerOn},
		{machine.On, nil, machine.PowerOn},
		{machine.Reset, nil, machine.PowerOn},
		{machine.Off, nil, machine.PowerOff},
		{machine.Off, nil, machine.PowerOff},
	} {
		err := c.m.Power(ctx, s.a)
		if s.a == machine.NMI && c.opts.NMILearnt && errors.Is(err, machine.ErrUnsupported) {
			err = machine.ErrInvalidState // refused all the same
		}
		if !errors.Is(err, s.err) {
			c.t.Fatalf("step %d, %s: %v, want %v", i, s.a, err, s.err)
		}
		c.eventually("step's power state", func() bool { return c.state() == s.want })
	}
	c.eventually("power-on then power-off in the event log", func() bool {
		want := []machine.EventKind{machine.EventPowerOn, machine.EventPowerOff}
		for _, ev := range c.m.Events(0) {
			if len(want) > 0 && ev.Kind == want[0] {
				want = want[1:]
			}
		}
		return len(want) == 0
	})
}

// cycle: a running system comes back on after a power cycle.
func (c *checker) cycle() {
	c.do(machine.On, machine.PowerOn)
	if err := c.m.Power(ctx, machine.Cycle); err != nil {
		c.t.Fatal(err)
	}
	c.eventually("the system back on after the cycle", func() bool { return c.state() == machine.PowerOn })
}

// allowed: what the identity of a running system allows works, since
// protocols advertise exactly that (Redfish's ResetType
// AllowableValues); what it does not allow, protocols refuse themselves.
func (c *checker) allowed() {
	c.do(machine.On, machine.PowerOn)
	for _, s := range []struct {
		a    machine.PowerAction
		want machine.PowerState
	}{{machine.NMI, machine.PowerOn}, {machine.SoftReset, machine.PowerOn}, {machine.SoftOff, machine.PowerOff}} {
		if !c.ident().Allows(s.a) {
			c.t.Logf("%s not allowed: not checked", s.a)
			continue
		}
		err := c.m.Power(ctx, s.a)
		if s.a == machine.NMI && c.opts.NMILearnt && errors.Is(err, machine.ErrUnsupported) {
			if c.ident().NMI {
				c.t.Error("an NMI the backend cannot send is still allowed")
			}
			continue
		}
		if err != nil {
			c.t.Fatalf("%s, allowed: %v", s.a, err)
		}
		c.eventually("the system "+s.want.String()+" after "+s.a.String(), func() bool { return c.state() == s.want })
	}
}
