package e2e

import (
	"context"
	"fmt"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/vmware/govmomi/object"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi/ipmitest"
)

// A one-time PXE boot is used by the next power-on: the boot order it
// replaced comes back and parameter 5 reads as invalid, as on a real BMC.
func TestOneTimePXEReverts(t *testing.T) {
	useShared(t)
	const name = "skinner-worker-1"
	args := ipmitoolArgs("lanplus", shared.ports[name])
	ipmitool := func(cmd ...string) string { return mustRun(t, "ipmitool", append(args, cmd...)...) }
	ipmitool("power", "off")
	shared.waitPower(t, name, off)
	ipmitool("chassis", "bootdev", "disk", "options=efiboot,persistent")
	ipmitool("raw", "0x00", "0x08", "0x05", "0xa0", "0x04", "0x00", "0x00", "0x00")
	if s := shared.vm(t, name); s.FirstBoot != "ethernet" {
		t.Fatalf("one-time pxe not applied: %+v", s)
	}
	ipmitool("power", "on")
	deadline := time.Now().Add(5 * time.Second)
	for shared.vm(t, name).FirstBoot != "disk" {
		if time.Now().After(deadline) {
			t.Fatalf("boot order not restored after the boot: %+v", shared.vm(t, name))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The bridge clears the flags once its own read of the VM shows the
	// order put back, a moment after vCenter does.
	for {
		out := ipmitool("chassis", "bootparam", "get", "5")
		if strings.Contains(out, "Boot Flag Invalid") && strings.Contains(out, "No override") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("parameter 5 after the one-time boot:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ipmitool("power", "off")
	shared.waitPower(t, name, off)
}

// Power status is served from the inventory: a thousand reads in one
// session cost vCenter no request.
func TestStatusReadsCostNoRequests(t *testing.T) {
	useShared(t)
	c := ipmitest.Dial(t, "127.0.0.1", shared.ports["skinner-master-0"], "admin", "password", client.InterfaceLanplus)
	ctx := context.Background()
	before := nonWatchRequests(shared.client.Requests())
	for range 1000 {
		if _, err := c.GetChassisStatus(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := nonWatchRequests(shared.client.Requests()) - before; d != 0 {
		t.Fatalf("1000 power status reads sent %d vCenter requests", d)
	}
}

// nonWatchRequests counts the requests other than the watcher's and the
// heartbeat's, which run whether or not anyone reads.
func nonWatchRequests(m map[string]uint64) uint64 {
	var n uint64
	for k, v := range m {
		if k != "WaitForUpdatesEx" && k != "CurrentTime" {
			n += v
		}
	}
	return n
}

// A power change made outside the bridge (an operator in the vSphere
// client) shows over IPMI within a second.
func TestOutsideChangeVisible(t *testing.T) {
	useShared(t)
	const name = "skinner-master-2"
	ctx := context.Background()
	ref, err := shared.inv.Resolve(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	vm := object.NewVirtualMachine(shared.out.Vim(), ref)
	args := ipmitoolArgs("lanplus", shared.ports[name], "power", "status")
	for _, step := range []struct {
		do   func(context.Context) (*object.Task, error)
		want string
	}{
		{vm.PowerOn, "Chassis Power is on\n"},
		{vm.PowerOff, "Chassis Power is off\n"},
	} {
		task, err := step.do(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		// How soon is logged (a figure, not a limit: the suite shares a
		// loaded machine); the shared wait only bounds a change never seen.
		start := time.Now()
		clienttest.Eventually(t, "ipmitool saying "+step.want, func() bool { return mustRun(t, "ipmitool", args...) == step.want })
		t.Logf("outside change seen over IPMI after %v", time.Since(start))
	}
}

// TestVCenterOutage stops the simulated vCenter (for OUTAGE, default 60 s)
// while a console keeps asking: every request is answered at once, with
// node-busy while vCenter is away, and the bridge recovers by itself. It
// has an environment of its own, so that it runs alongside the others.
func TestVCenterOutage(t *testing.T) {
	t.Parallel()
	e, err := start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	outage := 60 * time.Second
	if v := os.Getenv("OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		outage = d
	}
	c := ipmitest.Dial(t, "127.0.0.1", e.ports["skinner-worker-2"], "admin", "password", client.InterfaceLanplus, func(c *client.Client) {
		c.WithTimeout(2 * time.Second)
		c.WithRetry(0)
	})
	ctx := context.Background()

	e.sim.Stop()
	stopped := time.Now()
	var asked, busy int
	var slowest time.Duration
	for time.Since(stopped) < outage {
		start := time.Now()
		_, err := c.GetChassisStatus(ctx)
		d := time.Since(start)
		asked++
		slowest = max(slowest, d)
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "0xc0") || strings.Contains(strings.ToLower(err.Error()), "busy"):
			busy++
		default:
			t.Fatalf("request %d during the outage: %v after %v", asked, err, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if busy == 0 {
		t.Fatalf("no request saw the outage (%d asked)", asked)
	}
	e.sim.Restart()
	restarted := time.Now()
	for {
		if _, err := c.GetChassisStatus(ctx); err == nil {
			break
		}
		if time.Since(restarted) > 10*time.Second {
			t.Fatal("no recovery within 10 s of vCenter's return")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("outage %v: %d requests, %d answered node-busy, slowest answer %v; recovered %v after vCenter returned",
		outage, asked, busy, slowest, time.Since(restarted))
	if slowest > 2*time.Second {
		t.Errorf("an answer took %v", slowest)
	}
}

// Sensors, the SEL and FRU data read with ipmitool and FreeIPMI from a VM
// of the simulator, with the VM's own values.
func TestSensorsSELAndFRU(t *testing.T) {
	useShared(t)
	const name = "skinner-master-1"
	port := shared.ports[name]
	args := ipmitoolArgs("lanplus", port)
	mustRun(t, "ipmitool", append(args, "power", "on")...)
	shared.waitPower(t, name, on)
	mustRun(t, "ipmitool", append(args, "power", "off")...)
	shared.waitPower(t, name, off)
	uuid := shared.vm(t, name).UUID
	serial := "VMware-" + strings.Join(func() []string {
		h := strings.ReplaceAll(uuid, "-", "")
		var b []string
		for i := 0; i < 32; i += 2 {
			b = append(b, h[i:i+2])
		}
		return b
	}(), " ")
	serial = serial[:len("VMware-")+23] + "-" + serial[len("VMware-")+24:]
	checks := []struct {
		tool string
		args []string
		want []string
	}{
		{"ipmitool", append(args, "sdr"), []string{"CPU Usage", "Memory Usage", "Power State"}},
		{"ipmitool", append(args, "sel", "list"), []string{"Power off/down | Deasserted", "Power off/down | Asserted"}},
		{"ipmitool", append(args, "fru"), []string{"VMware Virtual Platform", serial, name}},
		{"ipmi-sensors", []string{"-D", "LAN_2_0", "-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password", "--quiet-cache", "--sdr-cache-recreate"}, []string{"CPU Usage", "Power Off/Power Down"}},
		{"ipmi-sel", []string{"-D", "LAN_2_0", "-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password", "--quiet-cache", "--sdr-cache-recreate"}, []string{"Power Unit"}},
		{"ipmi-fru", []string{"-D", "LAN_2_0", "-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password", "--quiet-cache", "--sdr-cache-recreate"}, []string{"VMware Virtual Platform", name}},
	}
	for _, c := range checks {
		t.Run(c.tool+" "+c.args[len(c.args)-1], func(t *testing.T) {
			out := mustRun(t, c.tool, c.args...)
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// Eight ipmitool sessions at once to one BMC (the default session limit
// is 32), each running a stream of commands.
func TestEightConcurrentSessions(t *testing.T) {
	useShared(t)
	file := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(file, []byte(strings.Repeat("power status\nchassis status\n", 25)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := ipmitoolArgs("lanplus", shared.ports["skinner-worker-2"], "exec", file)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			out, err := run(t, "ipmitool", args...)
			if err == nil && strings.Count(out, "Chassis Power is") != 25 {
				err = fmt.Errorf("%d answers", strings.Count(out, "Chassis Power is"))
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
