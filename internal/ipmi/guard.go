package ipmi

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// GuardConfig tunes the protections every endpoint of a bridge shares. IPMI
// endpoints sit on management networks where password guessing and session
// floods happen; IPMI 2.0 itself offers no defence against either.
type GuardConfig struct {
	// Failures failed authentications from one source address within
	// Window lock that source out of session setup for Lockout. Zero
	// Failures turns the lockout off.
	Failures int
	Window   time.Duration
	Lockout  time.Duration
	// SetupRate is how many session-setup packets (Open Session, RAKP 1,
	// RAKP 3, Get Session Challenge, Activate Session) one source may send
	// per second, with bursts of twice that; the rest are dropped. It
	// bounds half-open session floods, whose pending sessions go-ipmi
	// evicts oldest first, so a console from elsewhere still logs in. Zero
	// turns the limit off.
	SetupRate float64
	Log       *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultGuard is what a bridge uses unless configured otherwise: five
// failures a minute lock a source out for five minutes; a hundred setup
// packets a second (an ipmitool login takes three; scripts run dozens of
// ipmitool processes a second, and a half-open flood is stopped by the
// lockout, abandoned handshakes counting as failures).
var DefaultGuard = GuardConfig{Failures: 5, Window: time.Minute, Lockout: 5 * time.Minute, SetupRate: 100}

// Guard is the per-source state behind lockout and rate limiting. It is
// shared by all endpoints but keeps each source's state per endpoint: an
// Ironic conductor with one node's password wrong must not be locked out
// of every other node's BMC.
type Guard struct {
	cfg GuardConfig

	mu      sync.Mutex
	sources map[sourceKey]*source
	swept   time.Time
	// handshakes are RAKP 2 messages sent and not yet answered with RAKP 3,
	// by console address. ipmitool, FreeIPMI and pyghmi check RAKP 2's key
	// exchange code and, with a wrong password, give up without sending
	// RAKP 3: to a BMC a wrong password looks like an abandoned handshake,
	// and so does a half-open flood. Each one abandoned for abandonAfter
	// counts as a failed authentication.
	handshakes map[string]handshake
}

type handshake struct {
	at       time.Time
	ip       netip.Addr
	endpoint string
	report   func()
}

// abandonAfter is how long a console may take between RAKP 2 and RAKP 3;
// ipmitool answers in microseconds and retries the whole exchange after
// its timeout.
const abandonAfter = 3 * time.Second

type sourceKey struct {
	ip       netip.Addr
	endpoint string
}

type source struct {
	failures    []time.Time
	lockedUntil time.Time
	tokens      float64
	refilled    time.Time
}

// NewGuard returns a guard; a nil *Guard guards nothing.
func NewGuard(cfg GuardConfig) *Guard {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Guard{cfg: cfg, sources: map[sourceKey]*source{}, handshakes: map[string]handshake{}}
}

// rakp2Sent notes a successful RAKP 2 to a console; report is called if
// the console never completes the handshake.
func (g *Guard) rakp2Sent(a net.Addr, endpoint string, report func()) {
	if g == nil {
		return
	}
	ip, ok := addrOf(a)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handshakes[a.String()] = handshake{at: g.cfg.Now(), ip: ip, endpoint: endpoint, report: report}
}

// rakp3Seen notes that a console answered: its handshake is no longer
// pending, whatever the outcome.
func (g *Guard) rakp3Seen(a net.Addr) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.handshakes, a.String())
}

// abandonedLocked turns handshakes pending too long into failures.
func (g *Guard) abandonedLocked(now time.Time) {
	for k, h := range g.handshakes {
		if now.Sub(h.at) < abandonAfter {
			continue
		}
		delete(g.handshakes, k)
		if h.report != nil {
			h.report()
		}
		g.failedLocked(h.ip, h.endpoint, now)
	}
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ip, ok := netip.AddrFromSlice(u.IP)
		return ip.Unmap(), ok
	}
	return netip.Addr{}, false
}

