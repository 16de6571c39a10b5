package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// enrolDaemon is a daemon over a simulator of its own whose only BMCs
// come from two rules: VMs in /DC0/vm/ocp on one port (so that a second
// VM finds the pool full), and VMs tagged cluster/skinner on another;
// each with a grace of one second.
type enrolDaemon struct {
	sim        *vsphere.Simulator
	out        *vcsimtest.Outside
	d          *running
	cfg, sock  string
	redfishURL string
}

func startEnrolDaemon(t *testing.T, sim *vsphere.Simulator, dir string, port, tagPort int) *enrolDaemon {
	t.Helper()
	cfg := simVCenter(sim) + fmt.Sprintf(`stateDir: %s
metricsAddress: 127.0.0.1:0
redfish:
  address: 127.0.0.1:0
enroll:
  - folder: /DC0/vm/ocp
    addresses: [127.0.0.1]
    ports: %d-%d
    password: pw-12345
    grace: 1s
  - tag: cluster/skinner
    addresses: [127.0.0.1]
    ports: "%d"
    password: pw-12345
    grace: 1s
`, filepath.Join(dir, "state"), port, port, tagPort)
	e := &enrolDaemon{sim: sim, out: vcsimtest.NewOutside(t, sim), cfg: writeConfig(t, dir, cfg), sock: filepath.Join(dir, "api.sock")}
	e.d = startDaemon(t, e.cfg, e.sock)
	t.Cleanup(func() {
		if e.d != nil {
			e.d.stop(t)
		}
	})
	e.redfishURL = strings.TrimSuffix(e.d.ep.Redfish, "/redfish/v1")
	return e
}

// enrolled is the enrolled BMC of the VM name, if any.
func (e *enrolDaemon) enrolled(t *testing.T, name string) (api.BMC, bool) {
	t.Helper()
	bmcs, err := e.d.api.BMCs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bmcs {
		if b.Source == "enrolled" && b.Name == name && b.Status == "running" {
			return b, true
		}
	}
	return api.BMC{}, false
}

// A VM moved into the rule's folder is served over IPMI and Redfish within
// seconds, keeps its endpoint when renamed and across a restart, loses its
// BMC once out of the folder past the grace; a second VM finds the
// one-port pool full, which the metrics count.
func TestEnrolment(t *testing.T) {
	t.Parallel()
	sim := vcsimtest.Start(t, 5)
	dir, port := t.TempDir(), clienttest.FreeUDPPort(t)
	e := startEnrolDaemon(t, sim, dir, port, clienttest.FreeUDPPort(t))
	start := time.Now()
	e.out.Move("skinner-worker-1", "/DC0/vm/ocp")
	var b api.BMC
	eventually(t, "skinner-worker-1 enrolled", func() bool { var ok bool; b, ok = e.enrolled(t, "skinner-worker-1"); return ok })
	t.Logf("enrolled %v after the move", time.Since(start).Round(time.Millisecond))
	if b.Address != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("enrolled at %s, want the pool's port %d", b.Address, port)
	}
	if out, err := ipmitool(t, "127.0.0.1", port, "power", "status"); err != nil || !strings.Contains(out, "Chassis Power is") {
		t.Fatalf("ipmitool: %v %s", err, out)
	}
	if got := redfishStatus(t, e.redfishURL, "skinner-worker-1"); got != http.StatusOK {
		t.Fatalf("Redfish GET: %d", got)
	}
	e.out.Rename("skinner-worker-1", "ocp-worker-1")
	eventually(t, "the renamed VM's BMC", func() bool { var ok bool; b, ok = e.enrolled(t, "ocp-worker-1"); return ok })
	if got := redfishStatus(t, e.redfishURL, "ocp-worker-1"); got != http.StatusOK || b.Address != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("after the rename: Redfish %d, BMC at %s", got, b.Address)
	}
	e.out.Move("skinner-worker-2", "/DC0/vm/ocp")
	eventually(t, "the full pool counted", func() bool {
		return consoleSeries(t, e.d.ep.Metrics, `enroll_pool_exhausted_total{rule="enroll[0]"}`) != ""
	})
	e.d.stop(t)
	e.d = nil
	e.d = startDaemon(t, e.cfg, e.sock)
	eventually(t, "enrolled again after a restart", func() bool { var ok bool; b, ok = e.enrolled(t, "ocp-worker-1"); return ok })
	if b.Address != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("after a restart at %s", b.Address)
	}
	e.out.Move("ocp-worker-1", "/DC0/vm")
	eventually(t, "ocp-worker-1 unenrolled past its grace", func() bool { _, ok := e.enrolled(t, "ocp-worker-1"); return !ok })
	eventually(t, "skinner-worker-2 gets the freed port", func() bool { _, ok := e.enrolled(t, "skinner-worker-2"); return ok })
}

