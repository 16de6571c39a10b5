package vsphere

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// testEnv is a simulator with the seed VMs, a client, and a running inventory.
type testEnv struct {
	sim *Simulator
	c   *Client
	inv *Inventory
	// out is a second client, for changes "outside the bridge".
	out *Client
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startEnv(t *testing.T) *testEnv { t.Helper(); return startEnvWith(t, nil) }

// startEnvWith is startEnv with the bridge's requests passed through wrap
// (when set), installed before anything else uses the client.
func startEnvWith(t *testing.T, wrap func(soap.RoundTripper) soap.RoundTripper) *testEnv {
	t.Helper()
	return startEnvFor(t, t, wrap)
}

// startEnvFor is startEnvWith for an environment that outlives t: owner
// (a parent test whose subtests share it) stops it.
func startEnvFor(t *testing.T, owner testing.TB, wrap func(soap.RoundTripper) soap.RoundTripper) *testEnv {
	t.Helper()
	sim, opts := startSim(t, owner, len(SeedVMNames))
	c, err := Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		c.vim.RoundTripper = wrap(c.vim.RoundTripper)
	}
	return runEnv(t, owner, sim, c, quiet(), nil)
}

// startSim runs a simulator with n VMs on a loopback port until owner
// ends, and returns it with the options a client of it connects with: it
// is vcsimtest's Start and Options, which these tests cannot import (it
// imports this package).
func startSim(t *testing.T, owner testing.TB, n int) (*Simulator, Options) {
	t.Helper()
	sim, err := StartSimulator(context.Background(), "127.0.0.1:0", n)
	if err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(sim.Close)
	return sim, simOptions(sim)
}

// simOptions are what a client of sim connects with.
func simOptions(sim *Simulator) Options {
	return Options{URL: sim.URL.String(), Username: SimulatorUser, Password: SimulatorPassword, CAFile: sim.CAFile}
}

// runEnv runs an inventory of c, the bridge's client of sim, logging to
// log, until owner ends, and returns once it has synchronised; the
// environment's "outside" client talks to sim directly. At the end, stop
// (when set) runs first, then the inventory stops, then sim closes.
func runEnv(t *testing.T, owner testing.TB, sim *Simulator, c *Client, log *slog.Logger, stop func()) *testEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, err := Connect(ctx, simOptions(sim))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	inv := NewInventory(c, log)
	inv.MaxWait = time.Second
	done := make(chan struct{})
	go func() { inv.Run(ctx); close(done) }()
	owner.Cleanup(func() {
		if stop != nil {
			stop()
		}
		cancel()
		<-done
	})
	select {
	case <-inv.Ready():
	case <-time.After(clienttest.Patience):
		t.Fatal("inventory never synchronised")
	}
	return &testEnv{sim: sim, c: c, inv: inv, out: out}
}

