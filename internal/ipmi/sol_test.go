package ipmi

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// solObserver counts what an endpoint reports of SOL, drops by reason and
// panics.
type solObserver struct {
	countingObserver
	mu      sync.Mutex
	active  int
	in, out int
	drops   map[string]int
	panics  int
}

func (o *solObserver) SOLActive(_ string, delta int) { o.locked(func() { o.active += delta }) }

func (o *solObserver) SOLBytes(_, direction string, n int) {
	o.locked(func() {
		if direction == "in" {
			o.in += n
		} else {
			o.out += n
		}
	})
}

func (o *solObserver) Dropped(reason string) {
	o.locked(func() {
		if o.drops == nil {
			o.drops = map[string]int{}
		}
		o.drops[reason]++
	})
}

func (o *solObserver) Panic() { o.locked(func() { o.panics++ }) }

func (o *solObserver) locked(f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f()
}

func (o *solObserver) read() (active, in, out, panics int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.active, o.in, o.out, o.panics
}

func (o *solObserver) dropped(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.drops[reason]
}

// solTarget is an endpoint whose machine has console c.
type solTarget struct {
	c    *clienttest.Console
	e    *Endpoint
	addr *net.UDPAddr
	obs  *solObserver
}

func serveSOL(t testing.TB, cfg Config) *solTarget {
	t.Helper()
	tg := &solTarget{c: clienttest.NewConsole(), obs: &solObserver{}}
	cfg.Observer = tg.obs
	tg.e = serveTest(t, consoleFake("sol", tg.c), cfg)
	tg.addr = tg.e.Addr().(*net.UDPAddr)
	return tg
}

// The SOL configuration and payload commands as a console reads them:
// enabled only with a console, encryption and authentication forced at
// Operator, output sent after 20 ms or 251 bytes, 7 retries 200 ms apart, and the port the endpoint is reached
// on, bound or configured; writes refused.
func TestSOLConfiguration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		console bool
		solPort int
	}{
		{"no console", false, 0},
		{"console", true, 0},
		{"console behind NAT", true, 16623},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var m machine.Machine = newFake("cfg")
			if tc.console {
				m = consoleFake("cfg", clienttest.NewConsole())
			}
			e := serveTest(t, m, Config{SOLPort: tc.solPort})
			port := e.Addr().(*net.UDPAddr).Port
			if tc.solPort != 0 {
				port = tc.solPort
			}
			lo, hi := byte(port), byte(port>>8)
			on, activate, deactivate := byte(0), byte(0x81), byte(0x80)
			if tc.console {
				on, activate, deactivate = 1, 0, 0
			}
			rc := dialRaw(t, e.Addr().(*net.UDPAddr), "127.0.0.1", 4)
			for _, q := range []struct {
				netFn, cmd byte
				data       []byte
				cc         byte
				want       []byte
			}{
				{0x0C, 0x22, []byte{0x0E, 1, 0, 0}, 0, []byte{0x11, on}},
				{0x0C, 0x22, []byte{0x0E, 2, 0, 0}, 0, []byte{0x11, 0xC3}},
				{0x0C, 0x22, []byte{0x0E, 3, 0, 0}, 0, []byte{0x11, 4, 251}},
				{0x0C, 0x22, []byte{0x0E, 4, 0, 0}, 0, []byte{0x11, 7, 20}},
				{0x0C, 0x22, []byte{0x0E, 8, 0, 0}, 0, []byte{0x11, lo, hi}},
				{0x0C, 0x21, []byte{0x0E, 1, 0}, 0x82, nil},
				{0x0C, 0x21, []byte{0x0E, 2, 0x03}, 0x82, nil},
				{0x0C, 0x21, []byte{0x0E, 9, 0}, 0x80, nil},
				{0x0C, 0x21, []byte{0x0E}, 0xC7, nil},
				{0x06, 0x4E, []byte{0x0E}, 0, []byte{0x01 | on<<1, 0, 0x3F, 0, 0, 0, 0, 0}},
				{0x06, 0x48, []byte{1, 1, 0xC6, 0, 0, 0}, activate, map[bool][]byte{true: {0, 0, 0, 0, 0xFF, 0, 0xFF, 0, lo, hi, 0xFF, 0xFF}}[tc.console]},
				{0x06, 0x4A, []byte{1}, 0, []byte{1, on, 0}},
				{0x06, 0x49, []byte{1, 2, 0, 0, 0, 0}, 0xC9, nil},
				{0x06, 0x49, []byte{0, 1, 0, 0, 0, 0}, 0xCC, nil},
				{0x06, 0x49, []byte{1, 1, 0, 0, 0, 0}, deactivate, nil},
			} {
				cc, data := rc.request(q.netFn, q.cmd, q.data...)
				if cc != q.cc || !bytes.Equal(data, q.want) {
					t.Errorf("NetFn %02x command %02x % x: %02x % x, want %02x % x", q.netFn, q.cmd, q.data, cc, data, q.cc, q.want)
				}
			}
		})
	}
}

