package main

import (
	"bufio"
	"context"
	"fmt"
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
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/daemon"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// serving is a `serve` command line running in this process.
type serving struct {
	ep             daemon.Endpoints
	stdout, stderr clienttest.Buffer
	cancel         context.CancelFunc
	done           chan error
}

// startServe runs the command line args (serve and its flags) and returns
// once the daemon serves, as daemon.Options.Ready says: its banner is
// printed by then.
func startServe(t *testing.T, args ...string) *serving {
	t.Helper()
	s := &serving{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ready := make(chan daemon.Endpoints, 1)
	c := cli{stdout: &s.stdout, stderr: &s.stderr, ready: func(ep daemon.Endpoints) { ready <- ep }}
	go func() { _, err := c.run(ctx, args); s.done <- err }()
	select {
	case s.ep = <-ready:
		return s
	case err := <-s.done:
		t.Fatalf("serve exited: %v\nstdout:\n%s\nstderr:\n%s", err, s.stdout.String(), s.stderr.String())
	case <-time.After(2 * time.Minute): // a guard against a hang, not a measurement
		cancel()
		t.Fatalf("serve not ready; stdout:\n%s\nstderr:\n%s", s.stdout.String(), s.stderr.String())
	}
	return nil
}

func (s *serving) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatalf("serve: %v\n%s", err, s.stderr.String())
	}
}

// TestServeSimulator runs the README's first command (on free ports) and
// pastes the ipmitool line its banner prints.
func TestServeSimulator(t *testing.T) {
	t.Parallel()
	s := startServe(t, "serve", "--base-port", "0", "--sim-addr", "127.0.0.1:0", "--vms", "6",
		"--socket", filepath.Join(t.TempDir(), "api.sock"), "--metrics-address", "127.0.0.1:0", "--redfish-address", "127.0.0.1:0", "--console-address", "127.0.0.1:0")
	banner := s.stdout.String()
	for _, name := range []string{"skinner-master-0", "skinner-master-1", "skinner-master-2", "skinner-worker-1", "skinner-worker-2", "skinner-vm-5", "vcsim",
		s.ep.Socket, s.ep.Metrics, s.ep.Redfish, "console:    " + s.ep.Console, "To bridge a real vCenter"} {
		if !strings.Contains(banner, name) {
			t.Errorf("banner lacks %s:\n%s", name, banner)
		}
	}
	if p, err := exec.LookPath("ipmitool"); err == nil {
		cmd := regexp.MustCompile(`ipmitool -I lanplus .* power status`).FindString(banner)
		out, err := exec.Command(p, strings.Fields(cmd)[1:]...).CombinedOutput()
		if err != nil || string(out) != "Chassis Power is off\n" {
			t.Errorf("%s: %v %q", cmd, err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Error("ipmitool is not installed")
	}
	s.stop(t)
}

func TestServeErrors(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	sim := vcsimtest.Start(t, 2)
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

	s := startServe(t, "serve", "--config", path, "--socket", filepath.Join(t.TempDir(), "api.sock"),
		"--metrics-address", "-", "--redfish-address", "-")
	stdout, stderr := &s.stdout, &s.stderr
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
	s.stop(t)
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
// BRIDGE_TEST_MAIN set it runs the command line as main does, and writes
// a line to file descriptor 3 (the test's pipe) once the daemon serves.
func TestMain(m *testing.M) {
	if os.Getenv("BRIDGE_TEST_MAIN") != "" {
		ready := os.NewFile(3, "ready")
		c := cli{stdout: os.Stdout, stderr: os.Stderr, ready: func(daemon.Endpoints) {
			fmt.Fprintln(ready, "ready")
			ready.Close()
		}}
		exit(c.run(context.Background(), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// startProcess runs `serve --config cfg --socket socket` as a process of
// its own, which the test can kill, and returns once it serves.
func startProcess(t *testing.T, cfg, socket string) *exec.Cmd {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0], "serve", "--config", cfg, "--socket", socket)
	// Built with -race, a process sleeps a second at its exit for late
	// reports (atexit_sleep_ms): every SIGTERM would cost that.
	cmd.Env = append(os.Environ(), "BRIDGE_TEST_MAIN=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Stderr = &clienttest.Buffer{}
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close() // the child's copy is the one left: EOF when it exits
	if err != nil {
		t.Fatal(err)
	}
	_ = r.SetReadDeadline(time.Now().Add(2 * time.Minute)) // a guard against a hang, not a measurement
	if line, err := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("daemon did not come up: %v\n%s", err, cmd.Stderr)
	}
	return cmd
}

// TestKillDuringChange kills the daemon (SIGKILL) while BMCs are being added
// and removed: the state file is intact afterwards, and a restarted daemon
// serves exactly the BMCs it records.
func TestKillDuringChange(t *testing.T) {
	t.Parallel()
	sim := vcsimtest.Start(t, 5)
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
	for round := range 3 {
		cmd := startProcess(t, cfg, socket)
		churn(api.NewClient(socket), round, func() {
			time.Sleep(time.Duration(150+round*100) * time.Millisecond)
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
		})
		st, err := state.Open(filepath.Join(stateDir, "state.json"))
		if err != nil {
			t.Fatalf("round %d: state file damaged by the kill: %v", round, err)
		}
		cmd = startProcess(t, cfg, socket)
		checkRestored(t, round, api.NewClient(socket), st)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
	}
}

// churn adds and removes BMCs through c until kill, run beside it, returns.
func churn(c *api.Client, round int, kill func()) {
	ctx := context.Background()
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
	kill()
	close(stop)
	<-done
}

// checkRestored checks that the daemon behind c serves exactly the BMCs
// the state file st records, each running.
func checkRestored(t *testing.T, round int, c *api.Client, st *state.Store) {
	t.Helper()
	want := map[string]bool{}
	for _, k := range st.Keys("bmc/") {
		want[strings.TrimPrefix(k, "bmc/")] = true
	}
	bmcs, err := c.BMCs(context.Background())
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
}
