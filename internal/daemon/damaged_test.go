package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// A damaged state file does not keep the daemon from serving its
// configuration: the file is moved aside and the BMCs answer.
func TestDamagedStateFile(t *testing.T) {
	t.Parallel()
	sim := vcsimtest.Start(t, 5)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "state.json"), []byte(`{"bmc/x": {"vm":`), 0o600); err != nil {
		t.Fatal(err)
	}
	p0 := clienttest.FreeUDPPort(t)
	cfgPath := writeConfig(t, dir, templateConfig(dir, sim.URL.String(), vsphere.SimulatorPassword, sim.CAFile, p0, clienttest.FreeUDPPort(t), ""))
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
		MetricsAddress: "-", RedfishAddress: "-", Log: slog.New(slog.DiscardHandler), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("Run: %v", err)
	}
}

// A taken Redfish, metrics or console concentrator port stops the start
// before any BMC serves, naming the setting and the flag to change.
func TestPortTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tt := range []struct {
		opts Options
		want []string
	}{
		{Options{RedfishAddress: taken.Addr().String(), MetricsAddress: "-"}, []string{"--redfish-address"}},
		{Options{MetricsAddress: taken.Addr().String(), RedfishAddress: "-"}, []string{"--metrics-address"}},
		{Options{ConsoleAddress: taken.Addr().String(), MetricsAddress: "-", RedfishAddress: "-"}, []string{"console: ", "console.address", "--console-address"}},
	} {
		o := tt.opts
		o.Socket, o.StateDir, o.Listen = filepath.Join(t.TempDir(), "api.sock"), t.TempDir(), "127.0.0.1"
		o.Log, o.Stdout = slog.New(slog.DiscardHandler), io.Discard
		err := Run(context.Background(), o)
		for _, want := range append(tt.want, "address already in use") {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run: %v, want %q", err, want)
			}
		}
	}
}
