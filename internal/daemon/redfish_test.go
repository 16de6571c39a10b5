package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// sushy runs the Redfish package's sushy driver (Debian's python3-sushy,
// the client Ironic uses) against the daemon, one JSON object per step;
// a failed step fails the test.
func sushy(t *testing.T, url, system string, steps ...string) []map[string]any {
	t.Helper()
	out, err := sushyCommand(t, url, system, steps...).CombinedOutput()
	if err != nil {
		t.Fatalf("sushy %v: %v\n%s", steps, err, out)
	}
	return sushyObjects(t, out)
}

// sushyTry is sushy without failing: the steps' objects, the last one an
// {"error": ...} when a step failed.
func sushyTry(t *testing.T, url, system string, steps ...string) []map[string]any {
	t.Helper()
	out, _ := sushyCommand(t, url, system, steps...).Output()
	return sushyObjects(t, out)
}

// sushyCommand is the sushy driver's command for the steps, logging in
// with a session as the BMCs' admin.
func sushyCommand(t *testing.T, url, system string, steps ...string) *exec.Cmd {
	t.Helper()
	python := clienttest.PythonModule(t, "sushy")
	cmd := exec.Command(python, append([]string{"../redfish/testdata/sushy_client.py", url, system, "session", "false"}, steps...)...)
	// python-requests lets these override sushy's verify=False.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "REDFISH_USERNAME=admin", "REDFISH_PASSWORD=pw-12345")
	return cmd
}

// sushyObjects decodes the JSON objects the driver printed, one per step.
func sushyObjects(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var res []map[string]any
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return res
		} else if err != nil {
			t.Fatalf("sushy output %q: %v", out, err)
		}
		res = append(res, m)
	}
}

// simDaemon is a daemon in config mode over a simulator of its own, with
// Redfish on a free port and one BMC, skinner-worker-2's (password
// pw-12345); extra is more of the configuration (top-level keys).
type simDaemon struct {
	sim        *vsphere.Simulator
	d          *running
	redfishURL string // https://HOST:PORT, without /redfish/v1
}

func startSimDaemon(t *testing.T, extra string) *simDaemon {
	t.Helper()
	sim := vcsimtest.Start(t, 5)
	dir := t.TempDir()
	cfg := simVCenter(sim) + fmt.Sprintf(`stateDir: %s
redfish:
  address: 127.0.0.1:0
bmcs:
  - vm: skinner-worker-2
    address: 127.0.0.1
    port: %d
    password: pw-12345
`, filepath.Join(dir, "state"), clienttest.FreeUDPPort(t)) + extra
	d := startDaemon(t, writeConfig(t, dir, cfg), filepath.Join(dir, "api.sock"))
	t.Cleanup(func() { d.stop(t) })
	return &simDaemon{sim: sim, d: d, redfishURL: strings.TrimSuffix(d.ep.Redfish, "/redfish/v1")}
}

// vmLook is what TestRedfishVirtualMediaDeploy reads of a VM straight
// from the simulator: its power, the type of its first boot device and
// the ISO its CD-ROM holds at power-on.
type vmLook struct {
	power        types.VirtualMachinePowerState
	first, cdrom string
}

func look(t *testing.T, c *vsphere.Client, name string) vmLook {
	t.Helper()
	vm := simVM(t, c, name, "runtime.powerState", "config")
	l := vmLook{power: vm.Runtime.PowerState}
	if bo := vm.Config.BootOptions; bo != nil && len(bo.BootOrder) > 0 {
		l.first = fmt.Sprintf("%T", bo.BootOrder[0])
	}
	if cd, err := object.VirtualDeviceList(vm.Config.Hardware.Device).FindCdrom(""); err == nil {
		if b, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo); ok && cd.Connectable.StartConnected {
			l.cdrom = b.FileName
		}
	}
	return l
}

