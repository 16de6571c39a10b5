package daemon

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

var update = flag.Bool("update", false, "rewrite golden files")

// running is a daemon started in-process against a test simulator.
type running struct {
	out    *clienttest.Buffer
	api    *api.Client
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

func startDaemon(t *testing.T, config, socket string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: &clienttest.Buffer{}, api: api.NewClient(socket), cancel: cancel, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("DAEMON_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { r.done <- Run(ctx, Options{Config: config, Socket: socket, Log: log, Stdout: r.out}) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.out.String(), "TRY") || !strings.Contains(r.out.String(), "\n\n") {
		select {
		case err := <-r.done:
			t.Fatalf("daemon stopped: %v\n%s", err, r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s", r.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the table follows the header
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

// TestManagement drives a running daemon through its management API: add,
// list, stop, start and remove BMCs and talk to them with ipmitool; check
// good and bad endpoints; scrape metrics after traffic; render manifests
// with the simulator's real MACs; restart and find every BMC back; reload
// the configuration.
func TestManagement(t *testing.T) {
	sim, err := vsphere.StartSimulator(context.Background(), "127.0.0.1:0", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	socket := filepath.Join(dir, "run", "api.sock")
	p0, pGhost, p3, p4, p5 := clienttest.FreeUDPPort(t), clienttest.FreeUDPPort(t), clienttest.FreeUDPPort(t), clienttest.FreeUDPPort(t), clienttest.FreeUDPPort(t)
	cfgPath := filepath.Join(dir, "bridge.yaml")
	writeConfig := func(extra string) {
		cfg := fmt.Sprintf(configTemplate, sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.CAFile, filepath.Join(dir, "state"), p0, pGhost, extra)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("")
	d := startDaemon(t, cfgPath, socket)
	ctx := context.Background()

	bmcs, err := d.api.BMCs(ctx)
	if err != nil || len(bmcs) != 2 || bmcs[0].Status != "running" || bmcs[1].Status != "waiting" {
		t.Fatalf("list: %v %+v", err, bmcs)
	}
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket permissions: %v %v", err, fi.Mode())
	}

	// One address per VM: runtime BMCs on their own loopback addresses.
	b, err := d.api.Add(ctx, api.Add{VM: "skinner-worker-1", Address: "127.0.0.3", Port: p3, Password: "pw-12345"})
	if err != nil || b.Status != "running" || b.Source != "runtime" {
		t.Fatalf("add: %v %+v", err, b)
	}
	if out, err := ipmitool(t, "127.0.0.3", p3, "power", "status"); err != nil || out != "Chassis Power is off\n" {
		t.Fatalf("added BMC: %v %q", err, out)
	}
	if _, err := d.api.Add(ctx, api.Add{VM: "skinner-worker-1", Address: "127.0.0.3", Port: p3, Password: "x"}); err == nil {
		t.Fatal("a second BMC on a used address was accepted")
	}
	if _, err := d.api.Add(ctx, api.Add{VM: "nope", Address: "127.0.0.3", Port: p4, Password: "x"}); err == nil {
		t.Fatal("a BMC for a missing VM was accepted")
	}
	added, err := d.api.AddAll(ctx, api.AddAll{Filter: "skinner-worker-*", Address: "127.0.0.4", BasePort: p4, Password: "pw-12345"})
	if err != nil || len(added) != 1 || added[0].Name != "skinner-worker-2" {
		t.Fatalf("add --all: %v %+v", err, added)
	}
	if out, err := ipmitool(t, "127.0.0.4", p4, "chassis", "bootdev", "pxe", "options=persistent"); err != nil {
		t.Fatalf("bootdev on the --all BMC: %v %s", err, out)
	}
	vms, err := d.api.VMs(ctx, "skinner-*", "")
	if err != nil || len(vms) != 5 || vms[3].BMC == "" || vms[1].BMC != "" {
		t.Fatalf("vms: %v %+v", err, vms)
	}
	if err := d.api.Stop(ctx, "skinner-worker-1"); err != nil {
		t.Fatal(err)
	}
	if out, err := ipmitool(t, "127.0.0.3", p3, "power", "status"); err == nil {
		t.Fatalf("stopped BMC answered: %q", out)
	}

	checks, err := d.api.Check(ctx)
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

	show, err := d.api.BMC(ctx, "skinner-master-0")
	if err != nil || show.Requests == 0 {
		t.Fatalf("show: %v %+v", err, show)
	}

	scrape(t, d.out.String())

	var manifests bytes.Buffer
	if err := d.api.BMH(ctx, api.BMH{Host: "192.168.86.168"}, &manifests); err != nil {
		t.Fatal(err)
	}
	ports := strings.NewReplacer(fmt.Sprintf(":%d\"", p0), ":{{port 0}}\"", fmt.Sprintf(":%d\"", p4), ":{{port 4}}\"")
	golden(t, "bmh.golden", ports.Replace(manifests.String()), vms)
	manifests.Reset()
	if err := d.api.BMH(ctx, api.BMH{Host: "192.168.86.168", InstallConfig: true}, &manifests); err != nil {
		t.Fatal(err)
	}
	golden(t, "install-config.golden", ports.Replace(manifests.String()), vms)
	t.Run("bmh control plane", func(t *testing.T) { testBMHControlPlane(t, socket) })
	t.Run("bmh secure boot", func(t *testing.T) { testBMHSecureBoot(t, sim, d.api) })

	// A restart brings every BMC back, the stopped one stopped.
	d.stop(t)
	d = startDaemon(t, cfgPath, socket)
	bmcs, err = d.api.BMCs(ctx)
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
	if out, err := ipmitool(t, "127.0.0.4", p4, "chassis", "bootparam", "get", "5"); err != nil || !strings.Contains(out, "Force PXE") {
		t.Fatalf("boot override lost in the restart: %v %s", err, out)
	}
	if err := d.api.Start(ctx, "skinner-worker-1"); err != nil {
		t.Fatal(err)
	}
	if out, err := ipmitool(t, "127.0.0.3", p3, "power", "status"); err != nil {
		t.Fatalf("restarted BMC: %v %q", err, out)
	}
	if err := d.api.Remove(ctx, "skinner-worker-2"); err != nil {
		t.Fatal(err)
	}
	if err := d.api.Remove(ctx, "skinner-master-0"); err == nil {
		t.Fatal("a configured BMC was removed through the API")
	}

	// Reload: a BMC added to the file starts, the ghost removed stops.
	writeConfig(fmt.Sprintf("  - vm: skinner-master-1\n    address: 127.0.0.1\n    port: %d\n    password: pw-12345\n", p5))
	if err := d.api.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := ipmitool(t, "127.0.0.1", p5, "power", "status"); err != nil {
		t.Fatalf("BMC added by reload: %v %q", err, out)
	}
	if err := os.WriteFile(cfgPath, []byte("vcenter: {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.api.Reload(ctx); err == nil || !strings.Contains(err.Error(), "bridge.yaml") {
		t.Fatalf("broken config reloaded: %v", err)
	}
	if _, err := ipmitool(t, "127.0.0.1", p5, "power", "status"); err != nil {
		t.Fatal("a failed reload stopped a BMC")
	}
	d.stop(t)
}

// scrape reads /metrics after the traffic above and checks the families an
// operator graphs.
func scrape(t *testing.T, banner string) {
	t.Helper()
	m := regexp.MustCompile(`metrics:\s+(\S+)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no metrics URL in the banner:\n%s", banner)
	}
	resp, err := http.Get(m[1])
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
	base := strings.TrimSuffix(m[1], "/metrics")
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
