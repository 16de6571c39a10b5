package ipmi

import (
	"context"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

// The socket answers consoles of both families, on sockets of both: an
// IPv4 console of a dual-stack socket gets its answer v4-mapped, as the
// kernel expects, and every change is logged with the console's address.
func TestSocketFamilies(t *testing.T) {
	t.Parallel()
	ipmitool := clienttest.Tool(t, "ipmitool")
	for _, tc := range []struct{ listen, host string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{"[::]:0", "127.0.0.1"}, // dual stack: the console is v4-mapped
		{"[::1]:0", "::1"},
	} {
		t.Run(tc.listen+" from "+tc.host, func(t *testing.T) {
			var logs clienttest.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			m := &machinetest.Fake{ID: machine.Identity{Name: "fam", UUID: testUUID}}
			e, err := Listen(ctx, m, Config{Address: tc.listen, Username: "admin", Password: "password", Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Skipf("cannot listen on %s here: %v", tc.listen, err)
			}
			defer func() { _ = e.Close() }()
			go func() { _ = e.Serve(ctx) }()
			port := strconv.Itoa(e.Addr().(*net.UDPAddr).Port)
			out, err := exec.Command(ipmitool, "-I", "lanplus", "-H", tc.host, "-p", port, "-U", "admin", "-P", "password", "-N", "1", "-R", "2", "power", "on").CombinedOutput()
			if err != nil {
				t.Fatalf("ipmitool: %v\n%s", err, out)
			}
			want := "client=" + tc.host + ":"
			if tc.host == "::1" {
				want = "client=[::1]:"
			}
			if !strings.Contains(logs.String(), `msg="ipmi change"`) || !strings.Contains(logs.String(), want) {
				t.Errorf("log does not name the console (%s):\n%s", want, logs.String())
			}
		})
	}
}
