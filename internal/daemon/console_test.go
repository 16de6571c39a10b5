package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console/consoletest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// consoleDaemon is a config-mode daemon with the console concentrator on
// a free port, logging consoles in rotation (64 KiB, one older file):
// skinner-worker-2's BMC offers its console, skinner-master-0's none.
type consoleDaemon struct {
	sim      *vsphere.Simulator
	d        *running
	log      *clienttest.Buffer
	stateDir string
	host     *consoletest.Host
	vm       consoletest.VM
}

func startConsoleDaemon(t *testing.T) *consoleDaemon {
	t.Helper()
	sim := vcsimtest.Start(t, 5)
	dir := t.TempDir()
	c := &consoleDaemon{sim: sim, log: &clienttest.Buffer{}, stateDir: filepath.Join(dir, "state")}
	cfg := simVCenter(sim) + fmt.Sprintf(`stateDir: %s
metricsAddress: 127.0.0.1:0
redfish: {address: ""}
console: {address: "127.0.0.1:0", log: true, logMaxBytes: 64KiB, logKeep: 1}
bmcs:
  - {vm: skinner-worker-2, address: 127.0.0.1, port: %d, password: pw-12345, console: true}
  - {vm: skinner-master-0, address: 127.0.0.1, port: %d, password: pw-12345}
`, c.stateDir, clienttest.FreeUDPPort(t), clienttest.FreeUDPPort(t))
	log := slog.New(slog.NewTextHandler(c.log, nil))
	c.d = startDaemonWith(t, Options{Config: writeConfig(t, dir, cfg), Socket: filepath.Join(dir, "api.sock"), Log: log})
	t.Cleanup(func() { c.d.stop(t) })
	if c.d.ep.Console == "" || !strings.Contains(c.d.out.String(), "console:    "+c.d.ep.Console) {
		t.Fatalf("the banner does not show the concentrator %q:\n%s", c.d.ep.Console, c.d.out.String())
	}
	vms, err := c.d.api.VMs(context.Background(), api.VMQuery{Filter: "skinner-worker-2"})
	if err != nil || len(vms) != 1 {
		t.Fatalf("VMs: %v %v", vms, err)
	}
	// The fake host names the VM as ESXi does: by its BIOS UUID and its
	// vCenter instance UUID, which the daemon requires.
	vc, err := vsphere.Connect(context.Background(), vcsimtest.Options(sim))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = vc.Close(context.Background()) }()
	instance := strings.ToLower(simVM(t, vc, "skinner-worker-2", "config.instanceUuid").Config.InstanceUuid)
	c.vm = consoletest.VM{InstanceUUID: instance, BIOSUUID: vms[0].UUID, Name: "skinner-worker-2"}
	return c
}

// apiGet answers GET path on the daemon's socket with its status and body.
func apiGet(t *testing.T, socket, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	resp, err := c.Get("http://daemon" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// eventually is clienttest.Eventually, by the short name this package's
// tests call it.
var eventually = clienttest.Eventually

// The daemon's serial consoles end to end: a BMC's console is there before
// the VM's host connects; the host's output reaches the log route, an
// attached stream, the log file and the metrics; keystrokes reach the
// host; the connection and its end are logged, never what was shown or
// typed; the refusals are 404 and 409; the VM's serial port is pointed
// at the concentrator.
func TestConsole(t *testing.T) {
	t.Parallel()
	c := startConsoleDaemon(t)
	sock := c.d.ep.Socket
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/v1/bmcs/skinner-worker-2/console/log", http.StatusOK, ""},
		{"/v1/bmcs/nope/console/log", http.StatusNotFound, "no such BMC"},
		{"/v1/bmcs/skinner-master-0/console/log", http.StatusConflict, "offers no serial console: set console: true"},
		{"/v1/bmcs/skinner-master-0/console", http.StatusConflict, "offers no serial console"},
		{"/v1/bmcs/skinner-worker-2/console", http.StatusUpgradeRequired, ""},
	} {
		if status, body := apiGet(t, sock, tc.path); status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, status, body, tc.status, tc.want)
		}
	}
	if b, err := c.d.api.BMC(context.Background(), "skinner-worker-2"); err != nil || b.Console == nil || b.Console.Connected {
		t.Fatalf("before the host connects: %+v %v", b.Console, err)
	}
	stream, err := c.d.api.Console(context.Background(), "skinner-worker-2")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	c.host = consoletest.Dial(t, c.d.ep.Console, c.vm)
	c.host.Print("boot line\r\nlogin: ")
	if got := clienttest.ReadUntil(t, stream, "login: "); got != "boot line\r\nlogin: " {
		t.Errorf("the stream attached before the host connected read %q", got)
	}
	if _, err := stream.Write([]byte("root\r")); err != nil {
		t.Fatal(err)
	}
	c.host.WaitKeys("root\r")
	if status, body := apiGet(t, sock, "/v1/bmcs/skinner-worker-2/console/log"); status != http.StatusOK || body != "boot line\r\nlogin: " {
		t.Errorf("console/log: %d %q", status, body)
	}
	c.checkConnected(t)
	c.checkLogFiles(t)
	c.checkSerialPorts(t)
	c.host.Close()
	eventually(t, "disconnection logged", func() bool {
		return strings.Contains(c.log.String(), `msg="serial console disconnected" vm=skinner-worker-2`)
	})
	eventually(t, "connected gauge 0", func() bool {
		return consoleSeries(t, c.d.ep.Metrics, `console_connected{uuid="`+c.vm.InstanceUUID+`",vm="skinner-worker-2"}`) == "0"
	})
	for _, secret := range []string{"boot line", "login:", "root"} {
		if strings.Contains(c.log.String(), secret) {
			t.Fatalf("the log shows console content %q:\n%s", secret, c.log.String())
		}
	}
}

