package vsphere

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The concentrator's address before and after it moved.
const (
	consoleA = "telnet://192.0.2.1:13370"
	consoleB = "telnet://192.0.2.2:13370"
)

func uriPort(key int32, service, proxy string) *types.VirtualSerialPort {
	return &types.VirtualSerialPort{VirtualDevice: types.VirtualDevice{Key: key, Backing: &types.VirtualSerialPortURIBackingInfo{
		VirtualDeviceURIBackingInfo: types.VirtualDeviceURIBackingInfo{ServiceURI: service, Direction: "server", ProxyURI: proxy},
	}}}
}

func filePort(key int32, file string) *types.VirtualSerialPort {
	return &types.VirtualSerialPort{VirtualDevice: types.VirtualDevice{Key: key, Backing: &types.VirtualSerialPortFileBackingInfo{
		VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file},
	}}}
}

// consoleChange decides from the devices alone: nothing when a port
// points at the concentrator already (whoever made it), an edit of the
// bridge's own port pointing elsewhere, else a new port; the user's ports
// are never the ones changed.
func TestConsoleChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		devices []types.BaseVirtualDevice
		uri     string
		op      types.VirtualDeviceConfigSpecOperation // "": no change
		key     int32
	}{
		{"no console", []types.BaseVirtualDevice{uriPort(9000, ConsoleServiceURI, consoleB)}, "", "", 0},
		{"no serial port", []types.BaseVirtualDevice{&types.VirtualCdrom{}}, consoleA, types.VirtualDeviceConfigSpecOperationAdd, -1},
		{"a file-backed port stays", []types.BaseVirtualDevice{filePort(9000, "[ds] vm/serial.log")}, consoleA, types.VirtualDeviceConfigSpecOperationAdd, -1},
		{"another service's port stays", []types.BaseVirtualDevice{uriPort(9000, "vSPC.py", consoleB)}, consoleA, types.VirtualDeviceConfigSpecOperationAdd, -1},
		{"ours, moved", []types.BaseVirtualDevice{filePort(9000, "[ds] vm/serial.log"), uriPort(9001, ConsoleServiceURI, consoleB)}, consoleA, types.VirtualDeviceConfigSpecOperationEdit, 9001},
		{"ours, in place", []types.BaseVirtualDevice{uriPort(9001, ConsoleServiceURI, consoleA)}, consoleA, "", 0},
		{"another service's port pointing there", []types.BaseVirtualDevice{uriPort(9000, "vSPC.py", consoleA), uriPort(9001, ConsoleServiceURI, consoleB)}, consoleA, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := consoleChange(tt.devices, tt.uri)
			if tt.op == "" {
				if spec != nil {
					t.Fatalf("change %s of device %d, want none", spec.Operation, spec.Device.GetVirtualDevice().Key)
				}
				return
			}
			if spec == nil || spec.Operation != tt.op || spec.Device.GetVirtualDevice().Key != tt.key {
				t.Fatalf("change %+v, want %s of device %d", spec, tt.op, tt.key)
			}
			checkConsolePort(t, spec.Device.(*types.VirtualSerialPort), tt.uri)
		})
	}
}

// checkConsolePort fails unless p is a vSPC port of the bridge's pointing
// at uri.
func checkConsolePort(t *testing.T, p *types.VirtualSerialPort, uri string) {
	t.Helper()
	b, ok := p.Backing.(*types.VirtualSerialPortURIBackingInfo)
	if !ok {
		t.Fatalf("console port backed by %T", p.Backing)
	}
	if b.ServiceURI != ConsoleServiceURI || b.Direction != "server" || b.ProxyURI != uri {
		t.Fatalf("console port backing %+v, want service %q, direction server, proxy %q", b.VirtualDeviceURIBackingInfo, ConsoleServiceURI, uri)
	}
	if !p.YieldOnPoll {
		t.Error("yieldOnPoll not set")
	}
	if c := p.Connectable; c == nil || !c.StartConnected || c.AllowGuestControl {
		t.Errorf("connectable %+v, want connected at power-on, not by the guest", c)
	}
}