func (e *testEnv) bind(t *testing.T, name string, opts VMOptions) *VM {
	t.Helper()
	v, err := e.inv.Bind(context.Background(), name, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// vmConfig reads the VM from vCenter, not from the inventory.
func (e *testEnv) vmConfig(t *testing.T, v *VM) mo.VirtualMachine {
	t.Helper()
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(e.out.vim).RetrieveOne(context.Background(), v.Reference(), []string{"runtime.powerState", "config"}, &vm); err != nil {
		t.Fatal(err)
	}
	return vm
}

func (e *testEnv) firstBoot(t *testing.T, v *VM) string {
	t.Helper()
	bo := e.vmConfig(t, v).Config.BootOptions
	if bo == nil || len(bo.BootOrder) == 0 {
		return ""
	}
	class, _ := bootableClass(bo.BootOrder[0])
	return class
}

func TestSimulatorSeed(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	if len(e.sim.VMs) != 5 || e.sim.VMs[0] != "skinner-master-0" || e.sim.VMs[4] != "skinner-worker-2" {
		t.Fatalf("VMs = %v", e.sim.VMs)
	}
	for _, name := range e.sim.VMs {
		v := e.bind(t, name, VMOptions{})
		vm := e.vmConfig(t, v)
		devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff || vm.Config.Firmware != "efi" {
			t.Errorf("%s: power %s firmware %s", name, vm.Runtime.PowerState, vm.Config.Firmware)
		}
		for _, class := range []string{"ethernet", "disk", "cdrom"} {
			if len(devices.BootOrder([]string{class})) == 0 {
				t.Errorf("%s has no %s", name, class)
			}
		}
	}
}

func TestBind(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	byName := e.bind(t, "skinner-worker-2", VMOptions{})
	id, _ := byName.Identity(ctx)
	tests := []struct {
		name, ref string
		err       error
	}{
		{"path", "/DC0/vm/skinner-worker-2", nil},
		{"uuid", id.UUID, nil},
		{"upper-case uuid", upper(id.UUID), nil},
		{"missing name", "skinner-worker-9", machine.ErrNotFound},
		{"missing path", "/DC0/vm/nope", machine.ErrNotFound},
		{"missing uuid", "00000000-0000-0000-0000-000000000000", machine.ErrNotFound},
		{"empty", "", machine.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := e.inv.Resolve(ctx, tt.ref)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ref != byName.Reference() {
				t.Fatalf("found %v, want %v", ref, byName.Reference())
			}
		})
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	v := e.bind(t, "skinner-master-0", VMOptions{})
	id, _ := v.Identity(context.Background())
	if id.CPUs != 4 || id.MemoryMiB != 16384 || len(id.MACs) != 1 || len(id.MACs[0]) != 17 || id.Name != "skinner-master-0" {
		t.Errorf("identity %+v", id)
	}
	// The seed VM's 120 GB disk on its SCSI controller, as Redfish's
	// storage inventory reports it.
	if len(id.Disks) != 1 || id.Disks[0].CapacityBytes != 120<<30 || id.Disks[0].Bus != "SCSI" || id.Disks[0].ControllerID == "" || id.Disks[0].Name == "" {
		t.Errorf("disks %+v", id.Disks)
	}
	if id.GuestTools || id.SecureBoot {
		t.Errorf("a powered-off VM without secure boot: tools %v, secure boot %v", id.GuestTools, id.SecureBoot)
	}
	if got := serialNumber("4230a5b6-0c1d-2e3f-8899-aabbccddeeff"); got != "VMware-42 30 a5 b6 0c 1d 2e 3f-88 99 aa bb cc dd ee ff" {
		t.Errorf("serial %q", got)
	}
}

func TestPower(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	steps := []struct {
		action machine.PowerAction
		want   types.VirtualMachinePowerState
		err    error
	}{
		{machine.Reset, types.VirtualMachinePowerStatePoweredOff, machine.ErrInvalidState},
		{machine.Cycle, types.VirtualMachinePowerStatePoweredOff, machine.ErrInvalidState},
		{machine.Off, types.VirtualMachinePowerStatePoweredOff, nil},
		{machine.On, types.VirtualMachinePowerStatePoweredOn, nil},
		{machine.On, types.VirtualMachinePowerStatePoweredOn, nil},
		{machine.Reset, types.VirtualMachinePowerStatePoweredOn, nil},
		{machine.NMI, types.VirtualMachinePowerStatePoweredOn, machine.ErrUnsupported},
		{machine.Off, types.VirtualMachinePowerStatePoweredOff, nil},
		{machine.Off, types.VirtualMachinePowerStatePoweredOff, nil},
	}
	for i, s := range steps {
		if s.action == machine.NMI {
			// Running, on a vCenter not yet known to lack SendNMI.
			if id, _ := v.Identity(ctx); !id.NMI {
				t.Fatalf("step %d: NMI not offered before the simulator refused one", i)
			}
		}
		err := v.Power(ctx, s.action)
		if s.action == machine.NMI {
			// The simulator has no SendNMI: from now on NMIs are not offered.
			if id, _ := v.Identity(ctx); id.NMI {
				t.Fatalf("step %d: NMI still offered after the simulator refused one", i)
			}
		}
		if !errors.Is(err, s.err) {
			t.Fatalf("step %d %s: err = %v, want %v", i, s.action, err, s.err)
		}
		if got := e.vmConfig(t, v).Runtime.PowerState; got != s.want {
			t.Fatalf("step %d %s: VM is %s, want %s", i, s.action, got, s.want)
		}
		// The reply waited for the inventory: the next read is true.
		if got, _ := v.PowerState(ctx); got != powerState(s.want) {
			t.Fatalf("step %d %s: bridge reads %s, VM is %s", i, s.action, got, s.want)
		}
	}
	// The simulator carries out a reset as a power-off and a power-on,
	// which the log shows too; a vCenter reports only the new boot time.
	// A reply may beat the watcher's update (under -race by 0.5 s), which
	// records the event.
	inOrder := func() bool {
		want := []machine.EventKind{machine.EventPowerOn, machine.EventReset, machine.EventPowerOff}
		for _, ev := range v.Events(0) {
			if len(want) > 0 && ev.Kind == want[0] {
				want = want[1:]
			}
		}
		return len(want) == 0
	}
	clienttest.Eventually(t, "power-on, reset and power-off events in order", inOrder)
}

func TestPowerCycle(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-1", VMOptions{})
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	if err := v.Power(ctx, machine.Cycle); err != nil {
		t.Fatal(err)
	}
	// A retransmitted cycle is not a second cycle.
	if err := v.Power(ctx, machine.Cycle); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "power back on", func() bool {
		return len(v.Events(0)) >= 3 && e.vmConfig(t, v).Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	})
	if n := len(v.Events(0)); n != 3 {
		t.Errorf("%d events after one cycle: %v", n, v.Events(0))
	}
}

// faultRule fails every call of method. MaxCount stays 0: govmomi's
// simulator reads and bumps a limited rule's counter without a lock, which
// races with the inventory's concurrent calls.
func faultRule(method string, f types.BaseMethodFault) *simulator.FaultInjectionRule {
	return &simulator.FaultInjectionRule{
		MethodName: method, ObjectType: "*", ObjectName: "*",
		Probability: 1, Enabled: true, FaultType: simulator.FaultTypeCustom, Fault: f,
	}
}

func TestSoftOff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		timeout  time.Duration
		err      error
		finalOff bool
	}{
		{"without tools, no fallback", 0, machine.ErrInvalidState, false},
		{"without tools, fallback", time.Minute, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t)
			ctx := context.Background()
			v := e.bind(t, "skinner-master-2", VMOptions{SoftOffTimeout: tt.timeout})
			if err := v.Power(ctx, machine.On); err != nil {
				t.Fatal(err)
			}
			e.sim.Model().Service.AddFaultRule(faultRule("ShutdownGuest", new(types.ToolsUnavailable)))
			if err := v.Power(ctx, machine.SoftOff); !errors.Is(err, tt.err) {
				t.Fatalf("soft off: %v, want %v", err, tt.err)
			}
			off := e.vmConfig(t, v).Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff
			if off != tt.finalOff {
				t.Fatalf("VM off = %v, want %v", off, tt.finalOff)
			}
		})
	}
}