// A VM tagged while the bridge runs is served over IPMI and Redfish
// within seconds and listed by bmh --enrolled, which leaves out a BMC
// added by hand; a VM created in a rule's folder is served too;
// untagged or deleted, a VM loses its BMC past the grace.
func TestEnrolmentByTag(t *testing.T) {
	t.Parallel()
	sim := vcsimtest.Start(t, 5)
	dir, port, folderPort := t.TempDir(), clienttest.FreeUDPPort(t), clienttest.FreeUDPPort(t)
	e := startEnrolDaemon(t, sim, dir, folderPort, port)
	if _, err := e.d.api.Add(context.Background(), api.Add{VM: "skinner-master-1", Port: clienttest.FreeUDPPort(t), Username: "admin", Password: "pw-12345"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.out.Tag("skinner-master-0", "cluster", "skinner")
	eventually(t, "skinner-master-0 enrolled by its tag", func() bool { _, ok := e.enrolled(t, "skinner-master-0"); return ok })
	t.Logf("enrolled %v after the tag", time.Since(start).Round(time.Millisecond))
	if out, err := ipmitool(t, "127.0.0.1", port, "power", "status"); err != nil || !strings.Contains(out, "Chassis Power is") {
		t.Fatalf("ipmitool: %v %s", err, out)
	}
	if got := redfishStatus(t, e.redfishURL, "skinner-master-0"); got != http.StatusOK {
		t.Fatalf("Redfish GET: %d", got)
	}
	vms, err := e.d.api.VMs(context.Background(), api.VMQuery{Tag: "cluster/skinner"})
	if err != nil || len(vms) != 1 || vms[0].Name != "skinner-master-0" {
		t.Errorf("vms --tag cluster/skinner: %+v, %v", vms, err)
	}
	if _, err := e.d.api.VMs(context.Background(), api.VMQuery{Tag: "skinner"}); err == nil || !strings.HasPrefix(err.Error(), "invalid request: tag") {
		t.Errorf("vms --tag skinner: %v, want the request refused", err)
	}
	var bmh bytes.Buffer
	if err := e.d.api.BMH(context.Background(), api.BMH{Host: "127.0.0.1", Enrolled: true, ControlPlane: []string{}}, &bmh); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(bmh.String(), "name: skinner-master-0") || strings.Contains(bmh.String(), "skinner-master-1") {
		t.Errorf("bmh --enrolled:\n%s", bmh.String())
	}
	start = time.Now()
	e.out.Clone("skinner-master-2", "created-0", "/DC0/vm/ocp")
	eventually(t, "a VM created in the folder enrolled", func() bool { _, ok := e.enrolled(t, "created-0"); return ok })
	t.Logf("a created VM enrolled %v after its creation began", time.Since(start).Round(time.Millisecond))
	if out, err := ipmitool(t, "127.0.0.1", folderPort, "power", "status"); err != nil || !strings.Contains(out, "Chassis Power is") {
		t.Fatalf("ipmitool to the created VM: %v %s", err, out)
	}
	e.out.Untag("skinner-master-0", "cluster", "skinner")
	eventually(t, "untagged, unenrolled past its grace", func() bool { _, ok := e.enrolled(t, "skinner-master-0"); return !ok })
	e.out.Tag("skinner-worker-2", "cluster", "skinner")
	eventually(t, "skinner-worker-2 enrolled", func() bool { _, ok := e.enrolled(t, "skinner-worker-2"); return ok })
	e.out.Delete("skinner-worker-2")
	eventually(t, "deleted, unenrolled past its grace", func() bool { _, ok := e.enrolled(t, "skinner-worker-2"); return !ok })
}

// redfishStatus is the status of a GET of the system id, with the test's
// credentials.
func redfishStatus(t *testing.T, url, id string) int {
	t.Helper()
	client := insecureClient()
	req, _ := http.NewRequest(http.MethodGet, url+"/redfish/v1/Systems/"+id, nil)
	req.SetBasicAuth("admin", "pw-12345")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