// serialPorts reads the VM's serial ports from vCenter with the outside
// client, in device order.
func (e *testEnv) serialPorts(t *testing.T, ref types.ManagedObjectReference) []*types.VirtualSerialPort {
	t.Helper()
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(e.out.vim).RetrieveOne(context.Background(), ref, []string{"config.hardware.device"}, &vm); err != nil {
		t.Fatal(err)
	}
	var ports []*types.VirtualSerialPort
	for _, d := range vm.Config.Hardware.Device {
		if p, ok := d.(*types.VirtualSerialPort); ok {
			ports = append(ports, p)
		}
	}
	return ports
}

// reconfigureOutsideWith applies spec to the VM as a user would, not
// through the bridge.
func (e *testEnv) reconfigureOutsideWith(t *testing.T, ref types.ManagedObjectReference, spec types.VirtualMachineConfigSpec) {
	t.Helper()
	ctx := context.Background()
	task, err := object.NewVirtualMachine(e.out.vim, ref).Reconfigure(ctx, spec)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// addPortOutside adds p as the VM's user would, and waits until the
// inventory shows it.
func (e *testEnv) addPortOutside(t *testing.T, ref types.ManagedObjectReference, p *types.VirtualSerialPort) {
	t.Helper()
	p.Key = -1
	e.reconfigureOutsideWith(t, ref, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: p},
	}})
	waitFor(t, "the inventory to show the port", func() bool {
		vm, err := e.inv.get(ref)
		if err != nil {
			return false
		}
		for _, d := range vm.Config.Hardware.Device {
			if _, ok := d.(*types.VirtualSerialPort); ok {
				return true
			}
		}
		return false
	})
}

// powerOutside powers the VM on or off as its user would, and waits until
// the inventory shows it.
func (e *testEnv) powerOutside(t *testing.T, ref types.ManagedObjectReference, on bool) {
	t.Helper()
	ctx := context.Background()
	vm := object.NewVirtualMachine(e.out.vim, ref)
	task, err := vm.PowerOff(ctx)
	want := types.VirtualMachinePowerStatePoweredOff
	if on {
		task, err = vm.PowerOn(ctx)
		want = types.VirtualMachinePowerStatePoweredOn
	}
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the inventory to show the power state", func() bool {
		m, err := e.inv.get(ref)
		return err == nil && m.Runtime.PowerState == want
	})
}

// consoleSetUp waits until v's console port is set, as reads see it.
func consoleSetUp(t *testing.T, v *VM) {
	t.Helper()
	waitFor(t, "the console's serial port", func() bool {
		s, err := v.ConsoleStatus()
		return err == nil && s.Set
	})
}

func (e *testEnv) ref(t *testing.T, name string) types.ManagedObjectReference {
	t.Helper()
	ref, err := e.inv.Resolve(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// A powered-off VM bound with a console gets a vSPC serial port pointing
// at the concentrator, read back from vCenter; the user's serial ports
// stay as they were and come first; the bridge's own port pointing at
// an old address is pointed at the new one; a port pointing there already
// is enough. The simulator takes serial ports as vSphere does.
func TestConsolePortReconciled(t *testing.T) {
	t.Parallel()
	file := filePort(0, "[LocalDS_0] serial.log")
	tests := []struct {
		name     string
		existing *types.VirtualSerialPort
		// ports is how many the VM ends with; ours is the index of the
		// bridge's (-1: the existing port is left to serve).
		ports, ours int
	}{
		{"no serial port", nil, 1, 0},
		{"a file-backed port is kept", file, 2, 1},
		{"another vSPC service's port is kept", uriPort(0, "vSPC.py", consoleB), 2, 1},
		{"ours, moved", uriPort(0, ConsoleServiceURI, consoleB), 1, 0},
		{"another service's port pointing there", uriPort(0, "vSPC.py", consoleA), 1, -1},
	}
	e := startEnv(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := e.ref(t, e.sim.VMs[i])
			var before []*types.VirtualSerialPort
			if tt.existing != nil {
				e.addPortOutside(t, ref, tt.existing)
				before = e.serialPorts(t, ref)
			}
			v := e.bind(t, e.sim.VMs[i], VMOptions{ConsoleURI: consoleA})
			consoleSetUp(t, v)
			ports := e.serialPorts(t, ref)
			if len(ports) != tt.ports {
				t.Fatalf("%d serial ports, want %d", len(ports), tt.ports)
			}
			if tt.ours >= 0 {
				checkConsolePort(t, ports[tt.ours], consoleA)
			}
			if tt.ours > 0 && !sameBacking(ports[0], before[0]) {
				t.Fatalf("the user's port changed: %+v", ports[0].Backing)
			}
			if tt.ports == 1 && before != nil && ports[0].Key != before[0].Key {
				t.Fatalf("port %d replaced by %d, want it edited", before[0].Key, ports[0].Key)
			}
		})
	}
}