func TestFailedTask(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-2", VMOptions{})
	e.sim.Model().Service.AddFaultRule(faultRule("PowerOnVM_Task", new(types.InsufficientResourcesFault)))
	if err := v.Power(ctx, machine.On); err == nil {
		t.Fatal("a failed power-on task answered success")
	}
	e.sim.Model().Service.ClearFaultRules()
	if s, _ := v.PowerState(ctx); s != machine.PowerOff {
		t.Fatalf("status after a failed power-on: %s", s)
	}
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
}

func TestBootOverride(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-worker-1", VMOptions{})
	tests := []struct {
		name      string
		o         machine.BootOverride
		first     string
		firmware  string
		biosSetup bool
	}{
		{"pxe uefi persistent", machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeUEFI}, "ethernet", "efi", false},
		{"disk legacy persistent", machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy}, "disk", "bios", false},
		{"cdrom keeps firmware", machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootCD}, "cdrom", "bios", false},
		// A one-time override leaves the firmware alone (FollowPersistent).
		{"bios setup", machine.BootOverride{Enabled: true, Device: machine.BootBIOSSetup, Mode: machine.BootModeUEFI}, "cdrom", "bios", true},
		{"none clears setup", machine.BootOverride{}, "cdrom", "bios", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := v.SetBootOverride(ctx, tt.o); err != nil {
				t.Fatal(err)
			}
			cfg := e.vmConfig(t, v).Config
			if got := e.firstBoot(t, v); got != tt.first {
				t.Errorf("first boot device %q, want %q", got, tt.first)
			}
			if cfg.Firmware != tt.firmware {
				t.Errorf("firmware %q, want %q", cfg.Firmware, tt.firmware)
			}
			if got := cfg.BootOptions.EnterBIOSSetup != nil && *cfg.BootOptions.EnterBIOSSetup; got != tt.biosSetup {
				t.Errorf("enterBIOSSetup %v, want %v", got, tt.biosSetup)
			}
			got, err := v.BootOverride(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.Enabled != tt.o.Enabled || got.Device != tt.o.Device || got.Persistent != tt.o.Persistent || got.Mode != bootMode(tt.firmware) {
				t.Errorf("BootOverride() = %v, want %v with firmware %s", got, tt.o, tt.firmware)
			}
		})
	}
}

