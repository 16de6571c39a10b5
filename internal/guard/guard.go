// Package guard owns the per-source defences against guessing and floods
// that IPMI and Redfish share: a source address that failed to log in to a
// BMC too often is locked out of it (by either protocol: they check the
// same password), and session setups are rate-limited per source. It keeps
// state per source and BMC in bounded tables, and counts only failures the
// caller has proved the source made.
package guard

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Config tunes the protections every endpoint of a bridge shares. IPMI
// endpoints sit on management networks where password guessing and session
// floods happen; IPMI 2.0 itself offers no defence against either.
type Config struct {
	// Failures failed authentications from one source address within
	// Window lock that source out of session setup for Lockout. Zero
	// Failures turns the lockout off.
	Failures int
	Window   time.Duration
	Lockout  time.Duration
	// SetupRate is how many session-setup packets (Open Session, RAKP 1,
	// RAKP 3, Get Session Challenge, Activate Session) one source may send
	// per second, with bursts of twice that; the rest are dropped. Zero
	// turns the limit off.
	SetupRate float64
	Log       *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Default is what a bridge uses unless configured otherwise: five
// failures a minute lock a source out for five minutes; a hundred setup
// packets a second (an ipmitool login takes three; scripts run dozens of
// ipmitool processes a second).
var Default = Config{Failures: 5, Window: time.Minute, Lockout: 5 * time.Minute, SetupRate: 100}

// MaxSources bounds each of the guard's tables. Source addresses cost
// nothing to forge, so a table keyed by them must not grow with them: at
// about 150 bytes an entry, each table stays under 3 MB.
const MaxSources = 16384

// Guard is the per-source state behind lockout and rate limiting. It is
// shared by all endpoints but keeps each source's state per endpoint: an
// Ironic conductor with one node's password wrong must not be locked out
// of every other node's BMC. It only counts failures that the endpoints
// have proved came from the source (see handshakes): a forged datagram
// can be throttled, never counted against its claimed sender.
type Guard struct {
	cfg Config

	mu      sync.Mutex
	buckets map[sourceKey]*bucket
	records map[sourceKey]*record
}

type sourceKey struct {
	ip       netip.Addr
	endpoint string
}

// Source is what a source address is filed under: the address itself,
// or for IPv6 its /64, the block one host can draw addresses from at
// will. Everything that keeps state or quotas per source (this guard,
// Redfish's per-source connection cap) groups sources this way, so that a
// host cannot multiply its share by rotating addresses within its /64.
func Source(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// key is where the guard files ip's state for endpoint.
func key(ip netip.Addr, endpoint string) sourceKey {
	return sourceKey{Source(ip), endpoint}
}

// bucket is a source's setup-rate token bucket.
type bucket struct {
	tokens   float64
	refilled time.Time
}

// record is a source's proven failures and lockout.
type record struct {
	failures    []time.Time
	lockedUntil time.Time
}

// New returns a guard; a nil *Guard guards nothing.
func New(cfg Config) *Guard {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Guard{cfg: cfg, buckets: map[sourceKey]*bucket{}, records: map[sourceKey]*record{}}
}

// AllowSetup reports whether a session-setup packet from ip to endpoint may
// be served: the source is not locked out and within its rate.
func (g *Guard) AllowSetup(ip netip.Addr, endpoint string) (ok bool, why string) {
	if g == nil {
		return true, ""
	}
	k := key(ip, endpoint)
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.records[k]; r != nil && now.Before(r.lockedUntil) {
		return false, "locked out"
	}
	if g.cfg.SetupRate <= 0 {
		return true, ""
	}
	b := g.buckets[k]
	if b == nil {
		trim(g.buckets)
		b = &bucket{tokens: 2 * g.cfg.SetupRate, refilled: now}
		g.buckets[k] = b
	}
	b.tokens = min(2*g.cfg.SetupRate, b.tokens+now.Sub(b.refilled).Seconds()*g.cfg.SetupRate)
	b.refilled = now
	if b.tokens < 1 {
		return false, "rate limited"
	}
	b.tokens--
	return true, ""
}

// Locked reports how much longer ip is locked out of endpoint; 0 when it
// is not.
func (g *Guard) Locked(ip netip.Addr, endpoint string) time.Duration {
	if g == nil {
		return 0
	}
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.records[key(ip, endpoint)]; r != nil && now.Before(r.lockedUntil) {
		return r.lockedUntil.Sub(now)
	}
	return 0
}

// LockedAny reports how much longer ip is locked out of any of endpoints
// (the longest wait); 0 when it is locked out of none.
func (g *Guard) LockedAny(ip netip.Addr, endpoints []string) time.Duration {
	if g == nil {
		return 0
	}
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var wait time.Duration
	for _, e := range endpoints {
		if r := g.records[key(ip, e)]; r != nil && now.Before(r.lockedUntil) {
			wait = max(wait, r.lockedUntil.Sub(now))
		}
	}
	return wait
}

// Failures is the configured number of failures within the window that
// lock a source out (0: lockout off).
func (g *Guard) Failures() int {
	if g == nil {
		return 0
	}
	return g.cfg.Failures
}

// Failed records a failed authentication that ip has proved it made, and
// reports whether it locked the source out.
func (g *Guard) Failed(ip netip.Addr, endpoint string) (locked bool) {
	if g == nil {
		return false
	}
	return g.FailedAt(ip, endpoint, g.cfg.Failures)
}

// FailedAt is Failed with its own threshold: failures failures within the
// window lock ip out of endpoint (0 or less: never). Redfish uses it for
// the per-source key that counts failures on every BMC together, which
// must allow more than one BMC's share.
func (g *Guard) FailedAt(ip netip.Addr, endpoint string, failures int) (locked bool) {
	if g == nil || g.cfg.Failures <= 0 || failures <= 0 {
		return false
	}
	k := key(ip, endpoint)
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.records[k]
	if r == nil {
		g.trimRecords(now)
		r = &record{}
		g.records[k] = r
	}
	recent := r.failures[:0]
	for _, t := range r.failures {
		if now.Sub(t) < g.cfg.Window {
			recent = append(recent, t)
		}
	}
	r.failures = append(recent, now)
	if len(r.failures) < failures || now.Before(r.lockedUntil) {
		return false
	}
	r.lockedUntil = now.Add(g.cfg.Lockout)
	r.failures = nil
	// The source and the endpoint, never what was tried.
	g.cfg.Log.Info("ipmi source locked out after failed logins", "source", ip.String(), "bmc", endpoint,
		"failures", failures, "window", g.cfg.Window, "for", g.cfg.Lockout)
	return true
}

// trimRecords makes room for one more record: first by forgetting sources
// whose failures and lockout are over, then, if every entry is live (only
// a guesser with that many real addresses gets here), the oldest quarter
// of whatever the map yields first.
func (g *Guard) trimRecords(now time.Time) {
	if len(g.records) < MaxSources {
		return
	}
	for k, r := range g.records {
		stale := len(r.failures) == 0 || now.Sub(r.failures[len(r.failures)-1]) >= g.cfg.Window
		if stale && !now.Before(r.lockedUntil) {
			delete(g.records, k)
		}
	}
	trim(g.records)
}

// trim drops a quarter of a full map's entries, whichever the map yields
// first. For rate buckets that loses nothing worth keeping: a dropped
// bucket starts full again, which a forged source gets anyway by forging
// another address.
func trim[V any](m map[sourceKey]V) {
	if len(m) < MaxSources {
		return
	}
	n := len(m) / 4
	for k := range m {
		if n == 0 {
			return
		}
		delete(m, k)
		n--
	}
}

// Size reports the number of entries kept, for tests of the bound.
func (g *Guard) Size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.buckets) + len(g.records)
}
