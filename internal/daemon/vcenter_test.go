package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// forward relays TCP connections to addr to the address to, until the
// test ends.
func forward(t *testing.T, addr, to string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
}

// logins reads vcenter_requests_total{method="Login"} from the daemon's
// metrics: the request-counting client's count of logins sent.
func logins(t *testing.T, metricsURL string) int {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "vcenter_requests_total{") && strings.Contains(l, `method="Login"`) {
			fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &n)
		}
	}
	return n
}

// A wrong vCenter password at start: the daemon stays up, its BMC answers
// node-busy, /readyz fails, `bmc list` says whose login failed and why,
// and at most 3 logins are sent (the default cap per 15 minutes).
func TestStartWithWrongVCenterPassword(t *testing.T) {
	t.Parallel()
	sim := vcsimtest.Start(t, 2)
	dir := t.TempDir()
	p0 := clienttest.FreeUDPPort(t)
	cfgPath := writeConfig(t, dir, templateConfig(dir, sim.URL.String(), "wrong-password", sim.CAFile, p0, clienttest.FreeUDPPort(t), ""))
	start := time.Now()
	d := startDaemon(t, cfgPath, filepath.Join(dir, "run", "api.sock"))
	defer d.stop(t)
	t.Logf("ready after %v:\n%s", time.Since(start).Round(time.Millisecond), d.out.String())
	ctx := context.Background()

	bmcs, err := d.api.BMCs(ctx)
	if err != nil || len(bmcs) != 2 {
		t.Fatalf("list: %v %+v", err, bmcs)
	}
	for _, want := range []string{`login as "vcsim" refused (InvalidLogin)`, "password is wrong"} {
		if !strings.Contains(bmcs[0].Error, want) {
			t.Fatalf("bmc list does not say why (%q): %+v", want, bmcs[0])
		}
	}
	out, err := ipmitool(t, "127.0.0.1", p0, "power", "status")
	if err == nil || !strings.Contains(strings.ToLower(out), "busy") {
		t.Fatalf("power status without vCenter: %v %q", err, out)
	}
	t.Logf("ipmitool power status: %q", strings.TrimSpace(out))
	notReady(t, d.ep.Metrics, "InvalidLogin")

	// Backoff (1 s, 2 s, ...) would have sent a fourth login by now.
	deadline := time.Now().Add(60 * time.Second)
	for logins(t, d.ep.Metrics) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	n := logins(t, d.ep.Metrics)
	t.Logf("logins sent with a wrong password %v after start: %d", time.Since(start).Round(time.Second), n)
	if n != 3 {
		t.Fatalf("%d logins, want 3", n)
	}
	select {
	case err := <-d.done:
		t.Fatalf("daemon stopped: %v", err)
	default:
	}
}

// notReady checks that the daemon's /readyz fails, saying why.
func notReady(t *testing.T, metricsURL, why string) {
	t.Helper()
	resp, err := http.Get(strings.Replace(metricsURL, "/metrics", "/readyz", 1))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), why) {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
	}
}

// vCenter unreachable at start: the daemon serves, and binds its BMCs
// once vCenter is there.
func TestStartWithoutVCenter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p0 := clienttest.FreeUDPPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", clienttest.FreeTCPPort(t))
	cfg := templateConfig(dir, "https://"+addr+"/sdk", vsphere.SimulatorPassword, "", p0, clienttest.FreeUDPPort(t), "")
	cfgPath := writeConfig(t, dir, strings.Replace(cfg, "  caFile: \n", "  insecure: true\n", 1))
	d := startDaemon(t, cfgPath, filepath.Join(dir, "run", "api.sock"))
	defer d.stop(t)
	ctx := context.Background()
	bmcs, err := d.api.BMCs(ctx)
	if err != nil || len(bmcs) != 2 || !strings.Contains(bmcs[0].Error, "cannot reach vCenter") {
		t.Fatalf("list: %v %+v", err, bmcs)
	}
	if out, err := ipmitool(t, "127.0.0.1", p0, "power", "status"); err == nil || !strings.Contains(strings.ToLower(out), "busy") {
		t.Fatalf("power status without vCenter: %v %q", err, out)
	}
	// vCenter appears at addr with its VMs: the simulator is seeded on a
	// port of its own first, since a bridge watching while VMs are created
	// races inside govmomi's simulator.
	sim := vcsimtest.Start(t, 2)
	forward(t, addr, sim.URL.Host)
	deadline := time.Now().Add(90 * time.Second)
	for {
		bmcs, err = d.api.BMCs(ctx)
		if err == nil && bmcs[0].Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never bound: %v %+v", err, bmcs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := ipmitool(t, "127.0.0.1", p0, "power", "status"); err != nil || out != "Chassis Power is off\n" {
		t.Fatalf("once vCenter is there: %v %q", err, out)
	}
}