func TestFirmwareWhileRunning(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-worker-2", VMOptions{})
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	o := machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}
	if err := v.SetBootOverride(ctx, o); err != nil {
		t.Fatal(err)
	}
	if fw := e.vmConfig(t, v).Config.Firmware; fw != "efi" {
		t.Fatalf("firmware changed on a running VM: %s", fw)
	}
	if got, _ := v.BootOverride(ctx); got.Mode != machine.BootModeLegacy {
		t.Fatalf("pending firmware not reported: %v", got)
	}
	for _, a := range []machine.PowerAction{machine.Off, machine.On} {
		if err := v.Power(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if fw := e.vmConfig(t, v).Config.Firmware; fw != "bios" {
		t.Fatalf("firmware not applied at power-on: %s", fw)
	}
}

// A one-time override is used by the next boot: the boot order it replaced
// comes back and the override reads as cleared, as on a real BMC.
func TestOneTimeBoot(t *testing.T) {
	t.Parallel()
	boots := []struct {
		name string
		boot func(ctx context.Context, v *VM) error
	}{
		{"power on", func(ctx context.Context, v *VM) error { return v.Power(ctx, machine.On) }},
		{"reset", func(ctx context.Context, v *VM) error { return v.Power(ctx, machine.Reset) }},
	}
	for _, b := range boots {
		t.Run(b.name, func(t *testing.T) {
			e := startEnv(t)
			ctx := context.Background()
			v := e.bind(t, "skinner-worker-1", VMOptions{})
			if b.name == "reset" {
				if err := v.Power(ctx, machine.On); err != nil {
					t.Fatal(err)
				}
			}
			persistent := machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk}
			if err := v.SetBootOverride(ctx, persistent); err != nil {
				t.Fatal(err)
			}
			once := machine.BootOverride{Enabled: true, Device: machine.BootPXE}
			if err := v.SetBootOverride(ctx, once); err != nil {
				t.Fatal(err)
			}
			if got := e.firstBoot(t, v); got != "ethernet" {
				t.Fatalf("one-time pxe: first boot %q", got)
			}
			if err := b.boot(ctx, v); err != nil {
				t.Fatal(err)
			}
			clienttest.Eventually(t, "the boot order to come back", func() bool { return e.firstBoot(t, v) == "disk" })
			clienttest.Eventually(t, "the override to clear", func() bool {
				o, _ := v.BootOverride(ctx)
				return !o.Enabled && o.Device == machine.BootNone
			})
		})
	}
}