// Output reaches the console, with the end of what was printed before
// the activation first; keystrokes reach the system once each, however
// often the console resends them; ACK-only packets get no answer; and
// the observer sees the payload and its bytes.
func TestSOLSession(t *testing.T) {
	t.Parallel()
	tg := serveSOL(t, Config{})
	tg.c.SetEcho(false)
	tg.c.Print(strings.Repeat("old boot line\r\n", 1000) + "vm login: ")
	rc := dialRaw(t, tg.addr, "127.0.0.1", 4)
	if cc := rc.activate(); cc != 0 {
		t.Fatalf("activate: %02x", cc)
	}
	got := rc.output("vm login: ")
	if len(got) > solReplay || !strings.HasPrefix(got, "old boot line\r\n") {
		t.Fatalf("replayed %d bytes starting %.20q, want at most %d from a line's start", len(got), got, solReplay)
	}
	for range 3 { // the first, and two resends of it with the same SOL sequence number
		rc.sendSOL(1, 0, 0, 0, "root\r")
		if p := rc.solPacket(time.Second); p == nil || p[1] != 1 || p[2] != 5 || p[3]&0x40 != 0 {
			t.Fatalf("keystrokes answered % x, want an ACK of 5 characters of packet 1", p)
		}
	}
	clienttest.Eventually(t, "keystrokes typed", func() bool { return tg.c.Typed() == "root\r" })
	tg.c.Print("Password: ")
	rc.output("Password: ")
	rc.sendSOL(0, 0, 0, 0, "")
	if p := rc.solPacket(300 * time.Millisecond); p != nil {
		t.Fatalf("an ACK-only packet was answered: % x", p)
	}
	if active, in, out, _ := tg.obs.read(); active != 1 || in != 5 || out < len(got)+10 {
		t.Fatalf("observed %d active, %d bytes in, %d out; want 1, 5, %d", active, in, out, len(got)+10)
	}
	if cc := rc.deactivate(); cc != 0 {
		t.Fatalf("deactivate: %02x", cc)
	}
	if active, _, _, _ := tg.obs.read(); active != 0 || tg.c.Attached() != 0 {
		t.Fatalf("after deactivation: %d active, console attached %d times", active, tg.c.Attached())
	}
}

