package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi/ipmitest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// env is the bridge under test: a simulator with the seed VMs, one BMC each.
type env struct {
	sim    *vsphere.Simulator
	client *vsphere.Client
	inv    *vsphere.Inventory
	bridge *bridge.Bridge
	stop   func()
	ports  map[string]string // VM name → BMC UDP port
	// out is a second client that looks at the VMs as an operator would.
	out *vsphere.Client
}

var shared *env

// sharedTurn serialises the tests of the shared environment: they change
// and count the same VMs and vCenter calls. They are parallel tests all the
// same, so that TestVCenterOutage (60 s on an environment of its own) runs
// alongside them instead of after them: Go resumes parallel top-level tests
// only once every serial one has returned.
var sharedTurn sync.Mutex

// useShared makes t a test of the shared environment; see sharedTurn.
func useShared(t *testing.T) {
	t.Parallel()
	sharedTurn.Lock()
	t.Cleanup(sharedTurn.Unlock)
}

func TestMain(m *testing.M) {
	e, err := start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: ", err)
		os.Exit(1)
	}
	shared = e
	code := m.Run()
	e.close()
	os.Exit(code)
}

func (e *env) close() {
	_ = e.bridge.Close()
	e.stop()
	_ = e.client.Close(context.Background())
	_ = e.out.Close(context.Background())
	e.sim.Close()
}