func TestOneTimeClearedBeforeBoot(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	if err := v.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootCD}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Device: machine.BootPXE}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetBootOverride(ctx, machine.BootOverride{}); err != nil {
		t.Fatal(err)
	}
	if got := e.firstBoot(t, v); got != "cdrom" {
		t.Fatalf("clearing a one-time override left %q first", got)
	}
}

// Boot state is saved before it is applied, restored by a new machine (a
// restarted bridge), and a failed save changes nothing.
func TestBootPersistence(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	var (
		mu    sync.Mutex
		saved Record
		fail  error
	)
	persist := func(r Record) error {
		mu.Lock()
		defer mu.Unlock()
		if fail != nil {
			return fail
		}
		saved = r
		return nil
	}
	v := e.bind(t, "skinner-master-1", VMOptions{Persist: persist})
	once := machine.BootOverride{Enabled: true, Device: machine.BootPXE}
	if err := v.SetBootOverride(ctx, once); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = errors.New("disk full")
	rec := saved
	mu.Unlock()
	if !rec.OneTime || rec.Override.Device != machine.BootPXE {
		t.Fatalf("saved %+v", rec)
	}
	if err := v.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootCD}); err == nil {
		t.Fatal("a change that could not be saved was applied")
	}
	if got := e.firstBoot(t, v); got != "ethernet" {
		t.Fatalf("failed save changed the VM: first boot %q", got)
	}
	v.Close()

	// The "restarted bridge" gets the record and consumes the one-time
	// override at the next boot.
	v2 := e.bind(t, "skinner-master-1", VMOptions{Saved: rec})
	if o, _ := v2.BootOverride(ctx); o.Device != machine.BootPXE || !o.Enabled || o.Persistent {
		t.Fatalf("restored override %v", o)
	}
	if err := v2.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the one-time override to be used", func() bool {
		o, _ := v2.BootOverride(ctx)
		return !o.Enabled
	})
	if got := e.firstBoot(t, v2); got != "" {
		t.Fatalf("VM had no boot order before the override; now %q", got)
	}
}

