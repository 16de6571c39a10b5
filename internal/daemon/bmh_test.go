package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"go.yaml.in/yaml/v3"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// postBMH sends body to POST /v1/bmh as it is, bypassing api.Client, so
// that a request can leave controlPlane out altogether, as a client older
// than the field does.
func postBMH(t *testing.T, socket, body string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://daemon/v1/bmh", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}

// bareMetalHosts reads the spec of each BareMetalHost in a manifest stream,
// by name.
func bareMetalHosts(t *testing.T, manifests string) map[string]map[string]any {
	t.Helper()
	specs := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var doc struct {
			Kind     string
			Metadata struct{ Name string }
			Spec     map[string]any
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return specs
		}
		if err != nil {
			t.Fatalf("manifests do not parse: %v\n%s", err, manifests)
		}
		if doc.Kind == "BareMetalHost" {
			specs[doc.Metadata.Name] = doc.Spec
		}
	}
}

// testBMHControlPlane checks the API's controlPlane list with the running
// BMCs of TestManagement (skinner-master-0 and skinner-worker-2): absent or
// null is the default *-master-*, [] is none, a malformed glob is a 400
// whose message the CLI shows, and install-config ignores the list.
func testBMHControlPlane(t *testing.T, socket string) {
	const host = `"host": "192.168.86.168"`
	for _, tc := range []struct {
		name   string
		body   string
		status int
		want   []string // the externally provisioned hosts, or substrings of the error
	}{
		{"absent", `{` + host + `}`, http.StatusOK, []string{"skinner-master-0"}},
		{"null", `{` + host + `, "controlPlane": null}`, http.StatusOK, []string{"skinner-master-0"}},
		{"empty", `{` + host + `, "controlPlane": []}`, http.StatusOK, nil},
		{"custom", `{` + host + `, "controlPlane": ["skinner-worker-*"]}`, http.StatusOK, []string{"skinner-worker-2"}},
		{"comma-separated", `{` + host + `, "controlPlane": ["skinner-worker-2, skinner-master-0"]}`, http.StatusOK, []string{"skinner-master-0", "skinner-worker-2"}},
		{"empty globs only", `{` + host + `, "controlPlane": ["", " , "]}`, http.StatusOK, nil},
		{"offline: the control plane stays online", `{` + host + `, "offline": true}`, http.StatusOK, []string{"skinner-master-0"}},
		{"malformed", `{` + host + `, "controlPlane": ["*-master-*", "skinner-["]}`, http.StatusBadRequest, []string{`control plane: pattern \"skinner-[\"`, "syntax error in pattern"}},
		{"install-config ignores it", `{` + host + `, "installConfig": true, "controlPlane": ["skinner-["]}`, http.StatusOK, nil},
		{"malformed filter", `{` + host + `, "filter": "skinner-["}`, http.StatusBadRequest, []string{`filter \"skinner-[\"`, "syntax error in pattern"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postBMH(t, socket, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d:\n%s", status, tc.status, body)
			}
			if status != http.StatusOK {
				for _, w := range tc.want {
					if !strings.Contains(body, w) {
						t.Errorf("error %s does not contain %s", body, w)
					}
				}
				return
			}
			specs := bareMetalHosts(t, body)
			if strings.Contains(tc.body, "installConfig") {
				if len(specs) != 0 || !strings.Contains(body, "platform:") {
					t.Errorf("not install-config hosts:\n%s", body)
				}
				return
			}
			if len(specs) != 2 {
				t.Fatalf("%d BareMetalHosts, want skinner-master-0 and skinner-worker-2:\n%s", len(specs), body)
			}
			offline := strings.Contains(tc.body, "offline")
			for name, spec := range specs {
				cp := false
				for _, w := range tc.want {
					cp = cp || w == name
				}
				if got := spec["externallyProvisioned"] == true && spec["automatedCleaningMode"] == "disabled"; got != cp {
					t.Errorf("%s: control plane %v, want %v: %v", name, got, cp, spec)
				}
				if want := cp || !offline; spec["online"] != want {
					t.Errorf("%s: online %v, want %v", name, spec["online"], want)
				}
			}
		})
	}
}

// testBMHSecureBoot turns secure boot on in skinner-master-0 behind the
// daemon's back, as an operator would in vCenter, and checks that its
// BareMetalHost boots UEFISecureBoot over Redfish, in install-config.yaml
// too, and that over IPMI, which Metal3 cannot drive secure boot through,
// the daemon refuses rather than write a manifest Metal3 would reject.
func testBMHSecureBoot(t *testing.T, sim *vsphere.Simulator, client *api.Client) {
	secureBootOn(t, sim, "skinner-master-0")
	// The daemon learns of the change from vCenter's updates, a moment later.
	redfish := api.BMH{Host: "192.168.86.168", Redfish: true}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mode, err := bootMode(t, client, redfish)
		if err != nil {
			t.Fatal(err)
		}
		if mode == "UEFISecureBoot" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bootMode %q with secure boot on, want UEFISecureBoot", mode)
		}
	}
	redfish.InstallConfig = true
	if mode, err := bootMode(t, client, redfish); err != nil || mode != "UEFISecureBoot" {
		t.Errorf("install-config bootMode %q (%v), want UEFISecureBoot", mode, err)
	}
	if _, err := bootMode(t, client, api.BMH{Host: "192.168.86.168"}); err == nil || !strings.Contains(err.Error(), `"skinner-master-0": secure boot is on`) {
		t.Errorf("over IPMI: error %v, want skinner-master-0's secure boot refused", err)
	}
}

// secureBootOn turns secure boot on in the VM, straight in the simulator.
func secureBootOn(t *testing.T, sim *vsphere.Simulator, name string) {
	t.Helper()
	ctx := context.Background()
	c, err := vsphere.Connect(ctx, vcsimtest.Options(sim))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(ctx) }()
	vm, err := find.NewFinder(c.Vim()).VirtualMachine(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var cfg mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.bootOptions"}, &cfg); err != nil {
		t.Fatal(err)
	}
	// vSphere replaces bootOptions whole: keep the rest of it.
	var bo types.VirtualMachineBootOptions
	if cfg.Config != nil && cfg.Config.BootOptions != nil {
		bo = *cfg.Config.BootOptions
	}
	bo.EfiSecureBootEnabled = types.NewBool(true)
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{BootOptions: &bo})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// bootMode is skinner-master-0's boot mode in the manifests req asks for.
func bootMode(t *testing.T, client *api.Client, req api.BMH) (string, error) {
	t.Helper()
	var out bytes.Buffer
	if err := client.BMH(context.Background(), req, &out); err != nil {
		return "", err
	}
	if !req.InstallConfig {
		mode, _ := bareMetalHosts(t, out.String())["skinner-master-0"]["bootMode"].(string)
		return mode, nil
	}
	var ic struct {
		Platform struct {
			Baremetal struct {
				Hosts []struct {
					Name     string
					BootMode string `yaml:"bootMode"`
				}
			}
		}
	}
	if err := yaml.Unmarshal(out.Bytes(), &ic); err != nil {
		t.Fatal(err)
	}
	for _, h := range ic.Platform.Baremetal.Hosts {
		if h.Name == "skinner-master-0" {
			return h.BootMode, nil
		}
	}
	return "", nil
}
