package ipmi

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
)

// A source at its limit loses its own oldest handshake; a full table loses
// the oldest handshake of the source with the most, never a console's only
// one while a flooder has more; a handshake that got RAKP 2 is never
// evicted.
func TestHandshakesFairEviction(t *testing.T) {
	t.Parallel()
	hs := newHandshakes()
	at := time.Unix(1_000_000, 0)
	add := func(ip netip.Addr, id uint32) bool {
		ok := hs.admit(ip)
		if ok {
			at = at.Add(time.Millisecond)
			hs.add(&handshake{key: hsKey{id: id}, ip: ip, at: at})
		}
		return ok
	}
	has := func(ip netip.Addr, id uint32) bool { _, ok := hs.from(hsKey{id: id}, ip); return ok }
	console := netip.MustParseAddr("127.0.0.2")
	add(console, 1)
	flooder := netip.MustParseAddr("127.0.0.3")
	for i := range uint32(perSourcePending + 1) {
		add(flooder, 100+i)
	}
	if has(flooder, 100) || !has(flooder, 101) {
		t.Fatal("a source over its limit did not lose its oldest handshake")
	}
	guesser := netip.MustParseAddr("127.0.0.4")
	for i := range uint32(perSourcePending) {
		add(guesser, 200+i)
		hs.sentRAKP2(hsKey{id: 200 + i})
	}
	if add(guesser, 300) || !has(guesser, 200) {
		t.Fatal("a handshake that got RAKP 2 was evicted")
	}
	id := uint32(1000)
	for hs.len() < maxPending {
		id++
		add(netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)}), id)
	}
	if !add(netip.MustParseAddr("127.0.0.5"), 5) || has(flooder, 101) {
		t.Fatal("a full table did not evict the flooder's oldest")
	}
	if !has(console, 1) {
		t.Fatal("the console's handshake was evicted")
	}
	if has(flooder, 1) {
		t.Fatal("a handshake answered for another source")
	}
	if exp := hs.expired(at.Add(handshakeTimeout)); len(exp) != maxPending {
		t.Fatalf("%d expired, want all %d", len(exp), maxPending)
	}
	if hs.len() != 0 || len(hs.bySource) != 0 {
		t.Fatalf("table not empty: %d, %d sources", hs.len(), len(hs.bySource))
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	var w window
	steps := []struct {
		seq  uint32
		want bool
	}{
		{0, false}, {7, true}, {7, false}, {8, true}, {6, true}, {6, false},
		{23, true}, {24, true}, {39, true}, {40, true}, {55, true}, {71, false},
		{39, false}, {38, false}, {54, true}, {54, false},
	}
	for i, s := range steps {
		if got := w.accept(s.seq); got != s.want {
			t.Fatalf("step %d: accept(%d) = %v", i, s.seq, got)
		}
	}
	w = window{}
	w.accept(0xFFFFFFFE)
	if !w.accept(2) || w.accept(2) || !w.accept(0xFFFFFFFF) {
		t.Fatal("the window does not wrap")
	}
}

type countingObserver struct{ auth, refused, replays, lockouts atomic.Int64 }

func (o *countingObserver) Request(string, string, time.Duration) {}
func (o *countingObserver) Session(_, event string) {
	if event == "refused" {
		o.refused.Add(1)
	}
}
func (o *countingObserver) AuthFailure(string) { o.auth.Add(1) }
func (o *countingObserver) Panic()             {}
func (o *countingObserver) Dropped(string)     {}
func (o *countingObserver) Replay()            { o.replays.Add(1) }
func (o *countingObserver) Lockout(string)     { o.lockouts.Add(1) }

// A guesser is locked out after repeated wrong passwords, until the
// lockout ends: its session setups get silence, so not even the right
// password gets in; every failure is counted. The
// endpoint and the guard share a clock the test moves, so that neither the
// handshake timeout nor the lockout is waited out.
func TestLockoutWithIpmitool(t *testing.T) {
	t.Parallel()
	ipmitool := clienttest.Tool(t, "ipmitool")
	obs := &countingObserver{}
	clk := clienttest.NewClock()
	const lockout = 5 * time.Minute
	g := guard.New(guard.Config{Failures: 3, Window: time.Minute, Lockout: lockout, Now: clk.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e := serveAt(t, clk, newFake("guarded"), Config{Guard: g, Observer: obs})
	try := func(password string) error {
		out, err := exec.Command(ipmitool, append(lanplus(e.port(), password), "-N", "1", "-R", "1", "power", "status")...).CombinedOutput()
		if err == nil && !strings.Contains(string(out), "Chassis Power is") {
			t.Fatalf("unexpected output %q", out)
		}
		return err
	}
	for range 3 {
		if err := try("wrong"); err == nil {
			t.Fatal("a wrong password logged in")
		}
	}
	// ipmitool gives up after RAKP 2 without a word: its handshakes count
	// as failed logins when they time out, at the next housekeeping.
	clk.Advance(handshakeTimeout)
	clienttest.Eventually(t, "three failures counted", func() bool { return obs.auth.Load() >= 3 })
	// Locked out: the source's Open Session gets silence, so the right
	// password cannot even be tried (ipmitool would take 5 s to give up).
	if r := exchange(from(t, "127.0.0.1"), e.Addr().(*net.UDPAddr), openSessionRequest(1), 200*time.Millisecond); r != nil {
		t.Fatal("a locked-out source got an answer")
	}
	if obs.refused.Load() == 0 {
		t.Fatal("dropped setup packets not counted")
	}
	clk.Advance(lockout)
	if err := try("password"); err != nil {
		t.Fatalf("still locked out after the lockout: %v", err)
	}
}

// A flood of half-open sessions (Open Session and RAKP 1, never RAKP 3)
// from one source does not keep a console elsewhere from logging in.
func TestHalfOpenFlood(t *testing.T) {
	t.Parallel()
	ipmitool := clienttest.Tool(t, "ipmitool")
	e := serveTest(t, newFake("guarded"), Config{Guard: guard.New(guard.Default)})
	flood, err := net.ListenPacket("udp", "127.0.0.9:0")
	if err != nil {
		t.Skipf("no 127.0.0.9 here: %v", err)
	}
	defer flood.Close()
	bmc := e.Addr()
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		sent := 0
		buf := make([]byte, 512)
		for i := uint32(1); ; i++ {
			select {
			case <-stop:
				done <- sent
				return
			default:
			}
			_, _ = flood.WriteTo(openSessionRequest(i), bmc)
			sent++
			_ = flood.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
			n, _, err := flood.ReadFrom(buf)
			if err != nil || n < 16+12 || buf[5]&0x3F != 0x11 {
				continue
			}
			sidc := buf[16+8 : 16+12]
			_, _ = flood.WriteTo(rakp1(sidc), bmc)
			sent++
		}
	}()
	time.Sleep(200 * time.Millisecond)
	for i := range 3 {
		out, err := exec.Command(ipmitool, append(lanplus(e.port(), "password"), "-N", "1", "-R", "2", "power", "status")...).CombinedOutput()
		if err != nil {
			close(stop)
			t.Fatalf("login %d during the flood: %v %s", i, err, out)
		}
	}
	close(stop)
	t.Logf("flood sent %d setup packets; three logins from another source succeeded", <-done)
}

// openSessionRequest is an RMCP+ Open Session Request for suite 17.
func openSessionRequest(sidm uint32) []byte {
	p := []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0}
	payload := []byte{0x00, 0x04, 0, 0, byte(sidm), byte(sidm >> 8), byte(sidm >> 16), byte(sidm >> 24),
		0x00, 0, 0, 0x08, 0x03, 0, 0, 0,
		0x01, 0, 0, 0x08, 0x04, 0, 0, 0,
		0x02, 0, 0, 0x08, 0x01, 0, 0, 0}
	return append(p, payload...)
}

