package ipmi

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

// clientVM is the machine behind the endpoint the real clients talk to.
const clientVM = "skinner-master-0"

// startClientEndpoint serves, on 127.0.0.1, a VM at 12.4 % CPU and 56.6 %
// memory whose log holds logSELEvents's events. It returns the endpoint's
// UDP port.
func startClientEndpoint(t *testing.T) (*machinetest.Fake, string) {
	t.Helper()
	m := &machinetest.Fake{
		ID:    machine.Identity{Name: clientVM, UUID: testUUID, SerialNumber: testSerial},
		Usage: machine.Stats{CPUPercent: 12.4, MemoryPercent: 56.6},
	}
	logSELEvents(t, m)
	return m, serveTest(t, m, Config{}).port()
}

// runClient runs a client to completion and returns its standard output and
// error, separately: Ironic parses standard output only.
func runClient(t *testing.T, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, clienttest.Tool(t, name), args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// wantLines fails unless every pattern matches a line of out.
func wantLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(`(?m)` + p).MatchString(out) {
			t.Errorf("no line matches %q in:\n%s", p, out)
		}
	}
}

// ironicSensors parses `ipmitool sdr -v` as Ironic's ipmitool driver does
// (_parse_ipmi_sensors_data): blocks split on blank lines, "key : value"
// fields, a "Sensor Type (...)" in every block or the whole parse fails, and
// only sensors with a "Sensor Reading" kept. It returns Sensor ID → reading.
func ironicSensors(t *testing.T, out string) map[string]string {
	t.Helper()
	readings := map[string]string{}
	for block := range strings.SplitSeq(out, "\n\n") {
		fields := map[string]string{}
		for line := range strings.SplitSeq(block, "\n") {
			kv := strings.Split(line, ":")
			if len(kv) == 2 {
				fields[strings.TrimSpace(kv[0])] = strings.TrimSpace(kv[1])
			}
		}
		if len(fields) == 0 {
			continue
		}
		typed := false
		for _, k := range []string{"Sensor Type (Analog)", "Sensor Type (Discrete)", "Sensor Type (Threshold)"} {
			_, ok := fields[k]
			typed = typed || ok
		}
		if !typed {
			t.Fatalf("Ironic fails on a block without a sensor type:\n%s", block)
		}
		if r, ok := fields["Sensor Reading"]; ok {
			readings[fields["Sensor ID"]] = r
		}
	}
	return readings
}

