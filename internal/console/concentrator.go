package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
)

// Config tunes a Concentrator. Zero fields take the defaults in
// DefaultConfig.
type Config struct {
	// BufferSize is how many bytes of each VM's output are kept.
	BufferSize int
	// SubscriberQueue is how many chunks a reader may fall behind before
	// it loses output.
	SubscriberQueue int
	// IdentifyTimeout bounds the time from accept to knowing the VM. An
	// ESXi host answers our questions at once; a connection that has not
	// identified by then is not one.
	IdentifyTimeout time.Duration
	// WriteTimeout bounds a write to a host (keystrokes, replies).
	WriteTimeout time.Duration
	// MigrationTimeout bounds a vMotion from VMOTION-GOAHEAD to its
	// COMPLETE or ABORT; past it held keystrokes go to the current host.
	MigrationTimeout time.Duration
	// MaxSubnegotiation bounds one IAC SB ... IAC SE.
	MaxSubnegotiation int
	// MaxUnidentifiedBytes bounds the output kept from a connection that
	// has not yet said which VM it is.
	MaxUnidentifiedBytes int
	// MaxConnections and MaxConnectionsPerSource bound open connections.
	// An ESXi host opens one per VM serial port it runs, so the
	// per-source bound must exceed the VMs of the largest host.
	MaxConnections          int
	MaxConnectionsPerSource int
	// AllowedSources, when not empty, are the networks host connections
	// may come from (the ESXi hosts' management networks): a connection
	// from elsewhere is closed at accept, before anything is read, and
	// counted in Stats.Refused. A VM is named by UUIDs, which are no
	// secret, so where a connection comes from is what keeps a stranger
	// from claiming a VM whose host is not connected. An IPv4-mapped IPv6
	// source (on a dual-stack listener) or prefix is matched as IPv4.
	// Empty allows every source.
	AllowedSources []netip.Prefix
	// MaxConsoles bounds the consoles kept. A new VM past it replaces the
	// console disconnected for longest, or is refused if all are
	// connected.
	MaxConsoles int
	// CommandRate and CommandBurst bound the telnet commands one
	// connection may send (a token bucket): a host negotiates a dozen at
	// connect and a few per vMotion; a flood is closed.
	CommandRate  float64
	CommandBurst int
	// Accept decides whether a VM the concentrator has no console for gets
	// one; an error refuses it and closes the connection. Nil accepts
	// every VM.
	Accept func(Identity) error
	// Persist, if set, is asked once per new console for a writer that
	// receives its output (a file, say). It is fed as a reader is, so a
	// slow writer loses output rather than slowing the VM. A writer that
	// is an io.Closer is closed with the console.
	Persist func(Identity) (io.Writer, error)
	// OnEvent, if set, receives each console's connection events, in
	// order for each console. It must return promptly.
	OnEvent func(Event)
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig holds the defaults of Config's zero fields.
var DefaultConfig = Config{
	BufferSize:              256 << 10,
	SubscriberQueue:         256,
	IdentifyTimeout:         10 * time.Second,
	WriteTimeout:            5 * time.Second,
	MigrationTimeout:        5 * time.Minute,
	MaxSubnegotiation:       1024,
	MaxUnidentifiedBytes:    64 << 10,
	MaxConnections:          4096,
	MaxConnectionsPerSource: 1024,
	MaxConsoles:             4096,
	CommandRate:             20,
	CommandBurst:            1000,
}

// Stats are a concentrator's counters.
type Stats struct {
	Accepted       uint64 // connections accepted
	Refused        uint64 // closed at accept: over a connection limit, or from a source not allowed
	Unidentified   uint64 // closed for not naming a VM in time
	ProtocolErrors uint64 // closed for a malformed or hostile stream
	Rejected       uint64 // VMs refused by Accept or the console limit
	Active         int64  // connections open now
	Consoles       int    // consoles kept
}

// Concentrator accepts ESXi hosts' serial port connections and keeps a
// Console per VM.
type Concentrator struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	consoles   map[*Console]struct{}
	byInstance map[string]*Console
	byBIOS     map[string]*Console
	migrations map[string]*migration
	perSource  map[string]int
	open       int
	closed     bool
	// persisting counts the goroutines feeding Persist's writers, which
	// Serve waits for: a log is complete and closed when it returns.
	persisting sync.WaitGroup

	accepted, refused, unidentified, protocolErrors, rejected atomic.Uint64
}

// New returns a concentrator; Serve runs it.
func New(cfg Config) *Concentrator {
	cfg = withDefaults(cfg)
	return &Concentrator{
		cfg:        cfg,
		log:        cfg.Log,
		consoles:   make(map[*Console]struct{}),
		byInstance: make(map[string]*Console),
		byBIOS:     make(map[string]*Console),
		migrations: make(map[string]*migration),
		perSource:  make(map[string]int),
	}
}

func withDefaults(cfg Config) Config {
	d := DefaultConfig
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pickD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&cfg.BufferSize, d.BufferSize)
	pick(&cfg.SubscriberQueue, d.SubscriberQueue)
	pick(&cfg.MaxSubnegotiation, d.MaxSubnegotiation)
	pick(&cfg.MaxUnidentifiedBytes, d.MaxUnidentifiedBytes)
	pick(&cfg.MaxConnections, d.MaxConnections)
	pick(&cfg.MaxConnectionsPerSource, d.MaxConnectionsPerSource)
	pick(&cfg.MaxConsoles, d.MaxConsoles)
	pick(&cfg.CommandBurst, d.CommandBurst)
	pickD(&cfg.IdentifyTimeout, d.IdentifyTimeout)
	pickD(&cfg.WriteTimeout, d.WriteTimeout)
	pickD(&cfg.MigrationTimeout, d.MigrationTimeout)
	if cfg.CommandRate <= 0 {
		cfg.CommandRate = d.CommandRate
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.AllowedSources = unmapPrefixes(cfg.AllowedSources)
	return cfg
}

