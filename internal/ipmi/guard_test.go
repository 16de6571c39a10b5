package ipmi

import (
	"context"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"io"
	"log/slog"
	"maps"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestGuardLockout(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	g := NewGuard(GuardConfig{Failures: 3, Window: time.Minute, Lockout: 5 * time.Minute, Now: clk.now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	a := &net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}
	other := &net.UDPAddr{IP: net.ParseIP("192.0.2.8"), Port: 40000}
	// Abandoned handshakes count as failures.
	b := &net.UDPAddr{IP: net.ParseIP("192.0.2.9"), Port: 1}
	reported := 0
	for i := range 3 {
		g.rakp2Sent(&net.UDPAddr{IP: b.IP, Port: 1000 + i}, "bmc", func() { reported++ })
	}
	g.rakp2Sent(&net.UDPAddr{IP: b.IP, Port: 2000}, "bmc", nil)
	g.rakp3Seen(&net.UDPAddr{IP: b.IP, Port: 2000})
	clk.t = clk.t.Add(abandonAfter)
	if ok, _ := g.allowSetup(b, "bmc"); ok || reported != 3 {
		t.Fatalf("three abandoned handshakes: allowed %v, reported %d", ok, reported)
	}
	clk.t = clk.t.Add(6 * time.Minute)

	steps := []struct {
		advance time.Duration
		fail    bool
		allowed bool
	}{
		{0, true, true},
		{30 * time.Second, true, true},
		{40 * time.Second, true, true}, // the first failure left the window
		{time.Second, true, false},     // third within a minute: locked
		{4 * time.Minute, false, false},
		{time.Minute + time.Second, false, true}, // lockout over
	}
	for i, s := range steps {
		clk.t = clk.t.Add(s.advance)
		if s.fail {
			g.failed(a, "bmc")
		}
		if ok, _ := g.allowSetup(a, "bmc"); ok != s.allowed {
			t.Fatalf("step %d: allowed = %v, want %v", i, ok, s.allowed)
		}
		if ok, _ := g.allowSetup(other, "bmc"); !ok {
			t.Fatalf("step %d: another source was locked out", i)
		}
		if ok, _ := g.allowSetup(a, "other-bmc"); !ok {
			t.Fatalf("step %d: the source was locked out of another BMC", i)
		}
	}
}

func TestGuardRate(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	g := NewGuard(GuardConfig{SetupRate: 10, Now: clk.now})
	a := &net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}
	allowed := 0
	for range 100 {
		if ok, _ := g.allowSetup(a, "bmc"); ok {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("burst allowed %d, want 20", allowed)
	}
	clk.t = clk.t.Add(time.Second)
	allowed = 0
	for range 100 {
		if ok, _ := g.allowSetup(a, "bmc"); ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("after a second allowed %d, want 10", allowed)
	}
	var nilGuard *Guard
	if ok, _ := nilGuard.allowSetup(a, "bmc"); !ok {
		t.Fatal("a nil guard refused")
	}
}

func TestIsSetup(t *testing.T) {
	rmcp := func(authType, payload byte) []byte {
		return append([]byte{0x06, 0x00, 0xff, 0x07, authType, payload}, make([]byte, 40)...)
	}
	v15 := func(cmd byte) []byte {
		p := []byte{0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x20, 0x06 << 2, 0xd8, 0x81, 0x00, cmd, 0x00}
		return p
	}
	tests := []struct {
		name string
		p    []byte
		want bool
	}{
		{"open session", rmcp(0x06, 0x10), true},
		{"rakp1", rmcp(0x06, 0x12), true},
		{"rakp3", rmcp(0x06, 0x14), true},
		{"in-session ipmi", rmcp(0x06, 0xc0), false},
		{"get session challenge", v15(0x39), true},
		{"activate session", v15(0x3a), true},
		{"auth capabilities", v15(0x38), false},
		{"asf ping", []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x00, 0x00, 0x00}, false},
		{"short", []byte{0x06, 0x00}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isSetup(tt.p); got != tt.want {
				t.Fatalf("isSetup = %v", got)
			}
		})
	}
}