// checkConnected: `bmc show`, the log and the metrics say the serial port
// is connected, from where.
func (c *consoleDaemon) checkConnected(t *testing.T) {
	t.Helper()
	b, err := c.d.api.BMC(context.Background(), "skinner-worker-2")
	if err != nil || b.Console == nil || !b.Console.Connected || !strings.HasPrefix(b.Console.Remote, "127.0.0.1:") {
		t.Fatalf("bmc show's console: %+v %v", b.Console, err)
	}
	want := `msg="serial console connected" vm=skinner-worker-2 uuid=` + c.vm.InstanceUUID + " remote=" + b.Console.Remote
	if !strings.Contains(c.log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, c.log.String())
	}
	for series, want := range map[string]string{
		"console_connected{":              "1",
		"console_bytes_from_vm_total{":    "18",
		"console_bytes_to_vm_total{":      "5",
		"console_connections_total{":      "1",
		"console_host_connections_active": "1",
	} {
		if strings.HasSuffix(series, "{") {
			series += `uuid="` + c.vm.InstanceUUID + `",vm="skinner-worker-2"}`
		}
		if got := consoleSeries(t, c.d.ep.Metrics, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
}

// consoleSeries reads the value of the first series of /metrics whose
// line starts with name (a family, or a series with its labels).
func consoleSeries(t *testing.T, metricsURL, name string) string {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for l := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(l, "ipmi_vmware_bridge_"+name) {
			return l[strings.LastIndexByte(l, ' ')+1:]
		}
	}
	return ""
}

// checkLogFiles: the console's log is STATEDIR/console/INSTANCE.log, 0600
// in a 0700 directory, and rotates at logMaxBytes keeping logKeep files.
func (c *consoleDaemon) checkLogFiles(t *testing.T) {
	t.Helper()
	dir := filepath.Join(c.stateDir, "console")
	path := filepath.Join(dir, c.vm.InstanceUUID+".log")
	eventually(t, "the log file holds the output", func() bool {
		data, _ := os.ReadFile(path)
		return string(data) == "boot line\r\nlogin: "
	})
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("log directory: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file: %v %v", fi.Mode(), err)
	}
	line := strings.Repeat("x", 1023) + "\n"
	for range 100 { // 100 KiB: past one 64 KiB file
		c.host.Print(line)
	}
	c.host.Print("END")
	eventually(t, "the log rotated", func() bool {
		data, _ := os.ReadFile(path)
		return bytes.HasSuffix(data, []byte("END"))
	})
	older, err := os.ReadFile(path + ".1")
	if err != nil || !bytes.HasPrefix(older, []byte("boot line")) || len(older) > 64<<10 {
		t.Fatalf("rotated file: %d bytes, %v", len(older), err)
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Fatalf("logKeep 1 kept a second old file: %v", err)
	}
}

// checkSerialPorts: the VM of the BMC with a console got a serial port
// whose vSPC is the concentrator; the other VM none.
func (c *consoleDaemon) checkSerialPorts(t *testing.T) {
	t.Helper()
	vc, err := vsphere.Connect(context.Background(), vcsimtest.Options(c.sim))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = vc.Close(context.Background()) }()
	want := map[string]string{"skinner-worker-2": "telnet://" + c.d.ep.Console, "skinner-master-0": ""}
	for name, uri := range want {
		eventually(t, name+"'s serial port", func() bool { return proxyURI(t, vc, name) == uri })
	}
}

// proxyURI is the vSPC URI of the VM's first serial port that has one.
func proxyURI(t *testing.T, vc *vsphere.Client, name string) string {
	t.Helper()
	for _, d := range simVM(t, vc, name, "config.hardware.device").Config.Hardware.Device {
		if sp, ok := d.(*types.VirtualSerialPort); ok {
			if b, ok := sp.Backing.(*types.VirtualSerialPortURIBackingInfo); ok && b.ProxyURI != "" {
				return b.ProxyURI
			}
		}
	}
	return ""
}

// A host connection naming a VM that no BMC with a console serves (a
// made-up one here) gets no console: it is closed and counted as
// rejected, and the console log of a BMC whose host has not connected
// reads empty without making a console.
func TestConsoleRefusesUnknownVMs(t *testing.T) {
	t.Parallel()
	c := startConsoleDaemon(t)
	intruder := consoletest.Dial(t, c.d.ep.Console, consoletest.VM{
		InstanceUUID: "5001d1c4-0000-4000-8000-000000000001", BIOSUUID: "4201d1c4-0000-4000-8000-000000000001", Name: "intruder"})
	intruder.Print("fake output")
	eventually(t, "the made-up VM rejected", func() bool {
		return consoleSeries(t, c.d.ep.Metrics, `console_host_connections_closed_total{reason="rejected"}`) == "1"
	})
	if status, body := apiGet(t, c.d.ep.Socket, "/v1/bmcs/skinner-worker-2/console/log"); status != http.StatusOK || body != "" {
		t.Errorf("console/log before the host connects: %d %q", status, body)
	}
	if strings.Contains(c.log.String(), "fake output") {
		t.Error("the rejected connection's output reached the log")
	}
}
