package ipmi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

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