// Reads come from the inventory: a thousand of them cost vCenter nothing.
func TestReadsCostNoRequests(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	before := e.c.Requests()
	for range 1000 {
		if _, err := v.PowerState(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := v.BootOverride(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Identity(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after := e.c.Requests()
	if d := requestsExceptWatch(after) - requestsExceptWatch(before); d != 0 {
		t.Fatalf("3000 reads sent %d vCenter requests: %v → %v", d, before, after)
	}
}

// requestsExceptWatch counts requests other than the watcher's long poll
// and the heartbeat, which run whether or not anyone reads.
func requestsExceptWatch(m map[string]uint64) uint64 {
	var n uint64
	for k, v := range maps.All(m) {
		if k != "WaitForUpdatesEx" && k != "CurrentTime" {
			n += v
		}
	}
	return n
}

func TestOutsideChangesSeen(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-worker-2", VMOptions{})
	outside := object.NewVirtualMachine(e.out.vim, v.Reference())
	task, err := outside.PowerOn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clienttest.Eventually(t, "the outside power-on", func() bool { s, _ := v.PowerState(ctx); return s == machine.PowerOn })
	t.Logf("outside power-on seen after %v", time.Since(start))
	if evs := v.Events(0); len(evs) != 1 || evs[0].Kind != machine.EventPowerOn {
		t.Fatalf("events %v", evs)
	}
	task, _ = outside.Rename(ctx, "renamed-worker")
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the rename", func() bool { id, _ := v.Identity(ctx); return id.Name == "renamed-worker" })
	if err := v.Power(ctx, machine.Off); err != nil {
		t.Fatalf("renamed VM lost its binding: %v", err)
	}
	task, _ = outside.Destroy(ctx)
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the deletion", func() bool {
		_, err := v.PowerState(ctx)
		return errors.Is(err, machine.ErrNotFound)
	})
}

// Without vCenter every read and action fails at once with ErrUnavailable;
// when it is back the inventory resynchronises by itself, and changes made
// meanwhile are seen.
func TestOutage(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	e.sim.Stop()
	clienttest.Eventually(t, "the outage to be noticed", func() bool { return e.inv.Available() != nil })
	for _, call := range []func() error{
		func() error { _, err := v.PowerState(ctx); return err },
		func() error { return v.Power(ctx, machine.On) },
		func() error { return v.SetBootOverride(ctx, machine.BootOverride{}) },
	} {
		start := time.Now()
		if err := call(); !errors.Is(err, machine.ErrUnavailable) {
			t.Fatalf("during the outage: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("answer took %v", d)
		}
	}
	e.sim.Restart()
	start := time.Now()
	clienttest.Eventually(t, "recovery", func() bool { return e.inv.Available() == nil })
	t.Logf("recovered %v after vCenter came back", time.Since(start))
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
}

// A session vCenter forgot (expired, or ended by an administrator) is
// renewed by logging in again, without the caller noticing.
func TestRelogin(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	before := e.c.Requests()["Login"]
	us, err := e.c.mgr.UserSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.out.mgr.TerminateSession(ctx, []string{us.Key}); err != nil {
		t.Fatal(err)
	}
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	if after := e.c.Requests()["Login"]; after < before+1 {
		t.Fatalf("logins %d → %d", before, after)
	}
	clienttest.Eventually(t, "the inventory to follow", func() bool { s, _ := v.PowerState(ctx); return s == machine.PowerOn })
}

// isoServer serves a small image with an ISO 9660 signature, a page that
// is not an ISO, and a missing file.
func isoServer(t *testing.T) *httptest.Server {
	t.Helper()
	iso := make([]byte, 64<<10)
	copy(iso[isoMagicOffset:], isoMagic)
	mux := http.NewServeMux()
	mux.HandleFunc("/boot.iso", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "boot.iso", time.Time{}, bytes.NewReader(iso))
	})
	mux.HandleFunc("/page.iso", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "page.iso", time.Time{}, bytes.NewReader(make([]byte, 64<<10)))
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestVirtualMedia(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	srv := isoServer(t)
	v := e.bind(t, "skinner-worker-2", VMOptions{})
	cdBacking := func() string {
		cd, err := object.VirtualDeviceList(e.vmConfig(t, v).Config.Hardware.Device).FindCdrom("")
		if err != nil {
			t.Fatal(err)
		}
		// A powered-off VM's devices are never "connected"; the drive
		// connects at power-on when StartConnected is set.
		if iso, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo); ok && cd.Connectable.StartConnected {
			return iso.FileName
		}
		return ""
	}
	for _, bad := range []string{srv.URL + "/page.iso", srv.URL + "/missing.iso", "ftp://x/y.iso", "http://127.0.0.1:1/none.iso"} {
		if err := v.InsertMedia(ctx, bad); !errors.Is(err, machine.ErrInvalidArgument) {
			t.Fatalf("insert %s: %v", bad, err)
		}
		if got := cdBacking(); got != "" {
			t.Fatalf("a refused image changed the CD-ROM: %q", got)
		}
	}
	img := srv.URL + "/boot.iso"
	if err := v.InsertMedia(ctx, img); err != nil {
		t.Fatal(err)
	}
	file := cdBacking()
	if file == "" {
		t.Fatal("CD-ROM not connected to the image")
	}
	ds, err := find.NewFinder(e.out.vim).Datastore(ctx, "/DC0/datastore/LocalDS_0")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := ds.Stat(ctx, strings.TrimPrefix(file, "[LocalDS_0] ")); err != nil || info.GetFileInfo().FileSize != 64<<10 {
		t.Fatalf("uploaded file %s: %v", file, err)
	}
	if m, _ := v.Media(ctx); !m.Inserted || m.Image != img {
		t.Fatalf("media %+v", m)
	}
	// Inserting again reuses the uploaded file.
	if err := v.InsertMedia(ctx, img); err != nil {
		t.Fatal(err)
	}
	if err := v.EjectMedia(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cdBacking(); got != "" {
		t.Fatalf("still connected after eject: %q", got)
	}
	if m, _ := v.Media(ctx); m.Inserted {
		t.Fatalf("media after eject %+v", m)
	}
	if err := v.EjectMedia(ctx); err != nil {
		t.Fatalf("second eject: %v", err)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	tests := []struct {
		pattern, folder string
		want            int
		err             error
	}{
		{"", "", 5, nil},
		{"skinner-worker-*", "", 2, nil},
		{"skinner-master-?", "/DC0/vm", 3, nil},
		{"", "/DC0/vm/nope", 0, machine.ErrInvalidArgument}, // not an empty table
		{"[", "", 0, machine.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+tt.folder, func(t *testing.T) {
			got, err := e.inv.List(ctx, Filter{Name: tt.pattern, Folder: tt.folder})
			if !errors.Is(err, tt.err) || len(got) != tt.want {
				t.Fatalf("List(%q, %q) = %d VMs, %v", tt.pattern, tt.folder, len(got), err)
			}
			for _, vm := range got {
				if vm.UUID == "" || len(vm.MACs) != 1 || vm.Firmware != "efi" || vm.Power != "off" {
					t.Errorf("vm %+v", vm)
				}
			}
		})
	}
}

// A guest restart needs VMware Tools (the simulator's VMs have none): it is
// refused, or with softOffTimeout becomes a hard reset.
func TestSoftReset(t *testing.T) {
	t.Parallel()
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			e := startEnv(t)
			ctx := context.Background()
			opts := VMOptions{}
			if fallback {
				opts.SoftOffTimeout = time.Minute
			}
			v := e.bind(t, "skinner-master-2", opts)
			if err := v.Power(ctx, machine.SoftReset); !errors.Is(err, machine.ErrInvalidState) {
				t.Fatalf("soft reset of an off VM: %v", err)
			}
			if err := v.Power(ctx, machine.On); err != nil {
				t.Fatal(err)
			}
			err := v.Power(ctx, machine.SoftReset)
			if fallback != (err == nil) {
				t.Fatalf("soft reset without Tools: %v", err)
			}
			reset := slices.ContainsFunc(v.Events(0), func(ev machine.Event) bool { return ev.Kind == machine.EventReset })
			if reset != fallback {
				t.Fatalf("hard reset done = %v, want %v", reset, fallback)
			}
		})
	}
}

