package vsphere

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// startSim starts an embedded simulator with the seed VMs and a client.
func startSim(t *testing.T) (*Simulator, *Client) {
	t.Helper()
	ctx := context.Background()
	sim, err := StartSimulator(ctx, "127.0.0.1:0", len(SeedVMNames))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	c, err := Connect(ctx, Options{URL: sim.URL.String(), Username: SimulatorUser, Password: SimulatorPassword, CAFile: sim.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	return sim, c
}

func vmConfig(t *testing.T, c *Client, v *VM) mo.VirtualMachine {
	t.Helper()
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(c.vim).RetrieveOne(context.Background(), v.Reference(), []string{"runtime.powerState", "config"}, &vm); err != nil {
		t.Fatal(err)
	}
	return vm
}

func TestSimulatorSeed(t *testing.T) {
	sim, c := startSim(t)
	if len(sim.VMs) != 5 || sim.VMs[0] != "skinner-master-0" || sim.VMs[4] != "skinner-worker-2" {
		t.Fatalf("VMs = %v", sim.VMs)
	}
	for _, name := range sim.VMs {
		v, err := c.FindVM(context.Background(), name, nil)
		if err != nil {
			t.Fatal(err)
		}
		vm := vmConfig(t, c, v)
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

func TestFindVM(t *testing.T) {
	_, c := startSim(t)
	ctx := context.Background()
	byName, err := c.FindVM(ctx, "skinner-worker-2", nil)
	if err != nil {
		t.Fatal(err)
	}
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
			v, err := c.FindVM(ctx, tt.ref, nil)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Reference() != byName.Reference() {
				t.Fatalf("found %v, want %v", v.Reference(), byName.Reference())
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

func TestPower(t *testing.T) {
	_, c := startSim(t)
	ctx := context.Background()
	v, err := c.FindVM(ctx, "skinner-master-0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
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
		err := v.Power(ctx, s.action)
		if !errors.Is(err, s.err) {
			t.Fatalf("step %d %s: err = %v, want %v", i, s.action, err, s.err)
		}
		if got := vmConfig(t, c, v).Runtime.PowerState; got != s.want {
			t.Fatalf("step %d %s: VM is %s, want %s", i, s.action, got, s.want)
		}
	}
}

func TestPowerCycle(t *testing.T) {
	_, c := startSim(t)
	ctx := context.Background()
	v, _ := c.FindVM(ctx, "skinner-master-1", nil)
	defer v.Close()
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	if err := v.Power(ctx, machine.Cycle); err != nil {
		t.Fatal(err)
	}
	waitPower(t, v, machine.PowerOn)
}

func waitPower(t *testing.T, v *VM, want machine.PowerState) {
	t.Helper()
	for range 200 {
		if s, _ := v.PowerState(context.Background()); s == want {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("VM never reached %s", want)
}

func TestSoftOffWithoutTools(t *testing.T) {
	sim, c := startSim(t)
	ctx := context.Background()
	v, _ := c.FindVM(ctx, "skinner-master-2", nil)
	defer v.Close()
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	sim.model.Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName: "ShutdownGuest", ObjectType: "*", ObjectName: "*",
		Probability: 1, Enabled: true, FaultType: simulator.FaultTypeCustom, Fault: new(types.ToolsUnavailable),
	})
	if err := v.Power(ctx, machine.SoftOff); !errors.Is(err, machine.ErrInvalidState) {
		t.Fatalf("soft off without tools: %v", err)
	}
	if s, _ := v.PowerState(ctx); s != machine.PowerOn {
		t.Fatalf("soft off without tools powered the VM %s", s)
	}
}

func TestBootOverride(t *testing.T) {
	_, c := startSim(t)
	ctx := context.Background()
	v, _ := c.FindVM(ctx, "skinner-worker-1", nil)
	defer v.Close()
	first := func() string {
		order := vmConfig(t, c, v).Config.BootOptions
		if order == nil || len(order.BootOrder) == 0 {
			return ""
		}
		return bootableClass(order.BootOrder[0])
	}
	tests := []struct {
		name      string
		o         machine.BootOverride
		first     string
		firmware  string
		biosSetup bool
	}{
		{"pxe uefi persistent", machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeUEFI}, "ethernet", "efi", false},
		{"disk legacy", machine.BootOverride{Enabled: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy}, "disk", "bios", false},
		{"cdrom keeps firmware", machine.BootOverride{Enabled: true, Device: machine.BootCD}, "cdrom", "bios", false},
		{"bios setup", machine.BootOverride{Enabled: true, Device: machine.BootBIOSSetup, Mode: machine.BootModeUEFI}, "cdrom", "efi", true},
		{"none clears setup", machine.BootOverride{}, "cdrom", "efi", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := v.SetBootOverride(ctx, tt.o); err != nil {
				t.Fatal(err)
			}
			cfg := vmConfig(t, c, v).Config
			if got := first(); got != tt.first {
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
	_, c := startSim(t)
	ctx := context.Background()
	v, _ := c.FindVM(ctx, "skinner-worker-2", nil)
	defer v.Close()
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	o := machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}
	if err := v.SetBootOverride(ctx, o); err != nil {
		t.Fatal(err)
	}
	if fw := vmConfig(t, c, v).Config.Firmware; fw != "efi" {
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
	if fw := vmConfig(t, c, v).Config.Firmware; fw != "bios" {
		t.Fatalf("firmware not applied at power-on: %s", fw)
	}
}

func TestIdentity(t *testing.T) {
	_, c := startSim(t)
	v, err := c.FindVM(context.Background(), "skinner-master-0", nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := v.Identity(context.Background())
	if id.CPUs != 4 || id.MemoryMiB != 16384 || len(id.MACs) != 1 || len(id.MACs[0]) != 17 {
		t.Errorf("identity %+v", id)
	}
	if got := serialNumber("4230a5b6-0c1d-2e3f-8899-aabbccddeeff"); got != "VMware-42 30 a5 b6 0c 1d 2e 3f-88 99 aa bb cc dd ee ff" {
		t.Errorf("serial %q", got)
	}
}
