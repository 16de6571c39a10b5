package ipmi

import (
	"context"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Observer receives what an endpoint does, for metrics. Implementations
// must be fast and safe for concurrent use; nothing passed carries a secret.
type Observer interface {
	// Request: one answered request, by command name and completion code.
	Request(command string, cc uint8, d time.Duration)
	// Session: "opened", "closed" (by the console), "expired" (idle) or
	// "refused" (no free slot, or the source is locked out), by endpoint.
	Session(endpoint, event string)
	// AuthFailure: an unknown user or a wrong password, by endpoint.
	AuthFailure(endpoint string)
	// Panic: a handler panicked and was answered with FFh.
	Panic()
}

// SessionInfo describes an open RMCP+ session.
type SessionInfo struct {
	Client       string
	User         string
	Privilege    string
	Opened       time.Time
	LastActivity time.Time
	Requests     uint64
}

// tracker follows the endpoint's sessions from the requests they carry
// (go-ipmi's store does not list them) and counts requests, so that an
// operator sees who is connected and how busy each console is, as the
// seed's per-client session tracking did.
type tracker struct {
	endpoint string
	obs      Observer

	mu       sync.Mutex
	sessions map[uint32]*trackedSession
	requests uint64
}

type trackedSession struct {
	info    SessionInfo
	closing bool // Close Session was answered: removal is a close, not an expiry
}

func newTracker(endpoint string, obs Observer) *tracker {
	return &tracker{endpoint: endpoint, obs: obs, sessions: map[uint32]*trackedSession{}}
}

// middleware counts each request against its session and reports it. The
// session's entry is made before the handler runs: Close Session removes
// the session inside the handler, and the removal hook must find it marked.
func (t *tracker) middleware(next handlers.Handler) handlers.Handler {
	return handlers.HandlerFunc(func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
		start := time.Now()
		ts := t.enter(hctx)
		resp, cc, err := next.Handle(ctx, hctx, req)
		if err != nil && cc == types.CodeOK {
			cc = types.CodeUnspecifiedError
		}
		if t.obs != nil {
			t.obs.Request(commandName(hctx), uint8(cc), time.Since(start))
		}
		if ts != nil && cc != types.CodeOK {
			t.mu.Lock()
			ts.closing = false // a refused Close Session closed nothing
			t.mu.Unlock()
		}
		return resp, cc, err
	})
}

// enter counts a request and returns its session's entry, creating it on
// the session's first request.
func (t *tracker) enter(hctx *handlers.HandlerContext) *trackedSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.requests++
	if hctx == nil || hctx.Session == nil {
		return nil
	}
	s := hctx.Session
	ts, ok := t.sessions[s.BMCID]
	if !ok {
		ts = &trackedSession{info: SessionInfo{Opened: s.CreatedAt, Client: clientAddr(hctx)}}
		if s.User != nil {
			ts.info.User = s.User.Name
		}
		t.sessions[s.BMCID] = ts
		if t.obs != nil {
			t.obs.Session(t.endpoint, "opened")
		}
	}
	ts.info.Requests++
	ts.info.LastActivity = time.Now()
	ts.info.Privilege = privilegeName(s.PrivilegeLevel)
	if hctx.Command == types.CommandCloseSession {
		ts.closing = true
	}
	return ts
}

// removed is wired to the session store: a session left, by Close Session
// or by going idle past the inactivity timeout.
func (t *tracker) removed(id uint32) {
	t.mu.Lock()
	ts, ok := t.sessions[id]
	delete(t.sessions, id)
	t.mu.Unlock()
	if !ok || t.obs == nil {
		return
	}
	if ts.closing {
		t.obs.Session(t.endpoint, "closed")
	} else {
		t.obs.Session(t.endpoint, "expired")
	}
}

func (t *tracker) list() []SessionInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]SessionInfo, 0, len(t.sessions))
	for _, ts := range t.sessions {
		out = append(out, ts.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Opened.Before(out[j].Opened) })
	return out
}

func (t *tracker) count() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.requests
}

func privilegeName(p bmc.PrivilegeLevel) string {
	switch p {
	case bmc.PrivilegeLevelCallback:
		return "callback"
	case bmc.PrivilegeLevelUser:
		return "user"
	case bmc.PrivilegeLevelOperator:
		return "operator"
	case bmc.PrivilegeLevelAdministrator:
		return "administrator"
	}
	return "none"
}

// watchConn wraps the endpoint's socket to see the session-setup answers
// go-ipmi sends (they never pass the handler registry): an Open Session
// Response refused for lack of a slot, and RAKP 2 and RAKP 4 failures, which
// mean an unknown user or a wrong password (IPMI v2.0 §13.20-13.23).
type watchConn struct {
	net.PacketConn
	t     *tracker
	guard *Guard
	log   *slog.Logger
}

// RMCP+ session-setup payload types and the RAKP status codes that mean a
// rejected console (Table 13-15).
const (
	payloadOpenSessionResponse = 0x11
	payloadRAKP2               = 0x13
	payloadRAKP3               = 0x14
	payloadRAKP4               = 0x15
	statusNoResources          = 0x01
	statusUnauthorizedName     = 0x0D
	statusInvalidIntegrity     = 0x0F
)

// ReadFrom drops session-setup packets from sources the guard locks out or
// throttles (silence: an answer could be used to amplify a flood), and sees
// RAKP 3 from consoles: a non-zero status is the console rejecting RAKP 2's
// key exchange code, which is how a wrong password shows when the console
// checks first (ipmitool, FreeIPMI and pyghmi do).
func (c *watchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !isSetup(p[:n]) {
			return n, addr, err
		}
		if ok, why := c.guard.allowSetup(addr, c.t.endpoint); !ok {
			if c.t.obs != nil {
				c.t.obs.Session(c.t.endpoint, "refused")
			}
			c.log.Debug("session setup dropped", "source", addr.String(), "reason", why)
			continue
		}
		if n >= 18 && p[4] == 0x06 && p[5]&0x3F == payloadRAKP3 {
			c.guard.rakp3Seen(addr)
			if p[17] != 0 {
				c.authFailed(addr)
			}
		}
		return n, addr, err
	}
}

func (c *watchConn) authFailed(addr net.Addr) {
	c.reportAuthFailure()
	c.guard.failed(addr, c.t.endpoint)
}

func (c *watchConn) reportAuthFailure() {
	if c.t.obs != nil {
		c.t.obs.AuthFailure(c.t.endpoint)
	}
}

func (c *watchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	// RMCP header (4) + AuthType 06h + payload type + session ID (4) +
	// sequence (4) + length (2) = 16, then the payload: tag, status.
	if len(p) >= 18 && p[3]&0x1F == 0x07 && p[4] == 0x06 {
		status := p[17]
		switch p[5] & 0x3F {
		case payloadOpenSessionResponse:
			if status == statusNoResources && c.t.obs != nil {
				c.t.obs.Session(c.t.endpoint, "refused")
			}
		case payloadRAKP2:
			switch status {
			case 0:
				c.guard.rakp2Sent(addr, c.t.endpoint, c.reportAuthFailure)
			case statusUnauthorizedName:
				c.authFailed(addr)
			}
		case payloadRAKP4:
			if status == statusInvalidIntegrity {
				c.authFailed(addr)
			}
		}
	}
	return c.PacketConn.WriteTo(p, addr)
}
