package guard

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
)

func TestGuardLockout(t *testing.T) {
	t.Parallel()
	clk := clienttest.NewClock()
	g := New(Config{Failures: 3, Window: time.Minute, Lockout: 5 * time.Minute, Now: clk.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	a, other := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.8")
	steps := []struct {
		advance time.Duration
		fail    bool
		locks   bool
		allowed bool
	}{
		{0, true, false, true},
		{30 * time.Second, true, false, true},
		{40 * time.Second, true, false, true}, // the first failure left the window
		{time.Second, true, true, false},      // third within a minute: locked
		{4 * time.Minute, false, false, false},
		{time.Minute + time.Second, false, false, true}, // lockout over
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if s.fail {
			if locked := g.Failed(a, "bmc"); locked != s.locks {
				t.Fatalf("step %d: failed() locked = %v", i, locked)
			}
		}
		if ok, _ := g.AllowSetup(a, "bmc"); ok != s.allowed {
			t.Fatalf("step %d: allowed = %v, want %v", i, ok, s.allowed)
		}
		if ok, _ := g.AllowSetup(other, "bmc"); !ok {
			t.Fatalf("step %d: another source was locked out", i)
		}
		if ok, _ := g.AllowSetup(a, "other-bmc"); !ok {
			t.Fatalf("step %d: the source was locked out of another BMC", i)
		}
	}
}

func TestGuardRate(t *testing.T) {
	t.Parallel()
	clk := clienttest.NewClock()
	g := New(Config{SetupRate: 10, Now: clk.Now})
	a := netip.MustParseAddr("192.0.2.7")
	allowed := 0
	for range 100 {
		if ok, _ := g.AllowSetup(a, "bmc"); ok {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("burst allowed %d, want 20", allowed)
	}
	clk.Advance(time.Second)
	allowed = 0
	for range 100 {
		if ok, _ := g.AllowSetup(a, "bmc"); ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("after a second allowed %d, want 10", allowed)
	}
	var nilGuard *Guard
	if ok, _ := nilGuard.AllowSetup(a, "bmc"); !ok || nilGuard.Failed(a, "bmc") {
		t.Fatal("a nil guard guarded")
	}
}

// Forged sources cost nothing: however many there are, the guard's tables
// stay bounded, and a real guesser's lockout survives the churn.
func TestGuardBounded(t *testing.T) {
	t.Parallel()
	g := New(Config{Failures: 1, Window: time.Minute, Lockout: time.Hour, SetupRate: 100, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	guesser := netip.MustParseAddr("10.9.9.9")
	g.Failed(guesser, "bmc")
	for i := range 5 * MaxSources {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.AllowSetup(ip, "bmc")
	}
	if n := g.Size(); n > 2*MaxSources {
		t.Fatalf("%d entries kept", n)
	}
	if ok, _ := g.AllowSetup(guesser, "bmc"); ok {
		t.Fatal("the lockout was forgotten")
	}
}

// Source files IPv6 sources by /64 and IPv4 ones (mapped or not) by
// address: what the guard and Redfish's connection cap both key on.
func TestSourceGrouping(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::"},
	} {
		if got := Source(netip.MustParseAddr(c.in)); got.String() != c.want {
			t.Errorf("Source(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
