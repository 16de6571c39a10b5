package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// sushy runs the Redfish package's sushy driver (Debian's python3-sushy,
// the client Ironic uses) against the daemon, one JSON object per step.
func sushy(t *testing.T, url, system string, steps ...string) []map[string]any {
	t.Helper()
	python := clienttest.PythonModule(t, "sushy")
	args := append([]string{"../redfish/testdata/sushy_client.py", url, system, "session", "false"}, steps...)
	cmd := exec.Command(python, args...)
	// python-requests lets these override sushy's verify=False.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "REDFISH_USERNAME=admin", "REDFISH_PASSWORD=pw-12345")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sushy %v: %v\n%s", steps, err, out)
	}
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
	banner     string
}

func startSimDaemon(t *testing.T, extra string) *simDaemon {
	t.Helper()
	sim, err := vsphere.StartSimulator(context.Background(), "127.0.0.1:0", 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`vcenter:
  url: %s
  username: %s
  password: %s
  caFile: %s
stateDir: %s
redfish:
  address: 127.0.0.1:0
bmcs:
  - vm: skinner-worker-2
    address: 127.0.0.1
    port: %d
    password: pw-12345
`, sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.CAFile, filepath.Join(dir, "state"), clienttest.FreeUDPPort(t)) + extra
	cfgPath := filepath.Join(dir, "bridge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgPath, filepath.Join(dir, "api.sock"))
	t.Cleanup(func() { d.stop(t) })
	m := regexp.MustCompile(`redfish:\s+(https://\S+)/redfish/v1`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("no Redfish URL in the banner:\n%s", d.out.String())
	}
	return &simDaemon{sim: sim, d: d, redfishURL: m[1], banner: d.out.String()}
}

// TestRedfishVirtualMediaDeploy runs Ironic's redfish-virtual-media deploy
// with sushy against the daemon and the simulator, and checks the VM: its
// power, its boot order and the ISO its CD-ROM holds, fetched from a URL.
func TestRedfishVirtualMediaDeploy(t *testing.T) {
	sd := startSimDaemon(t, "metricsAddress: \"\"\noneTimeBootHold: 200ms\n")
	sim := sd.sim
	url, system := sd.redfishURL, "/redfish/v1/Systems/skinner-worker-2"

	iso := make([]byte, 256<<10)
	copy(iso[32769:], "CD001")
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "boot.iso", time.Time{}, bytes.NewReader(iso))
	}))
	defer images.Close()
	image := images.URL + "/ironic/boot-worker-2.iso"

	c, err := vsphere.Connect(context.Background(), vsphere.Options{URL: sim.URL.String(), Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: sim.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	look := func() (power types.VirtualMachinePowerState, first, cdrom string) {
		t.Helper()
		ctx := context.Background()
		v, err := view.NewManager(c.Vim()).CreateContainerView(ctx, c.Vim().ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = v.Destroy(ctx) }()
		var vms []mo.VirtualMachine
		if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "runtime.powerState", "config"}, &vms); err != nil {
			t.Fatal(err)
		}
		for _, vm := range vms {
			if vm.Name != "skinner-worker-2" {
				continue
			}
			devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
			if bo := vm.Config.BootOptions; bo != nil && len(bo.BootOrder) > 0 {
				first = fmt.Sprintf("%T", bo.BootOrder[0])
			}
			if cd, err := devices.FindCdrom(""); err == nil {
				if b, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo); ok && cd.Connectable.StartConnected {
					cdrom = b.FileName
				}
			}
			return vm.Runtime.PowerState, first, cdrom
		}
		t.Fatal("VM not found")
		return
	}

	sys := sushy(t, url, system, "system")[0]
	if sys["uuid"] == "" || sys["manufacturer"] != "VMware, Inc." || len(sys["macs"].([]any)) != 1 {
		t.Fatalf("system: %v", sys)
	}
	// Ironic's prepare_ramdisk: power off, eject, insert, boot Cd once, on.
	sushy(t, url, system, "reset=ForceOff", "eject=system", "insert=system:"+image, "boot=Cd:Once:UEFI")
	power, first, cd := look()
	if power != types.VirtualMachinePowerStatePoweredOff || !strings.Contains(first, "Cdrom") || cd == "" {
		t.Fatalf("before power-on: %s, first %s, cd %q", power, first, cd)
	}
	media := sushy(t, url, system, "media=system")[0]
	if media["inserted"] != true || media["image"] != image {
		t.Fatalf("media: %v", media)
	}
	sushy(t, url, system, "reset=On")
	deadline := time.Now().Add(10 * time.Second)
	for {
		power, first, cd = look()
		o := sushy(t, url, system, "system")[0]
		// The boot used the one-time override: it reads Disabled again and
		// the boot order that was there before comes back.
		if power == types.VirtualMachinePowerStatePoweredOn && o["enabled"] == "Disabled" && !strings.Contains(first, "Cdrom") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after power-on: %s, first %s, override %v", power, first, o)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if cd == "" {
		t.Fatal("the CD-ROM lost the ISO at power-on")
	}
	// The ISO on the datastore is the one served.
	ds, err := object.NewSearchIndex(c.Vim()).FindByInventoryPath(context.Background(), "/DC0/datastore/LocalDS_0")
	if err != nil || ds == nil {
		t.Fatalf("datastore: %v", err)
	}
	store := object.NewDatastore(c.Vim(), ds.Reference())
	store.DatacenterPath = "/DC0"
	store.InventoryPath = "/DC0/datastore/LocalDS_0"
	rc, n, err := store.Download(context.Background(), strings.TrimPrefix(cd, "[LocalDS_0] "), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if n != int64(len(iso)) || !bytes.Equal(got, iso) {
		t.Fatalf("datastore holds %d bytes, not the %d served", n, len(iso))
	}
	// After the deploy: eject, boot from disk for good.
	sushy(t, url, system, "eject=system", "boot=Hdd:Continuous:")
	_, first, cd = look()
	if !strings.Contains(first, "Disk") || cd != "" {
		t.Fatalf("after deploy: first %s, cd %q", first, cd)
	}
	if o := sushy(t, url, system, "system")[0]; o["target"] != "Hdd" || o["enabled"] != "Continuous" {
		t.Fatalf("override after deploy: %v", o)
	}
}

// A VM renamed in vCenter is served under its new name at once: the
// Redfish index is rebuilt when a VM is renamed, not on a timer.
func TestRedfishFollowsRename(t *testing.T) {
	sd := startSimDaemon(t, "metricsAddress: \"\"\n")
	sim := sd.sim
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	status := func(name string) int {
		req, _ := http.NewRequest(http.MethodGet, sd.redfishURL+"/redfish/v1/Systems/"+name, nil)
		req.SetBasicAuth("admin", "pw-12345")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("skinner-worker-2"); got != http.StatusOK {
		t.Fatalf("before the rename: %d", got)
	}
	c, err := vsphere.Connect(context.Background(), vsphere.Options{URL: sim.URL.String(), Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: sim.CAFile})
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
