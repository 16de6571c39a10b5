package ipmi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/bougou/go-ipmi/pkg/client"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi/ipmitest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

// BenchmarkEndpointPowerStatus is the request path without vSphere: UDP,
// RMCP+ decryption and integrity, dispatch, our handler and the reply.
func BenchmarkEndpointPowerStatus(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &machinetest.Fake{ID: machine.Identity{Name: "bench", UUID: testUUID}, State: machine.PowerOn}
	e, err := Listen(ctx, m, Config{Address: "127.0.0.1:0", Username: "admin", Password: "password", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = e.Serve(ctx) }()
	defer func() { _ = e.Close() }()
	_, port, _ := net.SplitHostPort(e.Addr().String())
	ipmitest.BenchmarkPowerStatus(b, "127.0.0.1", port, "admin", "password")
}

// BenchmarkServeInSession is the server's own cost of one in-session Get
// Chassis Status (what `ipmitool power status` sends in a session): the
// front door, integrity check, replay window, decryption, dispatch through
// the middleware and handler, encryption and integrity of the reply. The
// session is a real one, opened by go-ipmi's client; the datagram is the
// client's, re-sent with the window reset so that it stays fresh.
func BenchmarkServeInSession(b *testing.B) {
	tg := attackTarget(b, nil)
	r := newRelay(b, tg.addr)
	ctx := context.Background()
	cl, err := client.NewClient("127.0.0.1", r.front.LocalAddr().(*net.UDPAddr).Port, "admin", "password")
	if err != nil {
		b.Fatal(err)
	}
	cl.WithInterface(client.InterfaceLanplus)
	if err := cl.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer cl.Close(ctx)
	if _, err := cl.GetChassisStatus(ctx); err != nil {
		b.Fatal(err)
	}
	sent := r.captured()
	p := sent[len(sent)-1]
	d, why := parse(p)
	if why != "" || d.kind != kindSession {
		b.Fatalf("captured %q % x", why, p)
	}
	st := tg.srv.session(d.sid)
	to := netip.MustParseAddrPort("127.0.0.5:9") // nobody listens: the reply is sent and dropped
	b.ReportAllocs()
	for b.Loop() {
		st.win.used = false
		tg.srv.handle(p, to)
	}
}