// A second activation is refused with 80h; another session at Operator
// or above takes the payload over with Deactivate Payload, and the old
// owner is told once and then hears nothing; a session deactivating its
// own payload is not told; a User session can neither activate nor take
// over.
func TestSOLTakeover(t *testing.T) {
	t.Parallel()
	tg := serveSOL(t, Config{})
	tg.c.SetEcho(false)
	a := dialRaw(t, tg.addr, "127.0.0.1", 4)
	b := dialRaw(t, tg.addr, "127.0.0.2", 3)
	user := dialRaw(t, tg.addr, "127.0.0.3", 2)
	for _, step := range []struct {
		who    *rawConsole
		what   string
		op     func(*rawConsole) byte
		wantCC byte
	}{
		{a, "A activates", (*rawConsole).activate, 0},
		{b, "B activates", (*rawConsole).activate, 0x80},
		{a, "A activates again", (*rawConsole).activate, 0x80},
		{user, "User deactivates", (*rawConsole).deactivate, 0xD4},
		{b, "B takes over", (*rawConsole).deactivate, 0},
		{b, "B activates", (*rawConsole).activate, 0},
	} {
		if cc := step.op(step.who); cc != step.wantCC {
			t.Fatalf("%s: %02x, want %02x", step.what, cc, step.wantCC)
		}
	}
	if !a.notice(time.Second) {
		t.Fatal("A was not told of the takeover")
	}
	if p := a.solPacket(300 * time.Millisecond); p != nil {
		t.Fatalf("A was told again: % x", p)
	}
	a.sendSOL(1, 0, 0, 0, "rm -rf /\r")
	if p := a.solPacket(300 * time.Millisecond); p != nil || tg.c.Typed() != "" {
		t.Fatalf("A typed after the takeover: answer % x, typed %q", p, tg.c.Typed())
	}
	if tg.obs.dropped(dropSOLInactive) == 0 {
		t.Fatal("A's packet was not counted as dropped")
	}
	if cc := b.deactivate(); cc != 0 {
		t.Fatalf("B deactivates: %02x", cc)
	}
	if p := b.solPacket(300 * time.Millisecond); p != nil {
		t.Fatalf("B deactivated its own payload and was told: % x", p)
	}
	if cc := user.activate(); cc != 0xD4 {
		t.Fatalf("User activates: %02x, want D4h", cc)
	}
}

// A payload ends with its session, closed or expired, and when the
// console it reads ends, which its console is told.
func TestSOLEnds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		end    func(*solTarget, *rawConsole, *clienttest.Clock)
		notice bool
	}{
		{"close session", func(_ *solTarget, rc *rawConsole, _ *clienttest.Clock) {
			if cc, _ := rc.request(netFnApp, cmdCloseSession, le32(rc.sid)...); cc != 0 {
				rc.t.Fatalf("close session: %02x", cc)
			}
		}, false},
		{"session expires", func(_ *solTarget, _ *rawConsole, clk *clienttest.Clock) { clk.Advance(2 * time.Minute) }, false},
		{"console ends", func(tg *solTarget, _ *rawConsole, _ *clienttest.Clock) { tg.c.End() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := clienttest.NewClock()
			tg := &solTarget{c: clienttest.NewConsole(), obs: &solObserver{}}
			tg.e = serveAt(t, clk, consoleFake("ends", tg.c), Config{Observer: tg.obs})
			tg.addr = tg.e.Addr().(*net.UDPAddr)
			rc := dialRaw(t, tg.addr, "127.0.0.1", 4)
			if cc := rc.activate(); cc != 0 {
				t.Fatalf("activate: %02x", cc)
			}
			tc.end(tg, rc, clk)
			clienttest.Eventually(t, "payload deactivated", func() bool { active, _, _, _ := tg.obs.read(); return active == 0 })
			if p := rc.solPacket(300 * time.Millisecond); (p != nil) != tc.notice {
				t.Fatalf("the console was told % x; want a notice: %v", p, tc.notice)
			}
			if tg.c.Attached() != 0 {
				t.Fatal("the console is still attached")
			}
			other := dialRaw(t, tg.addr, "127.0.0.2", 4)
			if cc := other.activate(); cc != 0 {
				t.Fatalf("activate afterwards: %02x", cc)
			}
		})
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// Keystrokes typed while the serial port is not connected are dropped and
// ACKed, not NACKed: FreeIPMI and pyghmi resend a NACKed packet at once,
// for as long as the VM is off.
func TestSOLKeystrokesWhileDisconnected(t *testing.T) {
	t.Parallel()
	tg := serveSOL(t, Config{})
	rc := dialRaw(t, tg.addr, "127.0.0.1", 4)
	if cc := rc.activate(); cc != 0 {
		t.Fatalf("activate: %02x", cc)
	}
	tg.c.SetConnected(false)
	rc.sendSOL(1, 0, 0, 0, "lost")
	if p := rc.solPacket(time.Second); p == nil || p[1] != 1 || p[2] != 4 || p[3] != 0 {
		t.Fatalf("keystrokes while disconnected answered % x, want a plain ACK of 4", p)
	}
	tg.c.SetConnected(true)
	rc.sendSOL(2, 0, 0, 0, "kept")
	clienttest.Eventually(t, "keystrokes after reconnecting", func() bool { return tg.c.Typed() == "kept" })
}