// simVM reads the properties props of the VM named name from the
// simulator, as an operator's client would.
func simVM(t *testing.T, c *vsphere.Client, name string, props ...string) mo.VirtualMachine {
	t.Helper()
	ctx := context.Background()
	v, err := view.NewManager(c.Vim()).CreateContainerView(ctx, c.Vim().ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.RetrieveWithFilter(ctx, []string{"VirtualMachine"}, props, &vms, property.Match{"name": name}); err != nil || len(vms) == 0 {
		t.Fatalf("VM %s: %v", name, err)
	}
	return vms[0]
}

// datastoreFile reads a file of LocalDS_0 by its datastore path.
func datastoreFile(t *testing.T, c *vsphere.Client, path string) []byte {
	t.Helper()
	ds, err := object.NewSearchIndex(c.Vim()).FindByInventoryPath(context.Background(), "/DC0/datastore/LocalDS_0")
	if err != nil || ds == nil {
		t.Fatalf("datastore: %v", err)
	}
	store := object.NewDatastore(c.Vim(), ds.Reference())
	store.DatacenterPath = "/DC0"
	store.InventoryPath = "/DC0/datastore/LocalDS_0"
	rc, _, err := store.Download(context.Background(), strings.TrimPrefix(path, "[LocalDS_0] "), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRedfishVirtualMediaDeploy runs Ironic's redfish-virtual-media deploy
// with sushy against the daemon and the simulator, and checks the VM: its
// power, its boot order and the ISO its CD-ROM holds, fetched from a URL.
func TestRedfishVirtualMediaDeploy(t *testing.T) {
	t.Parallel()
	sd := startSimDaemon(t, "metricsAddress: \"\"\noneTimeBootHold: 200ms\n")
	url, system := sd.redfishURL, "/redfish/v1/Systems/skinner-worker-2"
	iso := make([]byte, 256<<10)
	copy(iso[32769:], "CD001")
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "boot.iso", time.Time{}, bytes.NewReader(iso))
	}))
	defer images.Close()
	image := images.URL + "/ironic/boot-worker-2.iso"
	c, err := vsphere.Connect(context.Background(), vcsimtest.Options(sd.sim))
	if err != nil {
		t.Fatal(err)
	}

	sys := sushy(t, url, system, "system")[0]
	if sys["uuid"] == "" || sys["manufacturer"] != "VMware, Inc." || len(sys["macs"].([]any)) != 1 {
		t.Fatalf("system: %v", sys)
	}
	// Ironic's prepare_ramdisk: power off, eject, insert, boot Cd once, on.
	sushy(t, url, system, "reset=ForceOff", "eject=system", "insert=system:"+image, "boot=Cd:Once:UEFI")
	if l := look(t, c, "skinner-worker-2"); l.power != types.VirtualMachinePowerStatePoweredOff || !strings.Contains(l.first, "Cdrom") || l.cdrom == "" {
		t.Fatalf("before power-on: %+v", l)
	}
	if media := sushy(t, url, system, "media=system")[0]; media["inserted"] != true || media["image"] != image {
		t.Fatalf("media: %v", media)
	}
	sushy(t, url, system, "reset=On")
	l := awaitBoot(t, c, url, system)
	if l.cdrom == "" {
		t.Fatal("the CD-ROM lost the ISO at power-on")
	}
	// The ISO on the datastore is the one served.
	if got := datastoreFile(t, c, l.cdrom); !bytes.Equal(got, iso) {
		t.Fatalf("datastore holds %d bytes, not the %d served", len(got), len(iso))
	}
	// After the deploy: eject, boot from disk for good.
	sushy(t, url, system, "eject=system", "boot=Hdd:Continuous:")
	if l := look(t, c, "skinner-worker-2"); !strings.Contains(l.first, "Disk") || l.cdrom != "" {
		t.Fatalf("after deploy: %+v", l)
	}
	if o := sushy(t, url, system, "system")[0]; o["target"] != "Hdd" || o["enabled"] != "Continuous" {
		t.Fatalf("override after deploy: %v", o)
	}
}

// awaitBoot waits for skinner-worker-2 to be on, booted with its one-time
// override: the override reads Disabled again and the boot order that was
// there before comes back. It polls with Go's client, not sushy: a Python
// process per poll would cost more than the wait.
func awaitBoot(t *testing.T, c *vsphere.Client, url, system string) vmLook {
	t.Helper()
	client := insecureClient()
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := look(t, c, "skinner-worker-2")
		enabled := bootOverride(t, client, url+system)
		if l.power == types.VirtualMachinePowerStatePoweredOn && enabled == "Disabled" && !strings.Contains(l.first, "Cdrom") {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("after power-on: %+v, override %s", l, enabled)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bootOverride is a system's Boot.BootSourceOverrideEnabled.
func bootOverride(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp := redfishGet(t, client, url)
	defer resp.Body.Close()
	var sys struct {
		Boot struct{ BootSourceOverrideEnabled string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&sys); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return sys.Boot.BootSourceOverrideEnabled
}

// redfishGet GETs url as the BMCs' admin; the caller closes the body.
func redfishGet(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("admin", "pw-12345")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// A VM renamed in vCenter is served under its new name at once: the
// Redfish index is rebuilt when a VM is renamed, not on a timer.
func TestRedfishFollowsRename(t *testing.T) {
	t.Parallel()
	sd := startSimDaemon(t, "metricsAddress: \"\"\n")
	client := insecureClient()
	status := func(name string) int {
		resp := redfishGet(t, client, sd.redfishURL+"/redfish/v1/Systems/"+name)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("skinner-worker-2"); got != http.StatusOK {
		t.Fatalf("before the rename: %d", got)
	}
	c, err := vsphere.Connect(context.Background(), vcsimtest.Options(sd.sim))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := object.NewSearchIndex(c.Vim()).FindByInventoryPath(context.Background(), "/DC0/vm/skinner-worker-2")
	if err != nil || ref == nil {
		t.Fatalf("find the VM: %v", err)
	}
	task, err := object.NewVirtualMachine(c.Vim(), ref.Reference()).Rename(context.Background(), "renamed-worker")
	if err == nil {
		err = task.Wait(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for status("renamed-worker") != http.StatusOK {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the renamed VM is not served under its new name after 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("served under its new name %v after the rename", time.Since(start).Round(time.Millisecond))
	if got := status("skinner-worker-2"); got != http.StatusNotFound {
		t.Errorf("old name: %d, want 404", got)
	}
}
