package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// twoVCenters is a daemon bridging two simulators, lab and prod, whose
// VMs have the same names: skinner-master-0 of each at labPort and
// prodPort, and prod's skinner-worker-1 Redfish-only.
type twoVCenters struct {
	lab, prod          *vsphere.Simulator
	d                  *running
	labPort, prodPort  int
	redfishURL, socket string
	path               string // the configuration file
}

func startTwoVCenters(t *testing.T) *twoVCenters {
	t.Helper()
	e := &twoVCenters{labPort: clienttest.FreeUDPPort(t), prodPort: clienttest.FreeUDPPort(t)}
	e.lab, e.prod = vcsimtest.Start(t, 5), vcsimtest.Start(t, 5)
	dir := t.TempDir()
	vc := func(name string, s *vsphere.Simulator) string {
		return fmt.Sprintf("  - name: %s\n    url: %s\n    username: %s\n    password: %s\n    caFile: %s\n", name, s.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, s.CAFile)
	}
	cfg := "vcenters:\n" + vc("lab", e.lab) + vc("prod", e.prod) + fmt.Sprintf(`stateDir: %s
metricsAddress: 127.0.0.1:0
redfish:
  address: 127.0.0.1:0
bmcs:
  - vm: skinner-master-0
    vcenter: lab
    address: 127.0.0.1
    port: %d
    password: pw-12345
  - vm: skinner-master-0
    vcenter: prod
    address: 127.0.0.1
    port: %d
    password: pw-12345
  - vm: skinner-worker-1
    vcenter: prod
    ipmi: false
    password: pw-12345
`, filepath.Join(dir, "state"), e.labPort, e.prodPort)
	e.path = writeConfig(t, dir, cfg)
	e.d = startDaemon(t, e.path, filepath.Join(dir, "api.sock"))
	t.Cleanup(func() { e.d.stop(t) })
	e.redfishURL, e.socket = strings.TrimSuffix(e.d.ep.Redfish, "/redfish/v1"), filepath.Join(dir, "api.sock")
	return e
}

// One daemon bridges two vCenters: each BMC acts on its own vCenter's VM
// although the names are the same, Redfish ids tell the clashing names
// apart, the API lists and adds per vCenter, and a vCenter that goes
// down takes only its own BMCs with it.
func TestTwoVCenters(t *testing.T) {
	t.Parallel()
	e := startTwoVCenters(t)
	if out, err := ipmitool(t, "127.0.0.1", e.labPort, "power", "on"); err != nil {
		t.Fatalf("power on through lab's BMC: %v %s", err, out)
	}
	if got := simPower(t, e.lab, "skinner-master-0"); got != "poweredOn" {
		t.Errorf("lab's VM: %s, want poweredOn", got)
	}
	if got := simPower(t, e.prod, "skinner-master-0"); got != "poweredOff" {
		t.Errorf("prod's VM of the same name: %s, want poweredOff (untouched)", got)
	}
	if got := redfishMembers(t, e.redfishURL); got != "skinner-master-0~lab skinner-master-0~prod skinner-worker-1~prod" {
		t.Errorf("Redfish systems: %s", got)
	}
	testTwoVCentersAPI(t, e)
	e.lab.Stop()
	eventually(t, "lab reported down in the metrics", func() bool {
		return consoleSeries(t, e.d.ep.Metrics, `vcenter_connected{vcenter="lab"}`) == "0"
	})
	if got := consoleSeries(t, e.d.ep.Metrics, `vcenter_connected{vcenter="prod"}`); got != "1" {
		t.Errorf("prod connected = %q while lab is down", got)
	}
	if out, err := ipmitool(t, "127.0.0.1", e.prodPort, "power", "status"); err != nil || !strings.Contains(out, "off") {
		t.Errorf("prod's BMC while lab is down: %v %s", err, out)
	}
}

// testTwoVCentersAPI: vms and bmc add say which vCenter, and adding needs
// one named when there are two.
func testTwoVCentersAPI(t *testing.T, e *twoVCenters) {
	t.Helper()
	ctx := context.Background()
	vms, err := e.d.api.VMs(ctx, api.VMQuery{VCenter: "prod", Filter: "skinner-master-0"})
	if err != nil || len(vms) != 1 || vms[0].VCenter != "prod" || vms[0].BMC == "" {
		t.Errorf("vms --vcenter prod: %v %+v", err, vms)
	}
	if all, err := e.d.api.VMs(ctx, api.VMQuery{}); err != nil || len(all) != 10 {
		t.Errorf("vms: %v, %d VMs, want both vCenters' 10", err, len(all))
	}
	if _, err := e.d.api.VMs(ctx, api.VMQuery{VCenter: "staging"}); err == nil || !strings.Contains(err.Error(), `no vCenter "staging" (lab, prod)`) {
		t.Errorf("vms --vcenter staging: %v", err)
	}
	add := api.Add{VM: "skinner-worker-2", Port: clienttest.FreeUDPPort(t), Address: "127.0.0.1", Password: "pw-12345"}
	if _, err := e.d.api.Add(ctx, add); err == nil || !strings.Contains(err.Error(), "say which with --vcenter (lab, prod)") {
		t.Errorf("bmc add without --vcenter: %v", err)
	}
	add.VCenter = "lab"
	b, err := e.d.api.Add(ctx, add)
	if err != nil || b.VCenter != "lab" {
		t.Fatalf("bmc add --vcenter lab: %v %+v", err, b)
	}
	if got := consoleSeries(t, e.d.ep.Metrics, `vcenter_requests_total{method="WaitForUpdatesEx",vcenter="prod"}`); got == "" {
		t.Error("no vcenter_requests_total series for prod")
	}
	testVCenterRenameNotReloaded(t, e)
}

// testVCenterRenameNotReloaded: a reload that renames a vCenter is
// refused as a whole, the running BMCs untouched.
func testVCenterRenameNotReloaded(t *testing.T, e *twoVCenters) {
	t.Helper()
	orig, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.ReplaceAll(string(orig), "prod", "production")
	if err := os.WriteFile(e.path, []byte(renamed), 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.WriteFile(e.path, orig, 0o600) }()
	if err := e.d.api.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "the vCenters' names changed") {
		t.Errorf("reload renaming a vCenter: %v", err)
	}
	if bmcs, err := e.d.api.BMCs(context.Background()); err != nil || len(bmcs) != 4 {
		t.Errorf("after the refused reload: %v, %d BMCs, want 4", err, len(bmcs))
	}
}

// simPower is the power state of the simulator's VM name.
func simPower(t *testing.T, sim *vsphere.Simulator, name string) string {
	t.Helper()
	c, err := vsphere.Connect(context.Background(), vcsimtest.Options(sim))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	return string(simVM(t, c, name, "runtime.powerState").Runtime.PowerState)
}
