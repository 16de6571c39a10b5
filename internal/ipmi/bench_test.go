package ipmi

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi/ipmitest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// BenchmarkEndpointPowerStatus is the request path without vSphere: UDP,
// RMCP+ decryption and integrity, dispatch, our handler and the reply.
func BenchmarkEndpointPowerStatus(b *testing.B) {
	m := newFake("bench")
	m.State = machine.PowerOn
	ipmitest.BenchmarkPowerStatus(b, "127.0.0.1", serveTest(b, m, Config{}).port(), "admin", "password")
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
	cl := dialClient(b, r.front.LocalAddr().(*net.UDPAddr).Port, client.InterfaceLanplus)
	if _, err := cl.GetChassisStatus(context.Background()); err != nil {
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

// BenchmarkSOLKeystroke is a keystroke's round trip through SOL with the
// in-memory console echoing it: the console's SOL packet, its ACK, the
// write to the serial console, the echo read by the payload's pump, which
// waits out the accumulate interval (SOL parameter #3, 20 ms), and its
// SOL packet to the console, ACKed. ms-to-console is the first half: the
// keystroke typed at the system.
func BenchmarkSOLKeystroke(b *testing.B) {
	tg := serveSOL(b, Config{})
	rc := dialRaw(b, tg.addr, "127.0.0.1", 4)
	if cc := rc.activate(); cc != 0 {
		b.Fatalf("activate: %02x", cc)
	}
	var typed time.Duration
	seq := byte(0)
	for b.Loop() {
		seq = seq%15 + 1
		start := time.Now()
		rc.sendSOL(seq, 0, 0, 0, "k")
		<-tg.c.Keys()
		typed += time.Since(start)
		rc.output("k")
	}
	b.ReportMetric(float64(typed.Microseconds())/1000/float64(b.N), "ms-to-console")
}

// BenchmarkSOLOutput is the system's output through SOL to a console that
// ACKs each packet at once: 64 KiB an operation, from the in-memory
// console, in packets of up to 251 bytes, one outstanding at a time
// (§15.9).
func BenchmarkSOLOutput(b *testing.B) {
	tg := serveSOL(b, Config{})
	rc := dialRaw(b, tg.addr, "127.0.0.1", 4)
	if cc := rc.activate(); cc != 0 {
		b.Fatalf("activate: %02x", cc)
	}
	line := strings.Repeat("0123456789abcdef", 63) + "0123456789abc\r\n"
	const lines = 64
	b.SetBytes(lines * int64(len(line)))
	for b.Loop() {
		for range lines {
			tg.c.Print(line)
		}
		for n := 0; n < lines*len(line); {
			p := rc.solPacket(3 * time.Second)
			if p == nil {
				b.Fatalf("output stopped after %d bytes", n)
			}
			if p[0] != 0 {
				n += len(p) - 4
				rc.sendSOL(0, p[0], byte(len(p)-4), 0, "")
			}
		}
	}
}
