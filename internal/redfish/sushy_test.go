package redfish

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

// Tests with the real client: Debian's python3-sushy (4.3.3, what Ironic
// uses), driven by testdata/sushy_client.py against the service over HTTPS
// on a loopback port. With CI set a missing sushy fails the test; without
// it, the test is skipped.

// sushyEnv is an env served over HTTPS with its self-signed certificate.
type sushyEnv struct {
	*env
	url, cert string
}

// newSushyEnv needs Debian's python3-sushy (clienttest.Python sees it; the
// python3 first on PATH may not).
func newSushyEnv(t *testing.T, opts ...func(*Config)) *sushyEnv {
	t.Helper()
	clienttest.PythonModule(t, "sushy")
	e := newEnv(t, opts...)
	s := serveTLS(t, e)
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", e.log)
		}
	})
	return &sushyEnv{env: e, url: "https://" + s.addr, cert: s.cert}
}

// sushyRun is one run of the driver script.
type sushyRun struct {
	system, auth, verify string
	user, pass           string
	steps                []string
	// onWait runs at a "wait" step, before the script goes on.
	onWait func()
}

// run executes the script and returns the JSON objects it printed, one per
// step; failed reports a non-zero exit (the last object then says why).
func (s *sushyEnv) run(t *testing.T, r sushyRun) (out []map[string]any, failed bool) {
	t.Helper()
	if r.verify == "" {
		r.verify = "false"
	}
	if r.user == "" {
		r.user = "admin"
	}
	if r.pass == "" {
		r.pass = "password"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, clienttest.Python, append([]string{"testdata/sushy_client.py", s.url, r.system, r.auth, r.verify}, r.steps...)...)
	// requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override a
	// session's verify setting, which the script sets.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") || strings.HasPrefix(kv, "CURL_CA_BUNDLE=")
	})
	cmd.Env = append(cmd.Env, "REDFISH_USERNAME="+r.user, "REDFISH_PASSWORD="+r.pass)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		t.Logf("sushy %s: %s", r.auth, sc.Text())
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("sushy printed %q: %v", sc.Text(), err)
		}
		if m["wait"] == true {
			if r.onWait != nil {
				r.onWait()
			}
			io.WriteString(stdin, "\n")
			continue
		}
		out = append(out, m)
	}
	stdin.Close()
	err = cmd.Wait()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("sushy_client.py: %v\n%s", err, stderr.String())
	}
	if err != nil && (len(out) == 0 || out[len(out)-1]["error"] == nil) {
		t.Fatalf("sushy_client.py failed: %v\n%s", err, stderr.String())
	}
	return out, err != nil
}

// mustRun is run for a script that must succeed.
func (s *sushyEnv) mustRun(t *testing.T, r sushyRun) []map[string]any {
	t.Helper()
	out, failed := s.run(t, r)
	if failed || len(out) != len(r.steps) {
		t.Fatalf("sushy: %v", out)
	}
	return out
}

// The Fake's state, read under its lock: the server's goroutines wrote it.
func fakeBoot(f *machinetest.Fake) machine.BootOverride {
	o, _ := f.BootOverride(context.Background())
	return o
}

func fakeMedia(f *machinetest.Fake) machine.Media {
	m, _ := f.Media(context.Background())
	return m
}

func fakeActions(f *machinetest.Fake) []machine.PowerAction { return f.PowerActions() }

func TestSushyAuth(t *testing.T) {
	s := newSushyEnv(t)
	for _, tc := range []struct {
		auth, verify string
		sessions     int // sessions the script sees
	}{
		{auth: "session", sessions: 1},
		{auth: "basic", sessions: 0},
		{auth: "auto", sessions: 1}, // sushy's default tries a session first
		{auth: "session", verify: s.cert, sessions: 1},
	} {
		t.Run(tc.auth+map[bool]string{true: "-verified"}[tc.verify != ""], func(t *testing.T) {
			out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: tc.auth, verify: tc.verify, steps: []string{"system", "sessions", "close"}})
			if out[0]["id"] != "vm-0" || out[0]["manufacturer"] != "VMware, Inc." {
				t.Errorf("system %v", out[0])
			}
			if n := len(out[1]["sessions"].([]any)); n != tc.sessions {
				t.Errorf("%d sessions, want %d", n, tc.sessions)
			}
			if n := len(s.srv.sessions.list(s.srv.principalOf("admin", "password"), s.Now())); n != 0 {
				t.Errorf("%d sessions left after close", n)
			}
		})
	}
	for _, auth := range []string{"session", "basic", "auto"} {
		t.Run(auth+"-wrong-password", func(t *testing.T) {
			out, failed := s.run(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: auth, pass: "wrong", steps: []string{"system"}})
			if !failed || out[len(out)-1]["error"] != "AccessError" || out[len(out)-1]["status"] != 401.0 {
				t.Errorf("%v", out)
			}
		})
	}
	t.Run("other-system", func(t *testing.T) {
		out, failed := s.run(t, sushyRun{system: "/redfish/v1/Systems/vm-1", auth: "session", steps: []string{"system"}})
		if !failed || out[len(out)-1]["status"] != 404.0 {
			t.Errorf("%v", out)
		}
	})
}

