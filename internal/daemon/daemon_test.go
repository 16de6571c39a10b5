package daemon

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

var update = flag.Bool("update", false, "rewrite golden files")

// running is a daemon started in-process against a test simulator.
type running struct {
	out    *clienttest.Buffer
	api    *api.Client
	ep     Endpoints
	cancel context.CancelFunc
	done   chan error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

// startDaemon runs a daemon and returns once it serves, as Options.Ready
// says; its banner, printed by then, names where.
func startDaemon(t *testing.T, config, socket string) *running {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("DAEMON_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return startDaemonWith(t, Options{Config: config, Socket: socket, Log: log})
}

// startDaemonWith is startDaemon with o's configuration, socket and log.
func startDaemonWith(t *testing.T, o Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: &clienttest.Buffer{}, api: api.NewClient(o.Socket), cancel: cancel, done: make(chan error, 1)}
	ready := make(chan Endpoints, 1)
	o.Stdout, o.Ready = r.out, func(ep Endpoints) { ready <- ep }
	go func() { r.done <- Run(ctx, o) }()
	select {
	case r.ep = <-ready:
	case err := <-r.done:
		t.Fatalf("daemon stopped: %v\n%s", err, r.out.String())
	case <-time.After(time.Minute): // a guard against a hang, not a measurement
		cancel()
		t.Fatalf("not ready:\n%s", r.out.String())
	}
	for _, url := range []string{r.ep.Socket, r.ep.Metrics, r.ep.Redfish} {
		if !strings.Contains(r.out.String(), url) {
			t.Fatalf("the banner does not show %s:\n%s", url, r.out.String())
		}
	}
	return r
}

func ipmitool(t *testing.T, host string, port int, args ...string) (string, error) {
	t.Helper()
	p := clienttest.Tool(t, "ipmitool")
	base := []string{"-I", "lanplus", "-H", host, "-p", strconv.Itoa(port), "-U", "admin", "-P", "pw-12345", "-N", "1", "-R", "1"}
	out, err := exec.Command(p, append(base, args...)...).CombinedOutput()
	return string(out), err
}

const configTemplate = `vcenter:
  url: %s
  username: %s
  password: %s
  caFile: %s
stateDir: %s
metricsAddress: 127.0.0.1:0
redfish:
  address: ""
bmcs:
  - vm: skinner-master-0
    address: 127.0.0.1
    port: %d
    password: pw-12345
  - vm: ghost
    address: 127.0.0.1
    port: %d
    password: pw-12345
%s`

// templateConfig is configTemplate filled in: vCenter at url as the
// simulator's user with password, trusting caFile; the state in
// dir/state; skinner-master-0's BMC on port p0 and the ghost's on pGhost;
// then extra.
func templateConfig(dir, url, password, caFile string, p0, pGhost int, extra string) string {
	return fmt.Sprintf(configTemplate, url, vsphere.SimulatorUser, password, caFile, filepath.Join(dir, "state"), p0, pGhost, extra)
}

// simVCenter is the vcenter line of a configuration whose vCenter is sim,
// reached as its user and trusting its CA file, for the tests that vary
// what follows it rather than how vCenter is reached.
func simVCenter(sim *vsphere.Simulator) string {
	return fmt.Sprintf("vcenter: {url: %s, username: %s, password: %s, caFile: %s}\n", sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.CAFile)
}

// writeConfig writes cfg as dir/bridge.yaml, readable by its owner only
// (the file holds passwords), and returns its path.
func writeConfig(t *testing.T, dir, cfg string) string {
	t.Helper()
	path := filepath.Join(dir, "bridge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// management is TestManagement's daemon and what its phases share.
type management struct {
	sim                    *vsphere.Simulator
	d                      *running
	dir, socket, cfgPath   string
	p0, pGhost, p3, p4, p5 int
	vms                    []api.VM // as the first phase listed them
}

// writeConfig writes the configuration: skinner-master-0's BMC, the
// ghost's (a VM that does not exist) and extra BMCs.
func (m *management) writeConfig(t *testing.T, extra string) {
	t.Helper()
	m.cfgPath = writeConfig(t, m.dir, templateConfig(m.dir, m.sim.URL.String(), vsphere.SimulatorPassword, m.sim.CAFile, m.p0, m.pGhost, extra))
}

// TestManagement drives a running daemon through its management API: add,
// list, stop, start and remove BMCs and talk to them with ipmitool; check
// good and bad endpoints; scrape metrics after traffic; render manifests
// with the simulator's real MACs; restart and find every BMC back; reload
// the configuration. Each phase builds on the one before.
func TestManagement(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := &management{sim: vcsimtest.Start(t, 5), dir: dir, socket: filepath.Join(dir, "run", "api.sock"),
		p0: clienttest.FreeUDPPort(t), pGhost: clienttest.FreeUDPPort(t), p3: clienttest.FreeUDPPort(t), p4: clienttest.FreeUDPPort(t), p5: clienttest.FreeUDPPort(t)}
	m.writeConfig(t, "")
	m.d = startDaemon(t, m.cfgPath, m.socket)
	defer func() {
		if m.d != nil {
			m.d.stop(t)
		}
	}()
	for _, phase := range []struct {
		name string
		run  func(*testing.T, *management)
	}{
		{"add and stop", testAddAndStop},
		{"check, show and metrics", testCheckAndShow},
		{"manifests", testManifests},
		{"restart", testRestart},
		{"reload", testReload},
	} {
		if !t.Run(phase.name, func(t *testing.T) { phase.run(t, m) }) {
			return
		}
	}
}

// testAddAndStop adds runtime BMCs, one address per VM on their own
// loopback addresses, refuses wrong ones, and stops one.
func testAddAndStop(t *testing.T, m *management) {
	ctx, c := context.Background(), m.d.api
	bmcs, err := c.BMCs(ctx)
	if err != nil || len(bmcs) != 2 || bmcs[0].Status != "running" || bmcs[1].Status != "waiting" {
		t.Fatalf("list: %v %+v", err, bmcs)
	}
	if fi, err := os.Stat(m.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket permissions: %v %v", err, fi.Mode())
	}
	b, err := c.Add(ctx, api.Add{VM: "skinner-worker-1", Address: "127.0.0.3", Port: m.p3, Password: "pw-12345"})
	if err != nil || b.Status != "running" || b.Source != "runtime" {
		t.Fatalf("add: %v %+v", err, b)
	}
	if out, err := ipmitool(t, "127.0.0.3", m.p3, "power", "status"); err != nil || out != "Chassis Power is off\n" {
		t.Fatalf("added BMC: %v %q", err, out)
	}
	if _, err := c.Add(ctx, api.Add{VM: "skinner-worker-1", Address: "127.0.0.3", Port: m.p3, Password: "x"}); err == nil {
		t.Fatal("a second BMC on a used address was accepted")
	}
	if _, err := c.Add(ctx, api.Add{VM: "nope", Address: "127.0.0.3", Port: m.p4, Password: "x"}); err == nil {
		t.Fatal("a BMC for a missing VM was accepted")
	}
	added, err := c.AddAll(ctx, api.AddAll{Filter: "skinner-worker-*", Address: "127.0.0.4", BasePort: m.p4, Password: "pw-12345"})
	if err != nil || len(added) != 1 || added[0].Name != "skinner-worker-2" {
		t.Fatalf("add --all: %v %+v", err, added)
	}
	if out, err := ipmitool(t, "127.0.0.4", m.p4, "chassis", "bootdev", "pxe", "options=persistent"); err != nil {
		t.Fatalf("bootdev on the --all BMC: %v %s", err, out)
	}
	if m.vms, err = c.VMs(ctx, api.VMQuery{Filter: "skinner-*"}); err != nil || len(m.vms) != 5 || m.vms[3].BMC == "" || m.vms[1].BMC != "" {
		t.Fatalf("vms: %v %+v", err, m.vms)
	}
	if err := c.Stop(ctx, "skinner-worker-1"); err != nil {
		t.Fatal(err)
	}
	if out, err := ipmitool(t, "127.0.0.3", m.p3, "power", "status"); err == nil {
		t.Fatalf("stopped BMC answered: %q", out)
	}
}

// testCheckAndShow checks every BMC, the stopped one and the ghost
// failing, and reads one BMC and the metrics after the traffic.
func testCheckAndShow(t *testing.T, m *management) {
	ctx := context.Background()
	checks, err := m.d.api.Check(ctx)
	if err != nil || len(checks) != 4 {
		t.Fatalf("check: %v %+v", err, checks)
	}
	failed := map[string]bool{}
	for _, c := range checks {
		failed[c.VM] = c.Error != ""
	}
	if failed["skinner-master-0"] || failed["skinner-worker-2"] || !failed["skinner-worker-1"] || !failed["ghost"] {
		t.Fatalf("check results %+v", checks)
	}
	show, err := m.d.api.BMC(ctx, "skinner-master-0")
	if err != nil || show.Requests == 0 {
		t.Fatalf("show: %v %+v", err, show)
	}
	scrape(t, m.d.ep.Metrics)
}

// testManifests renders BareMetalHosts and install-config hosts for the
// running BMCs, then the control plane and secure boot variants (secure
// boot last: it changes a VM).
func testManifests(t *testing.T, m *management) {
	ctx := context.Background()
	ports := strings.NewReplacer(fmt.Sprintf(":%d\"", m.p0), ":{{port 0}}\"", fmt.Sprintf(":%d\"", m.p4), ":{{port 4}}\"")
	for _, g := range []struct {
		file string
		req  api.BMH
	}{
		{"bmh.golden", api.BMH{Host: "192.168.86.168"}},
		{"install-config.golden", api.BMH{Host: "192.168.86.168", InstallConfig: true}},
	} {
		var manifests bytes.Buffer
		if err := m.d.api.BMH(ctx, g.req, &manifests); err != nil {
			t.Fatal(err)
		}
		golden(t, g.file, ports.Replace(manifests.String()), m.vms)
	}
	t.Run("bmh control plane", func(t *testing.T) { testBMHControlPlane(t, m.socket) })
	t.Run("bmh secure boot", func(t *testing.T) { testBMHSecureBoot(t, m.sim, m.d.api) })
}

// testRestart restarts the daemon: every BMC comes back, the stopped one
// stopped, with the boot override it had; then a runtime BMC is started
// and one removed, while a configured one cannot be.
func testRestart(t *testing.T, m *management) {
	ctx := context.Background()
	m.d.stop(t)
	m.d = nil
	m.d = startDaemon(t, m.cfgPath, m.socket)
	bmcs, err := m.d.api.BMCs(ctx)
	if err != nil || len(bmcs) != 4 {
		t.Fatalf("after restart: %v %+v", err, bmcs)
	}
	status := map[string]string{}
	for _, b := range bmcs {
		status[b.VM] = b.Status
	}
	if status["skinner-worker-1"] != "stopped" || status["skinner-worker-2"] != "running" {
		t.Fatalf("after restart: %+v", status)
	}
	if out, err := ipmitool(t, "127.0.0.4", m.p4, "chassis", "bootparam", "get", "5"); err != nil || !strings.Contains(out, "Force PXE") {
		t.Fatalf("boot override lost in the restart: %v %s", err, out)
	}
	if err := m.d.api.Start(ctx, "skinner-worker-1"); err != nil {
		t.Fatal(err)
	}
	if out, err := ipmitool(t, "127.0.0.3", m.p3, "power", "status"); err != nil {
		t.Fatalf("restarted BMC: %v %q", err, out)
	}
	if err := m.d.api.Remove(ctx, "skinner-worker-2"); err != nil {
		t.Fatal(err)
	}
	if err := m.d.api.Remove(ctx, "skinner-master-0"); err == nil {
		t.Fatal("a configured BMC was removed through the API")
	}
}

// testReload adds a BMC to the file and reloads: it starts. A broken file
// is refused by name and stops nothing.
func testReload(t *testing.T, m *management) {
	ctx := context.Background()
	m.writeConfig(t, fmt.Sprintf("  - vm: skinner-master-1\n    address: 127.0.0.1\n    port: %d\n    password: pw-12345\n", m.p5))
	if err := m.d.api.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := ipmitool(t, "127.0.0.1", m.p5, "power", "status"); err != nil {
		t.Fatalf("BMC added by reload: %v %q", err, out)
	}
	writeConfig(t, m.dir, "vcenter: {\n")
	if err := m.d.api.Reload(ctx); err == nil || !strings.Contains(err.Error(), "bridge.yaml") {
		t.Fatalf("broken config reloaded: %v", err)
	}
	if _, err := ipmitool(t, "127.0.0.1", m.p5, "power", "status"); err != nil {
		t.Fatal("a failed reload stopped a BMC")
	}
}

// scrape reads /metrics after the traffic above and checks the families an
// operator graphs.
func scrape(t *testing.T, metricsURL string) {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(name string, match func(map[string]string) bool) float64 {
		f, ok := families[name]
		if !ok {
			t.Fatalf("metric %s missing", name)
		}
		var total float64
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if match == nil || match(labels) {
				total += mt.GetCounter().GetValue() + mt.GetGauge().GetValue() + float64(mt.GetHistogram().GetSampleCount())
			}
		}
		return total
	}
	checks := []struct {
		name  string
		match func(map[string]string) bool
	}{
		{"ipmi_vmware_bridge_ipmi_requests_total", func(l map[string]string) bool { return l["command"] == "Get Chassis Status" && l["cc"] == "0x00" }},
		{"ipmi_vmware_bridge_ipmi_request_duration_seconds", nil},
		{"ipmi_vmware_bridge_ipmi_sessions_total", func(l map[string]string) bool { return l["event"] == "opened" }},
		{"ipmi_vmware_bridge_machine_actions_total", func(l map[string]string) bool { return l["action"] == "boot_pxe" && l["result"] == "ok" }},
		{"ipmi_vmware_bridge_vcenter_requests_total", nil},
		{"ipmi_vmware_bridge_vcenter_connected", nil},
	}
	for _, c := range checks {
		if v := sum(c.name, c.match); v <= 0 {
			t.Errorf("%s = %v after traffic", c.name, v)
		}
	}
	base := strings.TrimSuffix(metricsURL, "/metrics")
	for _, p := range []string{"/healthz", "/readyz"} {
		r, err := http.Get(base + p)
		if err != nil || r.StatusCode != http.StatusOK {
			t.Errorf("%s: %v %v", p, err, r)
		}
		if r != nil {
			r.Body.Close()
		}
	}
}

// golden compares got with testdata/name after putting {{mac NAME}} in
// place of the simulator's MACs, which vcsim assigns at random (as the
// caller did for the free ports it picked).
func golden(t *testing.T, name, got string, vms []api.VM) {
	t.Helper()
	path := filepath.Join("testdata", name)
	normal := got
	for _, vm := range vms {
		if len(vm.MACs) > 0 {
			normal = strings.ReplaceAll(normal, vm.MACs[0], "{{mac "+vm.Name+"}}")
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(normal), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if normal != string(want) {
		t.Fatalf("%s differs (run with -update to accept):\n%s", name, got)
	}
	if strings.Contains(normal, "{{mac") != strings.Contains(string(want), "{{mac") || !strings.Contains(string(want), "{{mac skinner-master-0}}") {
		t.Fatalf("%s does not carry the VMs' MACs", name)
	}
}