// guardedEndpoint starts an endpoint over a Fake with a guard.
func guardedEndpoint(t *testing.T, g *Guard, obs Observer) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &machinetest.Fake{ID: machine.Identity{Name: "guarded", UUID: testUUID}}
	e, err := Listen(ctx, m, Config{Address: "127.0.0.1:0", Username: "admin", Password: "password", Guard: g, Observer: obs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.Serve(ctx) }()
	t.Cleanup(func() { cancel(); _ = e.Close() })
	return e.Addr().(*net.UDPAddr).Port
}

type countingObserver struct{ auth, refused atomic.Int64 }

func (o *countingObserver) Request(string, uint8, time.Duration) {}
func (o *countingObserver) Session(_, event string) {
	if event == "refused" {
		o.refused.Add(1)
	}
}
func (o *countingObserver) AuthFailure(string) { o.auth.Add(1) }
func (o *countingObserver) Panic()             {}

// A guesser is locked out after repeated wrong passwords, even with the
// right one, until the lockout ends; every failure is counted.
func TestLockoutWithIpmitool(t *testing.T) {
	ipmitool := clienttest.Tool(t, "ipmitool")
	obs := &countingObserver{}
	// The lockout outlasts ipmitool's own retries (it restarts the whole
	// session setup up to four times), or the "locked" attempt would win.
	const lockout = 8 * time.Second
	g := NewGuard(GuardConfig{Failures: 3, Window: time.Minute, Lockout: lockout, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	port := strconv.Itoa(guardedEndpoint(t, g, obs))
	try := func(password string) error {
		out, err := exec.Command(ipmitool, "-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", password, "-N", "1", "-R", "1", "power", "status").CombinedOutput()
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
	// ipmitool gives up after RAKP 2 without a word: the handshakes count
	// as failed once abandoned, when the source next asks for a session.
	time.Sleep(abandonAfter)
	locked := time.Now()
	if err := try("password"); err == nil {
		t.Fatal("a locked-out source logged in")
	}
	if obs.auth.Load() < 3 {
		t.Fatalf("%d authentication failures counted", obs.auth.Load())
	}
	if obs.refused.Load() == 0 {
		t.Fatal("dropped setup packets not counted")
	}
	time.Sleep(time.Until(locked.Add(lockout)))
	if err := try("password"); err != nil {
		t.Fatalf("still locked out after the lockout: %v", err)
	}
}

// A flood of half-open sessions (Open Session and RAKP 1, never RAKP 3)
// from one source does not keep a console elsewhere from logging in.
func TestHalfOpenFlood(t *testing.T) {
	ipmitool := clienttest.Tool(t, "ipmitool")
	g := NewGuard(DefaultGuard)
	port := guardedEndpoint(t, g, nil)
	flood, err := net.ListenPacket("udp", "127.0.0.9:0")
	if err != nil {
		t.Skipf("no 127.0.0.9 here: %v", err)
	}
	defer flood.Close()
	bmc := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
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
		out, err := exec.Command(ipmitool, "-I", "lanplus", "-H", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "admin", "-P", "password", "-N", "1", "-R", "2", "power", "status").CombinedOutput()
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
	ipmitool := clienttest.Tool(t, "ipmitool")
	obs := &eventObserver{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &machinetest.Fake{ID: machine.Identity{Name: "tracked", UUID: testUUID}}
	e, err := Listen(ctx, m, Config{Address: "127.0.0.1:0", Username: "admin", Password: "password", Observer: obs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.Serve(ctx) }()
	defer e.Close()
	port := strconv.Itoa(e.Addr().(*net.UDPAddr).Port)
	for range 2 {
		if out, err := exec.Command(ipmitool, "-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "power", "status").CombinedOutput(); err != nil {
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
	ipmitool := clienttest.Tool(t, "ipmitool")
	port := strconv.Itoa(guardedEndpoint(t, nil, nil))
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