// TestSushySessionExpiry: after the idle timeout the token gets 401 and
// sushy opens a new session by itself.
func TestSushySessionExpiry(t *testing.T) {
	s := newSushyEnv(t)
	out := s.mustRun(t, sushyRun{
		system: "/redfish/v1/Systems/vm-0", auth: "session",
		steps:  []string{"system", "wait", "system"},
		onWait: func() { s.Advance(DefaultSessionTimeout + time.Minute) },
	})
	if out[2]["id"] != "vm-0" {
		t.Errorf("after expiry: %v", out[2])
	}
	log := s.log.String()
	if n := strings.Count(log, "path=/redfish/v1/SessionService/Sessions status=201"); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
	if !strings.Contains(log, "path=/redfish/v1/Systems/vm-0 status=401") {
		t.Error("no 401 for the expired session")
	}
}

// TestSushyPower drives Ironic's power actions and checks what the machine
// got.
func TestSushyPower(t *testing.T) {
	s := newSushyEnv(t)
	f := s.fakes["vm-0"]
	out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "auto", steps: []string{
		"system", "reset=On", "system", "reset=On", "reset=ForceRestart", "reset=Nmi", "reset=GracefulShutdown",
		"reset=ForceOff", "system", "reset=PushPowerButton", "system",
	}})
	if out[0]["power"] != "Off" || out[2]["power"] != "On" || out[8]["power"] != "Off" || out[10]["power"] != "On" {
		t.Errorf("power states %v %v %v %v", out[0]["power"], out[2]["power"], out[8]["power"], out[10]["power"])
	}
	want := []machine.PowerAction{machine.On, machine.On, machine.Reset, machine.NMI, machine.SoftOff, machine.Off, machine.On}
	if got := fakeActions(f); !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	resets := out[0]["resets"].([]any)
	if len(resets) < 8 {
		t.Errorf("allowed resets %v", resets)
	}

	// A powered-off system cannot restart its guest: 409, and nothing done.
	out, failed := s.run(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "basic", steps: []string{"reset=ForceOff", "reset=GracefulRestart"}})
	if !failed || out[len(out)-1]["status"] != 409.0 {
		t.Errorf("GracefulRestart of an off system: %v", out)
	}
}

// TestSushyBoot sets and reads back boot overrides through sushy's two
// boot calls, and the inventory Ironic reads.
func TestSushyBoot(t *testing.T) {
	s := newSushyEnv(t)
	f := s.fakes["vm-0"]
	out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "session", steps: []string{
		"boot=Pxe:Continuous:UEFI", "bootsource=Hdd:Once", "boot=::Legacy", "system",
	}})
	want := []map[string]any{
		{"target": "Pxe", "enabled": "Continuous", "mode": "UEFI"},
		{"target": "Hdd", "enabled": "Once", "mode": "UEFI"},
		{"target": "Hdd", "enabled": "Once", "mode": "Legacy"},
	}
	for i, w := range want {
		for k, v := range w {
			if out[i][k] != v {
				t.Errorf("step %d %s = %v, want %v", i, k, out[i][k], v)
			}
		}
	}
	if o := fakeBoot(f); o != (machine.BootOverride{Enabled: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy}) {
		t.Errorf("override %+v", o)
	}
	sys := out[3]
	for k, v := range map[string]any{
		"uuid": f.ID.UUID, "serial": f.ID.SerialNumber, "model": "VMware Virtual Platform", "memory_gib": 16.0,
		"cpus": 4.0, "arch": "x86", "bios": "VMware BIOS", "target": "Hdd", "enabled": "Once", "mode": "Legacy",
	} {
		if sys[k] != v {
			t.Errorf("system %s = %v, want %v", k, sys[k], v)
		}
	}
	if fmt.Sprint(sys["macs"]) != fmt.Sprint(f.ID.MACs) || fmt.Sprint(sys["managers"]) != "[vm-0]" || fmt.Sprint(sys["chassis"]) != "[vm-0]" {
		t.Errorf("system %v", sys)
	}
}