func sameBacking(a, b *types.VirtualSerialPort) bool {
	switch ab := a.Backing.(type) {
	case *types.VirtualSerialPortFileBackingInfo:
		bb, ok := b.Backing.(*types.VirtualSerialPortFileBackingInfo)
		return ok && ab.FileName == bb.FileName
	case *types.VirtualSerialPortURIBackingInfo:
		bb, ok := b.Backing.(*types.VirtualSerialPortURIBackingInfo)
		return ok && ab.VirtualDeviceURIBackingInfo == bb.VirtualDeviceURIBackingInfo
	}
	return false
}

// Two machines bound to one VM at once (a BMC and its duplicate), and a
// restart of the bridge, leave the VM with one console port.
func TestConsoleIdempotent(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	name := e.sim.VMs[0]
	ref := e.ref(t, name)
	saved := &savedRecords{}
	opts := VMOptions{ConsoleURI: consoleA, Persist: saved.persist}
	var vs [2]*VM
	var wg sync.WaitGroup
	for i := range vs {
		wg.Go(func() { vs[i] = e.inv.NewVM(ref, opts) })
	}
	wg.Wait()
	for _, v := range vs {
		t.Cleanup(v.Close) // again after the restart's Close: harmless
	}
	for _, v := range vs {
		consoleSetUp(t, v)
		// Any run still under way is done once one run after it is.
		if err := v.reconcileConsole(); err != nil {
			t.Fatal(err)
		}
	}
	ports := e.serialPorts(t, ref)
	if len(ports) != 1 {
		t.Fatalf("%d serial ports after two bindings, want 1", len(ports))
	}
	for _, v := range vs {
		v.Close()
	}
	opts.Saved = saved.last()
	v := e.bind(t, name, opts)
	consoleSetUp(t, v)
	if err := v.reconcileConsole(); err != nil {
		t.Fatal(err)
	}
	if again := e.serialPorts(t, ref); len(again) != 1 || again[0].Key != ports[0].Key {
		t.Fatalf("serial ports after a restart: %d, first key %d, want the one port %d", len(again), again[0].Key, ports[0].Key)
	}
}

// A running VM's console port waits for the VM to be off (vSphere adds
// serial ports only then), recorded and saved: it is added when the VM is
// seen off whoever powered it off, or else before the bridge powers the VM
// on. A refused change leaves the record as it was, is counted, and does
// not keep the client's power-on from happening.
func TestConsolePendingWhileOn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// outsideOff: the VM's user powers it off; else the bridge does,
		// vCenter refusing the port then, and at the power-on too when
		// refusedAtPowerOn.
		outsideOff, refusedAtPowerOn bool
	}{
		{"added when seen off", true, false},
		{"added at the bridge's power-on after a refusal", false, false},
		{"refused at the power-on: the VM powers on without it", false, true},
	}
	e := startEnv(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			ref := e.ref(t, e.sim.VMs[i])
			v, saved := e.runningWithConsole(t, ref)
			if tt.outsideOff {
				e.powerOutside(t, ref, false)
				consoleSetUp(t, v)
				waitFor(t, "the record cleared", func() bool { return saved.last().PendingConsole == "" })
				return
			}
			e.sim.Model().Service.AddFaultRule(faultRule("ReconfigVM_Task", new(types.InvalidDeviceSpec)))
			defer e.sim.Model().Service.ClearFaultRules()
			if err := v.Power(ctx, machine.Off); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the refusal", func() bool { s, _ := v.ConsoleStatus(); return s.Failures >= 1 })
			if rec := v.record(); rec.PendingConsole != consoleA || saved.last().PendingConsole != consoleA {
				t.Fatalf("record after a refusal: %q, saved %q", rec.PendingConsole, saved.last().PendingConsole)
			}
			if !tt.refusedAtPowerOn {
				e.sim.Model().Service.ClearFaultRules()
			}
			if err := v.Power(ctx, machine.On); err != nil {
				t.Fatalf("power on: %v", err)
			}
			if got := e.power(t, v); got != types.VirtualMachinePowerStatePoweredOn {
				t.Fatalf("VM %s after the power-on", got)
			}
			ports := e.serialPorts(t, ref)
			if tt.refusedAtPowerOn {
				s, _ := v.ConsoleStatus()
				if len(ports) != 0 || s.Failures < 2 || !s.Pending || saved.last().PendingConsole != consoleA {
					t.Fatalf("after a refusal at the power-on: %d ports, status %+v, saved %q", len(ports), s, saved.last().PendingConsole)
				}
				return
			}
			if len(ports) != 1 {
				t.Fatalf("%d serial ports after the power-on, want 1", len(ports))
			}
			checkConsolePort(t, ports[0], consoleA)
			if rec := v.record(); rec.PendingConsole != "" || saved.last().PendingConsole != "" {
				t.Fatalf("record after the port was added: %q, saved %q", rec.PendingConsole, saved.last().PendingConsole)
			}
		})
	}
}