// unmapPrefixes returns a copy of ps, the caller's to change, with
// IPv4-mapped IPv6 prefixes as the IPv4 prefixes they hold, since
// sources are unmapped before matching. An invalid prefix is kept: it
// matches nothing, so a mistake refuses rather than allows.
func unmapPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out[i] = p
	}
	return out
}

func (cc *Concentrator) now() time.Time { return cc.cfg.Now() }

// Serve accepts host connections on ln until ctx ends or ln fails, then
// closes ln, every connection and every console (their output stays
// readable through Snapshot), and returns once Persist's writers are
// closed. The caller owns the address: ESXi hosts
// reach it through the URI in each serial port's vSPC setting.
func (cc *Concentrator) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	err := cc.acceptLoop(ctx, ln, &wg)
	cancel()
	wg.Wait()
	cc.closeAll()
	cc.persisting.Wait()
	return err
}

func (cc *Concentrator) acceptLoop(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) error {
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		switch {
		case ctx.Err() != nil:
			if conn != nil {
				conn.Close()
			}
			return nil
		case errors.Is(err, net.ErrClosed):
			return err
		case err != nil:
			// Out of descriptors and the like: the listener still works,
			// and spinning on it would burn a core.
			cc.log.Warn("console: accept failed", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		release, ok := cc.admit(conn)
		if !ok {
			conn.Close()
			continue
		}
		wg.Go(func() {
			defer release()
			cc.handle(ctx, conn)
		})
	}
}

// admit applies AllowedSources and the connection limits before anything
// is read: a source opening connections in a loop costs an accept and a
// close each.
func (cc *Concentrator) admit(conn net.Conn) (func(), bool) {
	if !cc.allowed(conn.RemoteAddr()) {
		cc.refused.Add(1)
		cc.log.Debug("console: connection refused: source not allowed", "remote", conn.RemoteAddr().String())
		return nil, false
	}
	src := sourceOf(conn.RemoteAddr())
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.open >= cc.cfg.MaxConnections || cc.perSource[src] >= cc.cfg.MaxConnectionsPerSource {
		cc.refused.Add(1)
		cc.log.Debug("console: connection refused: over the connection limit", "remote", conn.RemoteAddr().String())
		return nil, false
	}
	cc.accepted.Add(1)
	cc.open++
	cc.perSource[src]++
	return func() {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		cc.open--
		if cc.perSource[src]--; cc.perSource[src] <= 0 {
			delete(cc.perSource, src)
		}
	}, true
}

// allowed reports whether AllowedSources let in a connection from a. A
// remote address that is no IP address (a pipe's) is let in only when
// every source is.
func (cc *Concentrator) allowed(a net.Addr) bool {
	if len(cc.cfg.AllowedSources) == 0 {
		return true
	}
	var ip netip.Addr
	if t, ok := a.(*net.TCPAddr); ok {
		ip = t.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	}
	// A zoned address matches no prefix (netip.Prefix.Contains).
	ip = ip.Unmap().WithZone("")
	for _, p := range cc.cfg.AllowedSources {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// sourceOf is the source a remote address counts against: its host, not
// its ephemeral port, grouped as guard.Source groups every per-source
// quota of the bridge (an IPv6 host by its /64).
func sourceOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return guard.Source(t.AddrPort().Addr()).String()
	}
	return a.String()
}

func (cc *Concentrator) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s := cc.newSession(conn, conn, conn.RemoteAddr().String())
	defer s.end()
	err := s.run(conn)
	switch {
	case errors.Is(err, errUnidentified):
		cc.unidentified.Add(1)
		cc.log.Warn("console: host connection closed: no VM identified", "remote", s.hc.remote, "err", err)
	case errors.Is(err, errProtocol):
		cc.protocolErrors.Add(1)
		cc.log.Warn("console: host connection closed: protocol error", "remote", s.hc.remote, "vm", s.id.Name, "err", err)
	case errors.Is(err, errRejected):
		cc.log.Info("console: host connection refused", "remote", s.hc.remote, "vm", s.id.Name, "err", err)
	case err != nil && ctx.Err() == nil:
		cc.log.Debug("console: host connection ended", "remote", s.hc.remote, "vm", s.id.Name, "err", err)
	}
}

// emit hands ev to OnEvent.
func (cc *Concentrator) emit(ev Event) {
	if cc.cfg.OnEvent != nil {
		cc.cfg.OnEvent(ev)
	}
}

// Stats returns the concentrator's counters.
func (cc *Concentrator) Stats() Stats {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return Stats{
		Accepted:       cc.accepted.Load(),
		Refused:        cc.refused.Load(),
		Unidentified:   cc.unidentified.Load(),
		ProtocolErrors: cc.protocolErrors.Load(),
		Rejected:       cc.rejected.Load(),
		Active:         int64(cc.open),
		Consoles:       len(cc.consoles),
	}
}

// errorf wraps a cause with one of the classes handle counts.
func errorf(class error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", class, fmt.Sprintf(format, args...))
}