// allowSetup reports whether a session-setup packet from a to endpoint may
// be served: the source is not locked out and within its rate.
func (g *Guard) allowSetup(a net.Addr, endpoint string) (ok bool, why string) {
	if g == nil {
		return true, ""
	}
	ip, valid := addrOf(a)
	if !valid {
		return true, ""
	}
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.abandonedLocked(now)
	g.sweepLocked(now)
	s := g.source(ip, endpoint, now)
	if now.Before(s.lockedUntil) {
		return false, "locked out"
	}
	if g.cfg.SetupRate <= 0 {
		return true, ""
	}
	s.tokens = min(2*g.cfg.SetupRate, s.tokens+now.Sub(s.refilled).Seconds()*g.cfg.SetupRate)
	s.refilled = now
	if s.tokens < 1 {
		return false, "rate limited"
	}
	s.tokens--
	return true, ""
}

// failed records a failed authentication from a, and locks the source out
// once it has failed too often.
func (g *Guard) failed(a net.Addr, endpoint string) {
	if g == nil {
		return
	}
	ip, valid := addrOf(a)
	if !valid {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failedLocked(ip, endpoint, g.cfg.Now())
}

func (g *Guard) failedLocked(ip netip.Addr, endpoint string, now time.Time) {
	if g.cfg.Failures <= 0 {
		return
	}
	s := g.source(ip, endpoint, now)
	recent := s.failures[:0]
	for _, t := range s.failures {
		if now.Sub(t) < g.cfg.Window {
			recent = append(recent, t)
		}
	}
	s.failures = append(recent, now)
	if len(s.failures) >= g.cfg.Failures && !now.Before(s.lockedUntil) {
		s.lockedUntil = now.Add(g.cfg.Lockout)
		s.failures = nil
		// The source and the endpoint, never what was tried.
		g.cfg.Log.Warn("ipmi source locked out after failed logins", "source", ip.String(), "bmc", endpoint,
			"failures", g.cfg.Failures, "window", g.cfg.Window, "for", g.cfg.Lockout)
	}
}

func (g *Guard) source(ip netip.Addr, endpoint string, now time.Time) *source {
	k := sourceKey{ip, endpoint}
	s := g.sources[k]
	if s == nil {
		s = &source{tokens: 2 * g.cfg.SetupRate, refilled: now}
		g.sources[k] = s
	}
	return s
}

// sweepLocked forgets idle sources once a minute, so that the map stays
// as small as the set of recent talkers.
func (g *Guard) sweepLocked(now time.Time) {
	if now.Sub(g.swept) < time.Minute {
		return
	}
	g.swept = now
	for k, s := range g.sources {
		idle := now.Sub(s.refilled) > time.Minute && now.After(s.lockedUntil)
		if idle && (len(s.failures) == 0 || now.Sub(s.failures[len(s.failures)-1]) > g.cfg.Window) {
			delete(g.sources, k)
		}
	}
}

// isSetup reports whether a datagram asks to set up a session: RMCP+
// Open Session Request, RAKP 1 or RAKP 3 (payload types 10h, 12h, 14h,
// §13.17-13.22), or an IPMI 1.5 Get Session Challenge or Activate Session
// (sent outside a session, §22.16-22.17).
func isSetup(p []byte) bool {
	if len(p) < 6 || p[0] != 0x06 || p[3]&0x1F != 0x07 {
		return false
	}
	if p[4] == 0x06 {
		switch p[5] & 0x3F {
		case 0x10, 0x12, 0x14:
			return true
		}
		return false
	}
	// IPMI 1.5: session header (auth type, seq, session ID, [auth code],
	// length), then rsAddr, netFn/LUN, checksum, rqAddr, rqSeq, cmd.
	hdr := 4 + 1 + 4 + 4
	if p[4] != 0 {
		hdr += 16
	}
	hdr++ // message length
	if len(p) < hdr+6 {
		return false
	}
	netFn, cmd := p[hdr+1]>>2, p[hdr+5]
	return netFn == 0x06 && (cmd == 0x39 || cmd == 0x3A)
}
