// Package ipmitest holds helpers for tests and benchmarks that talk to an
// IPMI endpoint the way a console does, through go-ipmi's client.
package ipmitest

import (
	"context"
	"strconv"
	"testing"

	"github.com/bougou/go-ipmi/pkg/client"
)

// BenchmarkPowerStatus opens one RMCP+ session (cipher suite 17, what
// ipmitool picks) and measures Get Chassis Status inside it: ns/op is the
// per-request latency a polling Ironic conductor sees once logged in.
func BenchmarkPowerStatus(b *testing.B, host, port, user, password string) {
	b.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.NewClient(host, p, user, password)
	if err != nil {
		b.Fatal(err)
	}
	c.WithInterface(client.InterfaceLanplus)
	ctx := context.Background()
	if err := c.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.GetChassisStatus(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
