package main

import (
	"context"
	"fmt"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// TestServeSimulator runs the README's first command (on free ports) and
// pastes the ipmitool line its banner prints.
func TestServeSimulator(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr clienttest.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := run(ctx, []string{"serve", "--base-port", "0", "--sim-addr", "127.0.0.1:0", "--vms", "6",
			"--socket", filepath.Join(t.TempDir(), "api.sock"), "--metrics-address", "127.0.0.1:0", "--redfish-address", "127.0.0.1:0"}, &stdout, &stderr)
		done <- err
	}()
	line := regexp.MustCompile(`ipmitool -I lanplus .* power status`)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "To bridge a real vCenter") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	banner := stdout.String()
	for _, name := range []string{"skinner-master-0", "skinner-master-1", "skinner-master-2", "skinner-worker-1", "skinner-worker-2", "skinner-vm-5", "vcsim"} {
		if !strings.Contains(banner, name) {
			t.Errorf("banner lacks %s:\n%s", name, banner)
		}
	}
	if p, err := exec.LookPath("ipmitool"); err == nil {
		cmd := line.FindString(banner)
		out, err := exec.Command(p, strings.Fields(cmd)[1:]...).CombinedOutput()
		if err != nil || string(out) != "Chassis Power is off\n" {
			t.Errorf("%s: %v %q", cmd, err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Error("ipmitool is not installed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServeErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("vcenter:\n  url: https://v/sdk\n  usernme: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "missing command"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"bad flag", []string{"serve", "--nope"}, "unknown flag: --nope"},
		{"bad config", []string{"serve", "--config", bad}, "bad.yaml:3: vcenter.usernme: unknown key"},
		{"missing config", []string{"serve", "--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"ports past the end", []string{"serve", "--base-port", "65535", "--vms", "5"}, "past port 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestServeConfig bridges a vCenter named in a config file (the simulator,
// verified by its CA file); a BMC whose VM does not exist is reported and
// the others serve.
func TestServeConfig(t *testing.T) {
	sim, err := vsphere.StartSimulator(context.Background(), "127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	port := clienttest.FreeUDPPort(t)
	stateDir := t.TempDir()
	cfg := fmt.Sprintf(`vcenter:
  url: %s
  username: %s
  passwordFile: %s
  caFile: %s
stateDir: %s
bmcs:
  - vm: skinner-master-1
    address: 127.0.0.1
    port: %d
    username: operator
    password: s3cret-bmc
  - vm: no-such-vm
    address: 127.0.0.1
    port: %d
    password: s3cret-bmc
`, sim.URL, vsphere.SimulatorUser, writeFile(t, "vcpw", vsphere.SimulatorPassword), sim.CAFile, stateDir, port, clienttest.FreeUDPPort(t))
	path := writeFile(t, "bridge.yaml", cfg)

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr clienttest.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := run(ctx, []string{"serve", "--config", path, "--socket", filepath.Join(t.TempDir(), "api.sock"),
			"--metrics-address", "-", "--redfish-address", "-"}, &stdout, &stderr)
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "no-such-vm") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(stdout.String(), "waiting") || !strings.Contains(stdout.String(), "bridge.yaml:13") {
		t.Errorf("missing VM not reported with its config line:\n%s\n%s", stdout.String(), stderr.String())
	}
	if p, err := exec.LookPath("ipmitool"); err == nil {
		args := []string{"-I", "lanplus", "-H", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "operator", "-P", "s3cret-bmc"}
		out, err := exec.Command(p, append(args, "power", "status")...).CombinedOutput()
		if err != nil || string(out) != "Chassis Power is off\n" {
			t.Errorf("power status: %v %q", err, out)
		}
		if out, err := exec.Command(p, append(args, "chassis", "bootdev", "pxe", "options=persistent")...).CombinedOutput(); err != nil {
			t.Errorf("bootdev: %v %q", err, out)
		}
		saved, _ := os.ReadFile(filepath.Join(stateDir, "state.json"))
		if !strings.Contains(string(saved), `"device": "pxe"`) {
			t.Errorf("boot override not saved:\n%s", saved)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret-bmc", vsphere.SimulatorPassword} {
		if strings.Contains(stdout.String()+stderr.String(), secret) {
			t.Errorf("output shows a password (%s)", secret)
		}
	}
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMain lets the test binary stand in for the daemon process: with
// BRIDGE_TEST_MAIN set it runs main, so the tests can kill a real process.
func TestMain(m *testing.M) {
	if os.Getenv("BRIDGE_TEST_MAIN") != "" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestKillDuringChange kills the daemon (SIGKILL) while BMCs are being added
// and removed: the state file is intact afterwards, and a restarted daemon
// serves exactly the BMCs it records.
func TestKillDuringChange(t *testing.T) {
	sim, err := vsphere.StartSimulator(context.Background(), "127.0.0.1:0", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	socket := filepath.Join(dir, "api.sock")
	cfg := writeFile(t, "bridge.yaml", fmt.Sprintf(`vcenter:
  url: %s
  username: %s
  password: %s
  caFile: %s
stateDir: %s
metricsAddress: ""
redfish:
  address: ""
bmcs: []
`, sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.CAFile, stateDir))
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "serve", "--config", cfg, "--socket", socket)
		cmd.Env = append(os.Environ(), "BRIDGE_TEST_MAIN=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := api.NewClient(socket)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := c.BMCs(context.Background()); err == nil {
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatal("daemon did not come up")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c := api.NewClient(socket)
	ctx := context.Background()
	for round := range 3 {
		cmd := start()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				vm := vsphere.SeedVMNames[i%5]
				port := 20000 + round*1000 + i%40
				if i%3 == 2 {
					_ = c.Remove(ctx, fmt.Sprintf("127.0.0.5:%d", 20000+round*1000+(i-1)%40))
					continue
				}
				// Several BMCs per VM: the changes, not the rule, are under test.
				_, _ = c.Add(ctx, api.Add{VM: vm, Address: "127.0.0.5", Port: port, Password: "pw", AllowDuplicate: true})
			}
		}()
		time.Sleep(time.Duration(150+round*100) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		close(stop)
		<-done
		st, err := state.Open(filepath.Join(stateDir, "state.json"))
		if err != nil {
			t.Fatalf("round %d: state file damaged by the kill: %v", round, err)
		}
		want := map[string]bool{}
		for _, k := range st.Keys("bmc/") {
			want[strings.TrimPrefix(k, "bmc/")] = true
		}
		cmd = start()
		bmcs, err := c.BMCs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, b := range bmcs {
			got[b.Address] = true
			if b.Status != "running" {
				t.Errorf("round %d: restored %s is %s: %s", round, b.Address, b.Status, b.Error)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: state file records %v, restarted daemon serves %v", round, want, got)
		}
		for a := range want {
			if !got[a] {
				t.Fatalf("round %d: %s recorded but not restored", round, a)
			}
		}
		t.Logf("round %d: %d BMCs recorded and restored", round, len(want))
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
	}
}
