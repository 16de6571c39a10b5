package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// A damaged state file does not keep the daemon from serving its
// configuration: the file is moved aside and the BMCs answer.
func TestDamagedStateFile(t *testing.T) {
	t.Parallel()
	sim, err := vsphere.StartSimulator(context.Background(), "127.0.0.1:0", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "state.json"), []byte(`{"bmc/x": {"vm":`), 0o600); err != nil {
		t.Fatal(err)
	}
	p0 := clienttest.FreeUDPPort(t)
	cfgPath := filepath.Join(dir, "bridge.yaml")
	cfg := fmt.Sprintf(configTemplate, sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.CAFile, stateDir, p0, clienttest.FreeUDPPort(t), "")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgPath, filepath.Join(dir, "run", "api.sock"))
	defer d.stop(t)
	if out, err := ipmitool(t, "127.0.0.1", p0, "power", "status"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if aside, _ := filepath.Glob(filepath.Join(stateDir, "state.json.damaged-*")); len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
}

// A management socket directory others can write to is refused, with the
// reason: a local user could otherwise replace the socket.
func TestUnsafeSocketDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Options{Socket: filepath.Join(dir, "api.sock"), StateDir: t.TempDir(), Listen: "127.0.0.1", BasePort: 0,
		MetricsAddress: "-", RedfishAddress: "-", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("Run: %v", err)
	}
}

// A taken Redfish or metrics port stops the start before any BMC serves,
// naming the setting and the flag to change.
func TestPortTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{RedfishAddress: taken.Addr().String(), MetricsAddress: "-"}, "--redfish-address"},
		{Options{MetricsAddress: taken.Addr().String(), RedfishAddress: "-"}, "--metrics-address"},
	} {
		o := tt.opts
		o.Socket, o.StateDir, o.Listen = filepath.Join(t.TempDir(), "api.sock"), t.TempDir(), "127.0.0.1"
		o.Log, o.Stdout = slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard
		err := Run(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("Run: %v", err)
		}
	}
}