// TestSushyVirtualMediaDeploy is Ironic's redfish-virtual-media deploy
// (redfish/boot.py prepare_ramdisk and clean_up) through the Manager
// (Ironic 21.4) and through the System (later releases).
func TestSushyVirtualMediaDeploy(t *testing.T) {
	underBothParents(t, func(t *testing.T, s *sushyEnv, f *machinetest.Fake, parent string) {
		f.Power(context.Background(), machine.On) // the server runs: under the Fake's lock
		const iso = "http://192.0.2.5:6180/redfish/boot-0e3f.iso"
		out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "auto", steps: []string{
			"reset=ForceOff", "eject=" + parent, "insert=" + parent + ":" + iso, "boot=Cd:Once:", "boot=::UEFI", "reset=On",
			"media=" + parent, "insert=" + parent + ":" + iso,
		}})
		if m := out[6]; m["inserted"] != true || m["image"] != iso || m["image_name"] != "boot-0e3f.iso" || m["connected_via"] != "URI" {
			t.Errorf("media %v", m)
		}
		if n := len(out[7]["inserted"].([]any)); n != 0 {
			t.Errorf("the same image was inserted again: %v", out[7])
		}
		if m := fakeMedia(f); !m.Inserted || m.Image != iso {
			t.Errorf("CD %+v", m)
		}
		// The one-time CD override was used by the power-on, as a real
		// machine's is.
		if o := fakeBoot(f); o.Enabled {
			t.Errorf("override %+v still set after the boot that used it", o)
		}
		if got := fakeActions(f); !slices.Equal(got, []machine.PowerAction{machine.On, machine.Off, machine.On}) {
			t.Errorf("actions %v", got)
		}

		// After deployment: eject (no body, no Content-Type) and boot
		// from disk for good.
		out = s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "basic", steps: []string{
			"eject=" + parent, "boot=Hdd:Continuous:", "media=" + parent, "system",
		}})
		if fmt.Sprint(out[0]["ejected"]) != "[Cd]" || out[2]["inserted"] != false {
			t.Errorf("eject %v, media %v", out[0], out[2])
		}
		if m := fakeMedia(f); m.Inserted {
			t.Errorf("CD %+v after eject", m)
		}
		if o := fakeBoot(f); o != (machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeUEFI}) {
			t.Errorf("override %+v", o)
		}
	})
}

// TestSushyVerifyCertificate: sushy's set_verify_certificate (what Ironic
// calls for redfish_verify_ca on virtual media) PATCHes the drive, and
// its verify_certificate reads it back, under both parents.
func TestSushyVerifyCertificate(t *testing.T) {
	underBothParents(t, func(t *testing.T, s *sushyEnv, f *machinetest.Fake, parent string) {
		out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "auto", steps: []string{
			"media=" + parent, "verify=" + parent + ":true", "media=" + parent, "verify=" + parent + ":false",
		}})
		if out[0]["verify_certificate"] != false || out[1]["verify_certificate"] != true || out[2]["verify_certificate"] != true || out[3]["verify_certificate"] != false {
			t.Errorf("steps %v", out)
		}
		if fakeMedia(f).VerifyCertificate {
			t.Errorf("CD %+v", fakeMedia(f))
		}
	})
}

// underBothParents runs test for virtual media under each parent sushy
// reaches it through, "manager" (Ironic 21.4) and "system" (later
// releases), each time on a fresh service; f is its vm-0.
func underBothParents(t *testing.T, test func(t *testing.T, s *sushyEnv, f *machinetest.Fake, parent string)) {
	for _, parent := range []string{"manager", "system"} {
		t.Run(parent, func(t *testing.T) {
			s := newSushyEnv(t)
			test(t, s, s.fakes["vm-0"], parent)
		})
	}
}