// rakp1 is a RAKP Message 1 for user admin.
func rakp1(sidc []byte) []byte {
	payload := append([]byte{0x00, 0, 0, 0}, sidc...)
	payload = append(payload, make([]byte, 16)...) // Rm
	payload = append(payload, 0x14, 0, 0, 5)
	payload = append(payload, "admin"...)
	p := []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(payload)), 0}
	return append(p, payload...)
}

// Sessions are listed while open and reported closed, not expired, when
// the console closes them.
func TestSessionTracking(t *testing.T) {
	t.Parallel()
	ipmitool := clienttest.Tool(t, "ipmitool")
	obs := &eventObserver{}
	e := serveTest(t, newFake("tracked"), Config{Observer: obs})
	for range 2 {
		if out, err := exec.Command(ipmitool, append(lanplus(e.port(), "password"), "power", "status")...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	if n := len(e.Sessions()); n != 0 {
		t.Fatalf("%d sessions listed after ipmitool closed them", n)
	}
	if e.Requests() == 0 {
		t.Fatal("no requests counted")
	}
	if got := obs.events(); got["opened"] != 2 || got["closed"] != 2 || got["expired"] != 0 {
		t.Fatalf("session events %v", got)
	}
}

// Sessions of both protocols idle past the timeout end, counted as
// expired rather than closed, and their requests go unanswered; a session
// in use meanwhile stays. The endpoint's clock moves instead of the test
// waiting the timeout out.
func TestIdleSessionsExpire(t *testing.T) {
	t.Parallel()
	for _, intf := range []client.Interface{client.InterfaceLanplus, client.InterfaceLan} {
		t.Run(string(intf), func(t *testing.T) {
			t.Parallel()
			clk := clienttest.NewClock()
			obs := &eventObserver{}
			e := serveAt(t, clk, newFake("idle"), Config{SessionTimeout: time.Minute, Observer: obs})
			port := e.Addr().(*net.UDPAddr).Port
			idle, busy := dialClient(t, port, intf), dialClient(t, port, intf)
			ctx := context.Background()
			clk.Advance(40 * time.Second)
			if _, err := busy.GetChassisStatus(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(40 * time.Second)
			clienttest.Eventually(t, "the idle session expired", func() bool { return obs.events()["expired"] == 1 })
			if n := len(e.Sessions()); n != 1 {
				t.Fatalf("%d sessions listed, want the busy one", n)
			}
			if _, err := busy.GetChassisStatus(ctx); err != nil {
				t.Fatalf("the busy session: %v", err)
			}
			idle.WithTimeout(100 * time.Millisecond).WithRetry(0)
			if _, err := idle.GetChassisStatus(ctx); err == nil {
				t.Fatal("the expired session still answers")
			}
		})
	}
}

type eventObserver struct {
	countingObserver
	mu sync.Mutex
	n  map[string]int
}

func (o *eventObserver) Session(_, event string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[event]++
}

func (o *eventObserver) events() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.n)
}

// The null user (no name, no password) and cipher suite 0 never log in.
func TestNullUserAndSuiteZeroRefused(t *testing.T) {
	t.Parallel()
	ipmitool := clienttest.Tool(t, "ipmitool")
	port := serveTest(t, newFake("null"), Config{}).port()
	for _, args := range [][]string{
		{"-U", "", "-P", ""},
		{"-U", "admin", "-P", "password", "-C", "0"},
	} {
		base := []string{"-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-N", "1", "-R", "1"}
		if out, err := exec.Command(ipmitool, append(append(base, args...), "power", "status")...).CombinedOutput(); err == nil {
			t.Fatalf("%v logged in: %s", args, out)
		}
	}
}
