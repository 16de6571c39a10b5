package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console/consoletest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/daemon"
)

// connectHosts dials a fake ESXi host for the VM of each of the daemon's
// BMCs that offers a console, which prints "NAME login: " at once, and
// returns them by VM name once the daemon shows their output.
func connectHosts(t *testing.T, ep daemon.Endpoints) map[string]*consoletest.Host {
	t.Helper()
	ctx := context.Background()
	c := api.NewClient(ep.Socket)
	vms, err := c.VMs(ctx, api.VMQuery{})
	if err != nil {
		t.Fatal(err)
	}
	bmcs, err := c.BMCs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]*consoletest.Host{}
	for _, vm := range vms {
		if i := slices.IndexFunc(bmcs, func(b api.BMC) bool { return b.Name == vm.Name && b.Console != nil }); i < 0 || hosts[vm.Name] != nil {
			continue
		}
		h := consoletest.Dial(t, ep.Console, consoletest.VM{BIOSUUID: vm.UUID, InstanceUUID: vm.InstanceUUID, Name: vm.Name})
		h.Print(vm.Name + " login: ")
		hosts[vm.Name] = h
	}
	for name := range hosts {
		clienttest.Eventually(t, name+"'s console showing its host's output", func() bool {
			var log bytes.Buffer
			return c.ConsoleLog(ctx, name, &log) == nil && strings.HasSuffix(log.String(), "login: ")
		})
	}
	return hosts
}

// `console VM --log` prints what the VM's host sent; `console VM` sends
// what its input holds (through a pipe, as a script would) and prints the
// VM's output, leaving at ~. or once its input ended and the output is
// quiet; refusals exit 1 with the daemon's reason.
func TestConsoleCommand(t *testing.T) {
	t.Parallel()
	s := startServe(t, "serve", "--base-port", "0", "--sim-addr", "127.0.0.1:0", "--vms", "2", "--socket", filepath.Join(t.TempDir(), "api.sock"),
		"--metrics-address", "-", "--redfish-address", "-", "--console-address", "127.0.0.1:0")
	defer s.stop(t)
	hosts := connectHosts(t, s.ep)
	for _, tc := range []struct {
		name, stdin          string
		args                 []string
		code                 int
		stdout, stderr, keys string
		err                  string
	}{
		{"log", "", []string{"--log"}, 0, "skinner-master-0 login: ", "", "", ""},
		{"keys then ~.", "root\r~.ignored", nil, 0, "", "~. at the start of a line leaves", "root\r", ""},
		{"keys then the end of input", "date\r~~x\rab~c", nil, 0, "login: ", "[attached to the serial console of skinner-master-0", "date\r~x\rab~c", ""},
		{"a BMC that does not exist", "", []string{"--log"}, 1, "", "", "", "no such BMC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := "skinner-master-0"
			if tc.err != "" {
				vm = "nope"
			}
			var stdout, stderr clienttest.Buffer
			c := cli{stdin: strings.NewReader(tc.stdin), stdout: &stdout, stderr: &stderr}
			code, err := c.run(context.Background(), append([]string{"console", vm, "--socket", s.ep.Socket}, tc.args...))
			if code != tc.code || (tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err))) {
				t.Fatalf("exit %d (%v), want %d with %q", code, err, tc.code, tc.err)
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
			}
			if tc.keys != "" {
				if got := hosts[vm].WaitKeys(tc.keys); strings.Contains(got, "ignored") {
					t.Fatalf("the host got %q: keys after ~. sent", got)
				}
			}
		})
	}
}

// The escape filter: ~. at a line's start leaves, ~~ sends ~, a ~
// elsewhere or before another key is sent as typed, whatever the reads.
func TestEscaper(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads []string
		want  string
		leave bool
	}{
		{"at the start", []string{"~."}, "", true},
		{"after CR", []string{"ls\r~.rest"}, "ls\r", true},
		{"after LF, split reads", []string{"ls\n~", ".rest"}, "ls\n", true},
		{"mid-line", []string{"a~.b"}, "a~.b", false},
		{"doubled", []string{"~~.x"}, "~.x", false},
		{"another key", []string{"~x"}, "~x", false},
		{"held at the end", []string{"\r~"}, "\r~", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			err := typeKeys(&chunkReader{chunks: tc.reads}, &got)
			if got.String() != tc.want || (err == errLeave) != tc.leave {
				t.Fatalf("sent %q (%v), want %q (leave %v)", got.String(), err, tc.want, tc.leave)
			}
		})
	}
}

// chunkReader returns its chunks one read each, then io.EOF.
type chunkReader struct{ chunks []string }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}