// Ironic's redfish inspection, through sushy, finds the VM's disks with
// their sizes (local_gb: the smallest disk of at least 4 GiB, less one
// GiB) and its memory, from Storage and SimpleStorage alike.
func TestSushyInspection(t *testing.T) {
	s := newSushyEnv(t)
	f := s.fakes["vm-0"]
	f.SetIdentity(func(id *machine.Identity) {
		id.Disks = []machine.Disk{
			{ID: "2000", Name: "Hard disk 1", CapacityBytes: 120 << 30, Bus: "SCSI", ControllerID: "1000", Controller: "SCSI controller 0", UUID: "6000C291-aaaa-bbbb-cccc-000000000001"},
			{ID: "2001", Name: "Hard disk 2", CapacityBytes: 2 << 30, Bus: "SCSI", ControllerID: "1000", Controller: "SCSI controller 0"},
			{ID: "16000", Name: "Hard disk 3", CapacityBytes: 500 << 30, Bus: "NVMe", ControllerID: "31000", Controller: "NVME controller 0"},
		}
	})
	out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "session", steps: []string{"inspect", "memory"}})
	if out[0]["local_gb"] != 119.0 || out[0]["memory_mb"] != 16384.0 || out[0]["cpus"] != 4.0 {
		t.Errorf("inspection: %v", out[0])
	}
	want := []any{float64(2 << 30), float64(120 << 30), float64(500 << 30)}
	if fmt.Sprint(out[0]["simple"]) != fmt.Sprint(want) || fmt.Sprint(out[0]["drives"]) != fmt.Sprint(want) {
		t.Errorf("disk sizes: %v", out[0])
	}
	if fmt.Sprint(out[1]["capacity_mib"]) != "[16384]" {
		t.Errorf("memory: %v", out[1])
	}
}

// Ironic's UEFISecureBoot flow, through sushy: SecureBootEnable turns the
// VM's secure boot on; a BIOS VM refuses it.
func TestSushySecureBoot(t *testing.T) {
	s := newSushyEnv(t)
	out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "session", steps: []string{"secureboot", "secureboot=true", "secureboot=false"}})
	if out[0]["enabled"] != false || out[0]["current_boot"] != "Disabled" || out[0]["mode"] != "DeployedMode" {
		t.Errorf("initially %v", out[0])
	}
	if out[1]["enabled"] != true || out[1]["current_boot"] != "Enabled" || out[2]["enabled"] != false {
		t.Errorf("after set_enabled: %v, %v", out[1], out[2])
	}
	// Served concurrently: the firmware changes as a client would change it.
	if err := s.fakes["vm-1"].SetBootOverride(context.Background(), machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy}); err != nil {
		t.Fatal(err)
	}
	out, failed := s.run(t, sushyRun{system: "/redfish/v1/Systems/vm-1", auth: "session", user: "other", pass: "secret-1", steps: []string{"secureboot=true"}})
	if !failed || out[len(out)-1]["status"] != 400.0 {
		t.Errorf("secure boot on a BIOS VM: %v", out)
	}
	if id, _ := s.fakes["vm-1"].Identity(context.Background()); id.SecureBoot {
		t.Error("a BIOS VM got secure boot")
	}
}

// Ironic's bios interface, through sushy: the attributes, their registry,
// and SecureBoot set through the settings object; read-only ones refused.
func TestSushyBios(t *testing.T) {
	s := newSushyEnv(t)
	s.fakes["vm-0"].SetIdentity(func(id *machine.Identity) { id.BootOrder = []string{"disk", "ethernet"} })
	out := s.mustRun(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "session", steps: []string{"bios", "bios=SecureBoot:Enabled"}})
	attrs := out[0]["attributes"].(map[string]any)
	if attrs["BootMode"] != "Uefi" || attrs["SecureBoot"] != "Disabled" || attrs["BootOrder"] != "Hdd,Pxe" {
		t.Errorf("attributes %v", attrs)
	}
	if fmt.Sprint(out[0]["registry"]) != "[BootMode BootOrder SecureBoot]" {
		t.Errorf("registry %v", out[0]["registry"])
	}
	if out[1]["pending"].(map[string]any)["SecureBoot"] != "Enabled" {
		t.Errorf("after setting SecureBoot: %v", out[1])
	}
	if id, _ := s.fakes["vm-0"].Identity(context.Background()); !id.SecureBootNext {
		t.Error("SecureBoot attribute did not reach the machine")
	}
	out, failed := s.run(t, sushyRun{system: "/redfish/v1/Systems/vm-0", auth: "session", steps: []string{"bios=BootMode:Bios"}})
	if !failed || out[len(out)-1]["status"] != 400.0 {
		t.Errorf("read-only BootMode: %v", out)
	}
}
