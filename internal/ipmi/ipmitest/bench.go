// Package ipmitest holds helpers for tests and benchmarks that talk to an
// IPMI endpoint the way a console does, through go-ipmi's client.
package ipmitest

import (
	"context"
	"strconv"
	"testing"

	"github.com/bougou/go-ipmi/pkg/client"
)

// Dial logs in to the endpoint at host:port with go-ipmi's client over
// intf (client.InterfaceLanplus: RMCP+, cipher suite 17 as ipmitool picks;
// client.InterfaceLan: IPMI 1.5), after adjust has set the client up
// (timeouts, retries), and logs out when tb ends.
func Dial(tb testing.TB, host, port, user, password string, intf client.Interface, adjust ...func(*client.Client)) *client.Client {
	tb.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := client.NewClient(host, p, user, password)
	if err != nil {
		tb.Fatal(err)
	}
	c.WithInterface(intf)
	for _, f := range adjust {
		f(c)
	}
	if err := c.Connect(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// BenchmarkPowerStatus opens one RMCP+ session and measures Get Chassis
// Status inside it: ns/op is the per-request latency a polling Ironic
// conductor sees once logged in.
func BenchmarkPowerStatus(b *testing.B, host, port, user, password string) {
	b.Helper()
	c := Dial(b, host, port, user, password, client.InterfaceLanplus)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.GetChassisStatus(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