// Reads and power actions go on while an image downloads: the download
// holds only the media lock.
func TestMediaDownloadBlocksNothing(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	release := make(chan struct{})
	iso := make([]byte, 64<<10)
	copy(iso[isoMagicOffset:], isoMagic)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(iso)))
		_, _ = w.Write(iso[:40<<10])
		w.(http.Flusher).Flush()
		<-release // the rest waits for the test
		_, _ = w.Write(iso[40<<10:])
	}))
	defer srv.Close()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	inserted := make(chan error, 1)
	go func() { inserted <- v.InsertMedia(ctx, srv.URL+"/slow.iso") }()
	time.Sleep(100 * time.Millisecond) // let the download start
	done := make(chan error, 1)
	go func() {
		if _, err := v.BootOverride(ctx); err != nil {
			done <- err
			return
		}
		done <- v.Power(ctx, machine.On)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read or a power action waited for the image download")
	}
	close(release)
	if err := <-inserted; err != nil {
		t.Fatal(err)
	}
}

// With a boot hold the one-time boot order outlives the power-on long
// enough for the firmware to read it, then goes.
func TestOneTimeBootHold(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-worker-1", VMOptions{BootHold: 2 * time.Second})
	if err := v.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Device: machine.BootPXE}); err != nil {
		t.Fatal(err)
	}
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	if got := e.firstBoot(t, v); got != "ethernet" {
		t.Fatalf("one-time order gone at once after power-on: %q", got)
	}
	clienttest.Eventually(t, "the boot order to come back after the hold", func() bool { return e.firstBoot(t, v) == "disk" })
}