func TestIpmitoolClient(t *testing.T) {
	t.Parallel()
	m, port := startClientEndpoint(t)
	base := append(lanplus(port, "password"), "-N", "2", "-R", "2")
	ipmitool := func(args ...string) (string, string) {
		t.Helper()
		return runClient(t, "ipmitool", append(base, args...)...)
	}

	t.Run("sdr", func(t *testing.T) {
		for _, args := range [][]string{{"sdr"}, {"sdr", "list"}} {
			out, _ := ipmitool(args...)
			wantLines(t, out,
				`^CPU Usage\s+\| 12 percent\s+\| ok$`,
				`^Memory Usage\s+\| 57 percent\s+\| ok$`,
				`^Power State\s+\| 0x01\s+\| ok$`)
		}
	})
	t.Run("sdr -v as Ironic runs it", func(t *testing.T) {
		pw := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(pw, []byte("password"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, _ := runClient(t, "ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-L", "ADMINISTRATOR", "-p", port,
			"-U", "admin", "-R", "1", "-N", "5", "-f", pw, "sdr", "-v")
		got := ironicSensors(t, out)
		if got["CPU Usage (0x1)"] != "12 (+/- 0) percent" || got["Memory Usage (0x2)"] != "57 (+/- 0) percent" {
			t.Fatalf("Ironic reads %v from:\n%s", got, out)
		}
		wantLines(t, out, `^ Sensor Type \(Discrete\): Power Unit \(0x09\)$`, `^\s+\[Power off/down\]$`)
	})
	t.Run("sensor list", func(t *testing.T) {
		out, _ := ipmitool("sensor", "list")
		wantLines(t, out,
			`^CPU Usage\s+\| 12\.000\s+\| percent\s+\| ok\s+\| na `,
			`^Memory Usage\s+\| 57\.000\s+\| percent\s+\| ok\s+\| na `,
			`^Power State\s+\| 0x1\s+\| discrete\s+\| 0x0180\|`)
	})
	t.Run("sel info", func(t *testing.T) {
		out, _ := ipmitool("sel", "info")
		wantLines(t, out, `^Entries\s+: 4$`, `^Free Space\s+: 4032 bytes`, `^Last Add Time\s+: 11/25/26 12:00:00 UTC$`,
			`^Last Del Time\s+: Not Available$`, `^Supported Cmds\s+: 'Reserve' 'Get Alloc Info'`)
	})
	t.Run("sel list", func(t *testing.T) {
		out, _ := ipmitool("sel", "list")
		wantLines(t, out,
			`^\s+1 \| 11/25/26 \| 12:00:00 UTC \| Power Unit #0x03 \| Power off/down \| Deasserted$`,
			`^\s+2 \| 11/25/26 \| 12:00:00 UTC \| System Event #0x05 \| System Reconfigured \| Asserted$`,
			`^\s+3 \| 11/25/26 \| 12:00:00 UTC \| System Boot Initiated #0x04 \| System Restart \| Asserted$`,
			`^\s+4 \| 11/25/26 \| 12:00:00 UTC \| Power Unit #0x03 \| Power off/down \| Asserted$`)
	})
	t.Run("sel elist", func(t *testing.T) {
		out, _ := ipmitool("sel", "elist")
		wantLines(t, out,
			`^\s+1 \| .* \| Power Unit Power State \| Power off/down \| Deasserted$`,
			`^\s+4 \| .* \| Power Unit Power State \| Power off/down \| Asserted$`)
	})
	t.Run("fru print", func(t *testing.T) {
		for _, args := range [][]string{{"fru", "print"}, {"fru"}} {
			out, _ := ipmitool(args...)
			wantLines(t, out,
				`^FRU Device Description : Builtin FRU Device \(ID 0\)$`,
				`^ Product Manufacturer\s+: VMware, Inc\.$`,
				`^ Product Name\s+: VMware Virtual Platform$`,
				`^ Product Serial\s+: `+regexp.QuoteMeta(testSerial)+`$`,
				`^ Product Asset Tag\s+: `+clientVM+`$`,
				`^ Chassis Serial\s+: `+regexp.QuoteMeta(testSerial)+`$`)
		}
	})
	t.Run("dcmi discover", func(t *testing.T) {
		out, _ := ipmitool("dcmi", "discover")
		wantLines(t, out,
			`^\s+SEL automatic rollover is enabled$`,
			`^\s+256 SEL entries$`,
			`^\s+Primary LAN channel number: 1 is available$`,
			`^\s+No serial channel is available$`)
	})
	t.Run("sel clear", func(t *testing.T) {
		out, _ := ipmitool("sel", "clear")
		wantLines(t, out, `^Clearing SEL`)
		out, errOut := ipmitool("sel", "list")
		if strings.TrimSpace(out) != "" || !strings.Contains(errOut, "SEL has no entries") {
			t.Fatalf("sel list after clear:\n%s%s", out, errOut)
		}
		out, _ = ipmitool("sel", "info")
		wantLines(t, out, `^Entries\s+: 0$`)
		if n := len(m.Events(0)); n != 4 {
			t.Fatalf("the machine's log has %d events after sel clear, want 4", n)
		}
	})
}

func TestFreeIPMIClient(t *testing.T) {
	t.Parallel()
	m, port := startClientEndpoint(t)
	conn := []string{"-D", "LAN_2_0", "-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password"}
	// A cache directory of the test's own: the tools that read the SDR
	// keep their cache there, by host, instead of in $HOME.
	cache := []string{"--sdr-cache-directory", t.TempDir()}
	freeipmi := func(name string, args ...string) string {
		t.Helper()
		out, _ := runClient(t, name, append(append(conn, cache...), args...)...)
		return out
	}

	t.Run("ipmi-sensors", func(t *testing.T) {
		// The second run reads the SDR cache the first wrote, which works
		// only while the repository's timestamps stay put.
		for range 2 {
			wantLines(t, freeipmi("ipmi-sensors"),
				`^1\s+\| CPU Usage\s+\| Processor\s+\| 12\.00\s+\| %\s+\| 'OK'$`,
				`^2\s+\| Memory Usage\s+\| Memory\s+\| 57\.00\s+\| %\s+\| 'OK'$`,
				`^3\s+\| Power State\s+\| Power Unit\s+\| N/A\s+\| N/A\s+\| 'Power Off/Power Down'$`)
		}
		if err := m.Power(context.Background(), machine.On); err != nil {
			t.Fatal(err)
		}
		wantLines(t, freeipmi("ipmi-sensors", "--sensors", "3"), `^3\s+\| Power State\s+\| Power Unit\s+\| N/A\s+\| N/A\s+\| 'OK'$`)
	})
	t.Run("ipmi-sel", func(t *testing.T) {
		wantLines(t, freeipmi("ipmi-sel"),
			`^1\s+\| Nov-25-2026 \| 12:00:00 \| Power State\s+\| Power Unit\s+\| Power Off/Power Down$`,
			`^2\s+\| Nov-25-2026 \| 12:00:00 \| Sensor #5\s+\| System Event\s+\| System Reconfigured$`,
			`^3\s+\| Nov-25-2026 \| 12:00:00 \| Sensor #4\s+\| System Boot Initiated \| System Restart$`,
			`^4\s+\| Nov-25-2026 \| 12:00:00 \| Power State\s+\| Power Unit\s+\| Power Off/Power Down$`,
			// The power-on of the ipmi-sensors test: a deassertion, which
			// FreeIPMI's default format does not mark.
			`^5\s+\| Nov-25-2026 \| 12:00:00 \| Power State\s+\| Power Unit\s+\| Power Off/Power Down$`)
		freeipmi("ipmi-sel", "--clear")
		if out := freeipmi("ipmi-sel"); strings.TrimSpace(out) != "" {
			t.Fatalf("ipmi-sel after --clear:\n%s", out)
		}
	})
	t.Run("ipmi-dcmi", func(t *testing.T) {
		out, _ := runClient(t, "ipmi-dcmi", append(conn, "--get-dcmi-capability-info")...)
		wantLines(t, out,
			`^DCMI Specification Conformance\s+: 1\.5$`,
			`^Power Management / Monitoring Support\s+: Not present$`,
			`^Number of SEL entries\s+: 256$`,
			`^SEL automatic rollover\s+: Available$`,
			`^Primary LAN Out-of-band Channel Number\s+: 1$`)
	})
	t.Run("ipmi-fru", func(t *testing.T) {
		wantLines(t, freeipmi("ipmi-fru"),
			`^\s+FRU Product Manufacturer Name: VMware, Inc\.$`,
			`^\s+FRU Product Name: VMware Virtual Platform$`,
			`^\s+FRU Product Serial Number: `+regexp.QuoteMeta(testSerial)+`$`,
			`^\s+FRU Product Asset Tag: `+clientVM+`$`)
	})
}

// FreeIPMI's tools with their default driver (IPMI 1.5, what an operator
// types first) answer at once, one after another, and change the machine.
func TestFreeIPMIDefaultDriver(t *testing.T) {
	t.Parallel()
	m, port := startClientEndpoint(t)
	conn := []string{"-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password"}
	cache := "--sdr-cache-directory=" + t.TempDir()
	for _, tool := range [][]string{
		{"bmc-info"}, {"ipmi-sensors", cache}, {"ipmi-sel", cache}, {"ipmi-fru", cache}, {"ipmi-chassis", "--get-status"},
		{"ipmi-chassis", "--chassis-control=POWER-UP"}, {"bmc-info"},
	} {
		start := time.Now()
		runClient(t, tool[0], append(conn, tool[1:]...)...)
		t.Logf("%v: %v", tool, time.Since(start).Round(time.Millisecond))
	}
	if s, _ := m.PowerState(context.Background()); s != machine.PowerOn {
		t.Fatalf("power %v after ipmi-chassis --chassis-control=POWER-UP", s)
	}
	out, _ := runClient(t, "ipmipower", "-h", "127.0.0.1:"+port, "-u", "admin", "-p", "password", "--off")
	if !strings.Contains(out, "ok") {
		t.Fatalf("ipmipower --off: %s", out)
	}
}

// `ipmitool session info active` describes the console's own session with
// this endpoint's counts, over both protocols.
func TestSessionInfo(t *testing.T) {
	t.Parallel()
	_, port := startClientEndpoint(t)
	for _, intf := range []string{"lanplus", "lan"} {
		out, _ := runClient(t, "ipmitool", "-I", intf, "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "session", "info", "active")
		wantLines(t, out, `^session handle\s+: 1$`, `^slot count\s+: 32$`, `^active sessions\s+: 1$`, `^privilege level\s+: ADMINISTRATOR$`)
	}
}
