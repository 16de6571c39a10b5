package daemon

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// enrolDaemon is a daemon over a simulator of its own whose only BMCs
// come from one rule: VMs in /DC0/vm/ocp, one port (so that a second VM
// finds the pool full), a grace of one second.
type enrolDaemon struct {
	sim        *vsphere.Simulator
	c          *vsphere.Client
	d          *running
	port       int
	cfg, sock  string
	redfishURL string
}

func startEnrolDaemon(t *testing.T, sim *vsphere.Simulator, dir string, port int) *enrolDaemon {
	t.Helper()
	cfg := fmt.Sprintf(`vcenter:
  url: %s
  username: %s
  password: %s
  caFile: %s
stateDir: %s
metricsAddress: 127.0.0.1:0
redfish:
  address: 127.0.0.1:0
enroll:
  - folder: /DC0/vm/ocp
    addresses: [127.0.0.1]
    ports: %d-%d
    password: pw-12345
    grace: 1s
`, sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.CAFile, filepath.Join(dir, "state"), port, port)
	e := &enrolDaemon{sim: sim, port: port, cfg: writeConfig(t, dir, cfg), sock: filepath.Join(dir, "api.sock")}
	e.d = startDaemon(t, e.cfg, e.sock)
	t.Cleanup(func() {
		if e.d != nil {
			e.d.stop(t)
		}
	})
	e.redfishURL = strings.TrimSuffix(e.d.ep.Redfish, "/redfish/v1")
	c, err := vsphere.Connect(context.Background(), vcsimtest.Options(sim))
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

// move puts the VM name into the folder at path (created if need be).
func (e *enrolDaemon) move(t *testing.T, name, path string) {
	t.Helper()
	ctx := context.Background()
	f, dc := e.finder(t)
	folder, err := f.Folder(ctx, path)
	if err != nil {
		folders, _ := dc.Folders(ctx)
		if folder, err = folders.VmFolder.CreateFolder(ctx, filepath.Base(path)); err != nil {
			t.Fatal(err)
		}
	}
	vm, err := f.VirtualMachine(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	task, err := folder.MoveInto(ctx, []types.ManagedObjectReference{vm.Reference()})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// finder finds in the simulator's datacenter.
func (e *enrolDaemon) finder(t *testing.T) (*find.Finder, *object.Datacenter) {
	t.Helper()
	f := find.NewFinder(e.c.Vim(), true)
	dc, err := f.DefaultDatacenter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	return f, dc
}

// rename renames the VM name to to.
func (e *enrolDaemon) rename(t *testing.T, name, to string) {
	t.Helper()
	ctx := context.Background()
	f, _ := e.finder(t)
	vm, err := f.VirtualMachine(ctx, name)
	if err == nil {
		var task *object.Task
		if task, err = vm.Rename(ctx, to); err == nil {
			err = task.Wait(ctx)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
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
	e := startEnrolDaemon(t, sim, dir, port)
	start := time.Now()
	e.move(t, "skinner-worker-1", "/DC0/vm/ocp")
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
	e.rename(t, "skinner-worker-1", "ocp-worker-1")
	eventually(t, "the renamed VM's BMC", func() bool { var ok bool; b, ok = e.enrolled(t, "ocp-worker-1"); return ok })
	if got := redfishStatus(t, e.redfishURL, "ocp-worker-1"); got != http.StatusOK || b.Address != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("after the rename: Redfish %d, BMC at %s", got, b.Address)
	}
	e.move(t, "skinner-worker-2", "/DC0/vm/ocp")
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
	e.move(t, "ocp-worker-1", "/DC0/vm")
	eventually(t, "ocp-worker-1 unenrolled past its grace", func() bool { _, ok := e.enrolled(t, "ocp-worker-1"); return !ok })
	eventually(t, "skinner-worker-2 gets the freed port", func() bool { _, ok := e.enrolled(t, "skinner-worker-2"); return ok })
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
