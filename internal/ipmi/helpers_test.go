package ipmi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/bougou/go-ipmi/pkg/client"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi/ipmitest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

// newFake is a machine named name, powered off, with the tests' UUID.
func newFake(name string) *machinetest.Fake {
	return &machinetest.Fake{ID: machine.Identity{Name: name, UUID: testUUID}}
}

// listenTest binds an endpoint for m that lives as long as the test: cfg
// as given, but on an ephemeral loopback port, for admin with password
// "password", and silent unless cfg names an address, user or log.
func listenTest(t testing.TB, m machine.Machine, cfg Config) *Endpoint {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	if cfg.Username == "" {
		cfg.Username, cfg.Password = "admin", "password"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e, err := Listen(t.Context(), m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// serveTest is listenTest with the endpoint answering.
func serveTest(t testing.TB, m machine.Machine, cfg Config) *Endpoint {
	t.Helper()
	return serve(listenTest(t, m, cfg))
}

// serveAt is serveTest with the endpoint on clk's time, which moves only
// when the test moves it.
func serveAt(t testing.TB, clk *clienttest.Clock, m machine.Machine, cfg Config) *Endpoint {
	t.Helper()
	e := listenTest(t, m, cfg)
	e.srv.now = clk.Now
	return serve(e)
}

// serve has e answer until listenTest's cleanup closes it. Not until
// t.Context ends: that comes before the cleanups, and the clients the
// test opened would then wait out their timeouts closing their sessions.
func serve(e *Endpoint) *Endpoint {
	go func() { _ = e.Serve(context.Background()) }()
	return e
}

// port is the endpoint's UDP port, as the clients' command lines take it.
func (e *Endpoint) port() string {
	return strconv.Itoa(e.Addr().(*net.UDPAddr).Port)
}

// lanplus is the start of an ipmitool command line that logs in to port
// on 127.0.0.1 over RMCP+ as admin with password.
func lanplus(port, password string) []string {
	return []string{"-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", password}
}

// dialClient opens a session with go-ipmi's client over intf (lanplus:
// RMCP+, lan: IPMI 1.5) to port on 127.0.0.1, closed when the test ends.
func dialClient(t testing.TB, port int, intf client.Interface) *client.Client {
	t.Helper()
	return ipmitest.Dial(t, "127.0.0.1", strconv.Itoa(port), "admin", "password", intf)
}