func start(ctx context.Context) (*env, error) {
	sim, err := vsphere.StartSimulator(ctx, "127.0.0.1:0", len(vsphere.SeedVMNames))
	if err != nil {
		return nil, err
	}
	opts := vcsimtest.Options(sim)
	c, err := vsphere.Connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	out, err := vsphere.Connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	var specs []bridge.Spec
	for _, name := range sim.VMs {
		specs = append(specs, bridge.Spec{VM: name, Address: "127.0.0.1:0", Username: "admin", Password: "password"})
	}
	level := slog.LevelWarn
	if os.Getenv("E2E_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	wctx, cancel := context.WithCancel(ctx)
	inv := vsphere.NewInventory(c, log)
	inv.MaxWait = time.Second
	done := make(chan struct{})
	go func() { inv.Run(wctx); close(done) }()
	<-inv.Ready()
	b := bridge.Start(wctx, map[string]*vsphere.Inventory{"": inv}, specs, bridge.Options{Log: log})
	e := &env{sim: sim, client: c, out: out, inv: inv, bridge: b, ports: map[string]string{},
		stop: func() { cancel(); <-done }}
	for _, bm := range b.BMCs() {
		i := bm.Info()
		if i.Status != bridge.Running {
			return nil, fmt.Errorf("%s: %v", i.Spec.VM, i.Err)
		}
		_, port, _ := strings.Cut(i.Addr.String(), "127.0.0.1:")
		e.ports[i.Name] = port
	}
	return e, nil
}

// tool finds a client program; in CI a missing one fails the test.
func tool(t *testing.T, name string) string { return clienttest.Tool(t, name) }

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool(t, name), args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// vmState is what the simulator says of a VM.
type vmState struct {
	Power     types.VirtualMachinePowerState
	Firmware  string
	FirstBoot string // device class of the first boot order entry
	BIOSSetup bool
	UUID      string
}

func (e *env) vm(t *testing.T, name string) vmState {
	t.Helper()
	ctx := context.Background()
	ref, err := e.inv.Resolve(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(e.out.Vim()).RetrieveOne(ctx, ref, []string{"runtime.powerState", "config"}, &vm); err != nil {
		t.Fatal(err)
	}
	s := vmState{Power: vm.Runtime.PowerState, Firmware: vm.Config.Firmware, UUID: vm.Config.Uuid}
	if bo := vm.Config.BootOptions; bo != nil {
		s.BIOSSetup = bo.EnterBIOSSetup != nil && *bo.EnterBIOSSetup
		if len(bo.BootOrder) > 0 {
			switch bo.BootOrder[0].(type) {
			case *types.VirtualMachineBootOptionsBootableEthernetDevice:
				s.FirstBoot = "ethernet"
			case *types.VirtualMachineBootOptionsBootableDiskDevice:
				s.FirstBoot = "disk"
			case *types.VirtualMachineBootOptionsBootableCdromDevice:
				s.FirstBoot = "cdrom"
			}
		}
	}
	return s
}

// waitPower polls the simulator: the bridge answers once vCenter accepted the
// task, so the VM may reach the state a moment later.
func (e *env) waitPower(t *testing.T, name string, want types.VirtualMachinePowerState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// vCenter's state, and the bridge's watched view of it, which
		// the next IPMI answer reads and which may lag on a loaded
		// machine.
		got := e.vm(t, name).Power
		if got == want && e.bridgeSays(name, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bridgeSays reports whether the bridge's machine for the VM name says
// it is in the power state want.
func (e *env) bridgeSays(name string, want types.VirtualMachinePowerState) bool {
	bm := e.bridge.Find(name)
	if bm == nil || bm.Machine() == nil {
		return false
	}
	p, err := bm.Machine().PowerState(context.Background())
	return err == nil && (p == machine.PowerOn) == (want == types.VirtualMachinePowerStatePoweredOn)
}

const (
	on  = types.VirtualMachinePowerStatePoweredOn
	off = types.VirtualMachinePowerStatePoweredOff
)

func ipmitoolArgs(iface, port string, extra ...string) []string {
	args := []string{"-I", iface, "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "-N", "2", "-R", "2"}
	return append(args, extra...)
}

func TestIpmitoolPower(t *testing.T) {
	useShared(t)
	const name = "skinner-master-0"
	port := shared.ports[name]
	variants := []struct {
		name string
		args []string
	}{
		{"lanplus auto suite", ipmitoolArgs("lanplus", port)},
		{"lanplus suite 3", ipmitoolArgs("lanplus", port, "-C", "3")},
		{"lanplus suite 17", ipmitoolArgs("lanplus", port, "-C", "17")},
		{"lan md5", ipmitoolArgs("lan", port)},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			ipmitool := func(cmd ...string) string { return mustRun(t, "ipmitool", append(v.args, cmd...)...) }
			ipmitool("power", "off")
			shared.waitPower(t, name, off)
			if out := ipmitool("power", "status"); out != "Chassis Power is off\n" {
				t.Fatalf("power status: %q", out)
			}
			if out := ipmitool("power", "on"); !strings.Contains(out, "Up/On") {
				t.Fatalf("power on: %q", out)
			}
			shared.waitPower(t, name, on)
			if out := ipmitool("power", "status"); out != "Chassis Power is on\n" {
				t.Fatalf("power status: %q", out)
			}
			ipmitool("power", "on") // idempotent, as Ironic assumes
			ipmitool("power", "off")
			shared.waitPower(t, name, off)
		})
	}
}

func TestIpmitoolSuiteZeroRefused(t *testing.T) {
	useShared(t)
	out, err := run(t, "ipmitool", ipmitoolArgs("lanplus", shared.ports["skinner-master-0"], "-C", "0", "power", "status")...)
	if err == nil {
		t.Fatalf("cipher suite 0 accepted: %s", out)
	}
}

func TestIpmitoolIdentity(t *testing.T) {
	useShared(t)
	const name = "skinner-master-1"
	args := ipmitoolArgs("lanplus", shared.ports[name])
	if out := mustRun(t, "ipmitool", append(args, "mc", "info")...); !strings.Contains(out, "Manufacturer Name         : VMware") {
		t.Fatalf("mc info:\n%s", out)
	}
	out := mustRun(t, "ipmitool", append(args, "mc", "guid")...)
	uuid := shared.vm(t, name).UUID
	if !strings.Contains(out, "System GUID   : "+uuid) || !strings.Contains(out, "SMBIOS") {
		t.Fatalf("mc guid does not show the VM's BIOS UUID %s in SMBIOS order:\n%s", uuid, out)
	}
}

func TestIpmitoolBootdev(t *testing.T) {
	useShared(t)
	const name = "skinner-master-2"
	args := ipmitoolArgs("lanplus", shared.ports[name])
	tests := []struct {
		bootdev   []string
		readback  []string
		first     string
		firmware  string
		biosSetup bool
	}{
		{[]string{"pxe", "options=efiboot,persistent"}, []string{"Force PXE", "Options apply to all future boots", "BIOS EFI boot"}, "ethernet", "efi", false},
		// A one-time override with the EFI bit clear leaves the EFI VM's
		// firmware alone (boot.followEfiBit: persistent, the default).
		{[]string{"disk"}, []string{"Force Boot from default Hard-Drive", "Options apply to only next boot", "BIOS PC Compatible (legacy) boot"}, "disk", "efi", false},
		{[]string{"cdrom", "options=efiboot"}, []string{"Force Boot from CD/DVD"}, "cdrom", "efi", false},
		// One-time overrides start from the persistent order (pxe, set first).
		{[]string{"bios", "options=efiboot"}, []string{"Force Boot into BIOS Setup"}, "ethernet", "efi", true},
		{[]string{"pxe", "options=efiboot,persistent"}, []string{"Force PXE"}, "ethernet", "efi", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.bootdev, " "), func(t *testing.T) {
			mustRun(t, "ipmitool", append(append(args, "chassis", "bootdev"), tt.bootdev...)...)
			out := mustRun(t, "ipmitool", append(args, "chassis", "bootparam", "get", "5")...)
			for _, want := range tt.readback {
				if !strings.Contains(out, want) {
					t.Errorf("bootparam get 5 lacks %q:\n%s", want, out)
				}
			}
			s := shared.vm(t, name)
			if s.FirstBoot != tt.first || s.Firmware != tt.firmware || s.BIOSSetup != tt.biosSetup {
				t.Errorf("VM boots %s first with %s firmware, BIOS setup %v; want %s, %s, %v", s.FirstBoot, s.Firmware, s.BIOSSetup, tt.first, tt.firmware, tt.biosSetup)
			}
		})
	}
}

// TestIronicCommandLines runs the command lines Ironic's ipmitool driver
// builds (ironic/drivers/modules/ipmitool.py, _exec_ipmitool), with its
// timing (-R 1 -N 5) and password file.
func TestIronicCommandLines(t *testing.T) {
	useShared(t)
	const name = "skinner-worker-1"
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("password"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-I", "lanplus", "-H", "127.0.0.1", "-L", "ADMINISTRATOR", "-p", shared.ports[name], "-U", "admin", "-R", "1", "-N", "5", "-f", pw}
	ironic := func(cmd ...string) string { return mustRun(t, "ipmitool", append(base, cmd...)...) }

	steps := []struct {
		cmd   []string
		want  string
		check func(t *testing.T)
	}{
		{[]string{"mc", "info"}, "VMware", nil},
		{[]string{"power", "status"}, "Chassis Power is off\n", nil},
		{[]string{"raw", "0x00", "0x08", "0x03", "0x08"}, "", nil},
		{[]string{"raw", "0x00", "0x08", "0x05", "0xe0", "0x04", "0x00", "0x00", "0x00"}, "", func(t *testing.T) {
			if s := shared.vm(t, name); s.FirstBoot != "ethernet" || s.Firmware != "efi" {
				t.Errorf("UEFI persistent pxe: VM %+v", s)
			}
		}},
		{[]string{"chassis", "bootparam", "get", "5"}, "Boot Device Selector : Force PXE", nil},
		{[]string{"power", "on"}, "", func(t *testing.T) { shared.waitPower(t, name, on) }},
		{[]string{"power", "status"}, "Chassis Power is on\n", nil},
		{[]string{"power", "reset"}, "", func(t *testing.T) { shared.waitPower(t, name, on) }},
		{[]string{"raw", "0x00", "0x08", "0x05", "0xa0", "0x08", "0x00", "0x00", "0x00"}, "", func(t *testing.T) {
			if s := shared.vm(t, name); s.FirstBoot != "disk" {
				t.Errorf("UEFI once disk: VM %+v", s)
			}
		}},
		{[]string{"chassis", "bootparam", "get", "5"}, "Options apply to only next boot", nil},
		{[]string{"raw", "0x00", "0x08", "0x03", "0x08"}, "", nil},
		{[]string{"chassis", "bootdev", "pxe"}, "Set Boot Device to pxe", nil},
		{[]string{"power", "soft"}, "", func(t *testing.T) { shared.waitPower(t, name, off) }},
		{[]string{"power", "on"}, "", func(t *testing.T) { shared.waitPower(t, name, on) }},
		{[]string{"power", "off"}, "", func(t *testing.T) { shared.waitPower(t, name, off) }},
		{[]string{"power", "off"}, "", nil},
		{[]string{"power", "status"}, "Chassis Power is off\n", nil},
	}
	for _, s := range steps {
		t.Run(strings.Join(s.cmd, " "), func(t *testing.T) {
			out := ironic(s.cmd...)
			if !strings.Contains(out, s.want) {
				t.Fatalf("output %q lacks %q", out, s.want)
			}
			if s.check != nil {
				s.check(t)
			}
		})
	}
}

// Commands that cannot apply to the VM's state get a completion code, not
// silence and not a hidden hard power-off.
func TestIpmitoolRefusals(t *testing.T) {
	useShared(t)
	const name = "skinner-worker-2"
	args := ipmitoolArgs("lanplus", shared.ports[name])
	mustRun(t, "ipmitool", append(args, "power", "off")...)
	shared.waitPower(t, name, off)
	for _, cmd := range []string{"cycle", "reset", "diag"} {
		t.Run(cmd, func(t *testing.T) {
			out, err := run(t, "ipmitool", append(args, "power", cmd)...)
			if err == nil || !strings.Contains(out, "not supported in present state") {
				t.Fatalf("power %s on a powered-off VM: %v %q", cmd, err, out)
			}
		})
	}
	t.Run("bmc reset cold leaves the VM on", func(t *testing.T) {
		mustRun(t, "ipmitool", append(args, "power", "on")...)
		shared.waitPower(t, name, on)
		mustRun(t, "ipmitool", append(args, "bmc", "reset", "cold")...)
		if s := shared.vm(t, name); s.Power != on {
			t.Fatalf("bmc reset touched the VM: %s", s.Power)
		}
		mustRun(t, "ipmitool", append(args, "power", "cycle")...)
		shared.waitPower(t, name, on)
		mustRun(t, "ipmitool", append(args, "power", "off")...)
		shared.waitPower(t, name, off)
	})
}

func TestFreeIPMI(t *testing.T) {
	useShared(t)
	const name = "skinner-worker-2"
	for _, driver := range []string{"LAN_2_0", "LAN"} {
		t.Run(driver, func(t *testing.T) {
			ipmipower := func(op string) string {
				return mustRun(t, "ipmipower", "-D", driver, "-h", "127.0.0.1:"+shared.ports[name], "-u", "admin", "-p", "password", op)
			}
			if out := ipmipower("--off"); !strings.Contains(out, "ok") {
				t.Fatalf("--off: %q", out)
			}
			shared.waitPower(t, name, off)
			if out := ipmipower("--stat"); !strings.Contains(out, ": off") {
				t.Fatalf("--stat: %q", out)
			}
			if out := ipmipower("--on"); !strings.Contains(out, "ok") {
				t.Fatalf("--on: %q", out)
			}
			shared.waitPower(t, name, on)
			if out := ipmipower("--stat"); !strings.Contains(out, ": on") {
				t.Fatalf("--stat: %q", out)
			}
			ipmipower("--off")
			shared.waitPower(t, name, off)
		})
	}
	t.Run("bmc-info", func(t *testing.T) {
		out := mustRun(t, "bmc-info", "-D", "LAN_2_0", "-h", "127.0.0.1:"+shared.ports[name], "-u", "admin", "-p", "password")
		if !strings.Contains(out, "VMware") || !strings.Contains(out, "IPMI Version          : 2.0") {
			t.Fatalf("bmc-info:\n%s", out)
		}
	})
}

func TestPyghmi(t *testing.T) {
	useShared(t)
	const name = "skinner-master-1"
	python := clienttest.PythonModule(t, "pyghmi.ipmi.command")
	pyghmi := func(steps ...string) []map[string]any {
		t.Helper()
		out := mustRun(t, python, append([]string{"testdata/pyghmi_client.py", shared.ports[name]}, steps...)...)
		var res []map[string]any
		dec := json.NewDecoder(strings.NewReader(out))
		for {
			var m map[string]any
			if err := dec.Decode(&m); err == io.EOF {
				return res
			} else if err != nil {
				t.Fatalf("%v in %q", err, out)
			}
			res = append(res, m)
		}
	}
	got := pyghmi("power=off", "power=status")
	if got[1]["powerstate"] != "off" {
		t.Fatalf("power status after off: %v", got)
	}
	shared.waitPower(t, name, off)
	got = pyghmi("power=on", "power=status")
	if got[1]["powerstate"] != "on" {
		t.Fatalf("power status after on: %v", got)
	}
	shared.waitPower(t, name, on)

	tests := []struct {
		step     string
		want     map[string]any
		first    string
		firmware string
	}{
		{"boot=network:persistent:uefi", map[string]any{"bootdev": "network", "persistent": true, "uefimode": true}, "ethernet", "efi"},
		{"boot=hd:once:legacy", map[string]any{"bootdev": "hd", "persistent": false, "uefimode": false}, "disk", "efi"},
		{"boot=optical:persistent:uefi", map[string]any{"bootdev": "optical", "persistent": true, "uefimode": true}, "cdrom", "efi"},
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			got := pyghmi(tt.step, "getboot")[1]
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("get_bootdev()[%s] = %v, want %v (%v)", k, got[k], v, got)
				}
			}
			// The VM is running: a firmware change waits for the next power-on.
			if s := shared.vm(t, name); s.FirstBoot != tt.first || s.Firmware != tt.firmware {
				t.Errorf("VM boots %s first with %s firmware; want %s, %s", s.FirstBoot, s.Firmware, tt.first, tt.firmware)
			}
		})
	}
	pyghmi("boot=hd:persistent:legacy", "power=off", "power=on")
	shared.waitPower(t, name, on)
	if s := shared.vm(t, name); s.Firmware != "bios" || s.FirstBoot != "disk" {
		t.Errorf("legacy boot requested while running not applied at power-on: %+v", s)
	}
	pyghmi("power=off")
}

// BenchmarkPowerStatus measures one in-session Get Chassis Status against
// the bridge with the simulator behind it, from go-ipmi's client, and
// reports the vCenter requests each read cost (the inventory serves it).
func BenchmarkPowerStatus(b *testing.B) {
	before := nonWatchRequests(shared.client.Requests())
	ipmitest.BenchmarkPowerStatus(b, "127.0.0.1", shared.ports["skinner-master-0"], "admin", "password")
	b.ReportMetric(float64(nonWatchRequests(shared.client.Requests())-before)/float64(b.N), "vcenter-requests/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}