// runningWithConsole powers the VM ref on, binds it with a console, and
// checks that the port waits, recorded and saved, rather than being added.
func (e *testEnv) runningWithConsole(t *testing.T, ref types.ManagedObjectReference) (*VM, *savedRecords) {
	t.Helper()
	e.powerOutside(t, ref, true)
	saved := &savedRecords{}
	v := e.inv.NewVM(ref, VMOptions{ConsoleURI: consoleA, Persist: saved.persist})
	t.Cleanup(v.Close)
	waitFor(t, "the port recorded for later", func() bool { return saved.last().PendingConsole == consoleA })
	if s, err := v.ConsoleStatus(); err != nil || s.Set || !s.Pending {
		t.Fatalf("console status of a running VM: %+v, %v", s, err)
	}
	if n := len(e.serialPorts(t, ref)); n != 0 {
		t.Fatalf("%d serial ports added to a running VM", n)
	}
	return v, saved
}

// Turning the console off leaves the port alone (the guest may rely on
// it) and drops a change still waiting.
func TestConsoleOffLeavesThePort(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	name := e.sim.VMs[0]
	ref := e.ref(t, name)
	v := e.bind(t, name, VMOptions{ConsoleURI: consoleA})
	consoleSetUp(t, v)
	v.Close()
	saved := &savedRecords{}
	v = e.bind(t, name, VMOptions{Saved: Record{PendingConsole: consoleB}, Persist: saved.persist})
	waitFor(t, "the waiting change dropped", func() bool { return v.record().PendingConsole == "" })
	if s, err := v.ConsoleStatus(); err != nil || s.Set || s.Pending {
		t.Fatalf("status without a console: %+v, %v", s, err)
	}
	ports := e.serialPorts(t, ref)
	if len(ports) != 1 {
		t.Fatalf("%d serial ports after the console was turned off, want the one left", len(ports))
	}
	checkConsolePort(t, ports[0], consoleA)
}

// A VM bound while vCenter does not answer gets its port once vCenter is
// back: the reconciliation is retried.
func TestConsoleRetriedThroughAnOutage(t *testing.T) {
	t.Parallel()
	e, p := proxiedEnv(t, quiet())
	ref := e.ref(t, e.sim.VMs[0])
	p.set(true, 0)
	clienttest.EventuallyWithin(t, time.Minute, "the hang detected", func() bool { return e.inv.Available() != nil })
	v := e.inv.NewVM(ref, VMOptions{ConsoleURI: consoleA})
	t.Cleanup(v.Close)
	if err := v.reconcileConsole(); !errors.Is(err, machine.ErrUnavailable) {
		t.Fatalf("reconciliation during the outage: %v", err)
	}
	p.set(false, 0)
	clienttest.EventuallyWithin(t, time.Minute, "the console's serial port", func() bool { s, err := v.ConsoleStatus(); return err == nil && s.Set })
	if n := len(e.serialPorts(t, ref)); n != 1 {
		t.Fatalf("%d serial ports, want 1", n)
	}
}
