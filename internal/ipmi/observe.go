package ipmi

import (
	"context"
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
	// Request: one answered request, by command name and completion code
	// (as text, "0xc1").
	Request(command, cc string, d time.Duration)
	// Session: "opened", "closed" (by the console), "expired" (idle) or
	// "refused" (no free slot, or the source is locked out), by endpoint.
	Session(endpoint, event string)
	// AuthFailure: an unknown user or a wrong password, by endpoint.
	AuthFailure(endpoint string)
	// Panic: a handler panicked and was answered with FFh, or handling a
	// datagram panicked and it was dropped.
	Panic()
	// Dropped: a datagram got silence, by reason (the drop* constants of
	// wire.go).
	Dropped(reason string)
	// Replay: an authenticated in-session packet repeated a sequence
	// number already received (§6.12.13) and was refused.
	Replay()
	// Lockout: a source was locked out of an endpoint after failed logins.
	Lockout(endpoint string)
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
	sessions map[sessionKey]*trackedSession
	requests uint64
}

// sessionKey names a session of either protocol: RMCP+ and IPMI 1.5
// session IDs are drawn separately and may coincide.
type sessionKey struct {
	id  uint32
	v15 bool
}

type trackedSession struct {
	info    SessionInfo
	closing bool // Close Session was answered: removal is a close, not an expiry
}

func newTracker(endpoint string, obs Observer) *tracker {
	return &tracker{endpoint: endpoint, obs: obs, sessions: map[sessionKey]*trackedSession{}}
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
			t.obs.Request(commandName(hctx), ccText[cc], time.Since(start))
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
	k, priv, ok := sessionOf(hctx)
	if !ok {
		return nil
	}
	ts, ok := t.sessions[k]
	if !ok {
		ts = &trackedSession{info: sessionInfo(hctx)}
		t.sessions[k] = ts
		if t.obs != nil {
			t.obs.Session(t.endpoint, "opened")
		}
	}
	ts.info.Requests++
	ts.info.LastActivity = time.Now()
	ts.info.Privilege = privilegeName(priv)
	if hctx.Command == types.CommandCloseSession {
		ts.closing = true
	}
	return ts
}

// sessionOf names the session a request came in, if any, and its
// privilege now.
func sessionOf(hctx *handlers.HandlerContext) (sessionKey, bmc.PrivilegeLevel, bool) {
	switch {
	case hctx == nil:
	case hctx.Session != nil:
		return sessionKey{id: hctx.Session.BMCID}, hctx.Session.PrivilegeLevel, true
	case hctx.V15Session != nil:
		return sessionKey{id: hctx.V15Session.SessionID, v15: true}, hctx.V15Session.PrivilegeLevel, true
	}
	return sessionKey{}, 0, false
}

// sessionInfo describes a session on its first request.
func sessionInfo(hctx *handlers.HandlerContext) SessionInfo {
	var info SessionInfo
	var user *bmc.User
	if s := hctx.Session; s != nil {
		info.Opened, info.Client, user = s.CreatedAt, clientAddr(hctx), s.User
	} else if s := hctx.V15Session; s != nil {
		info.Opened, user = s.CreatedAt, s.User
	}
	if user != nil {
		info.User = user.Name
	}
	return info
}

// removed is told that a session left, by Close Session or by going idle
// past the inactivity timeout.
func (t *tracker) removed(k sessionKey) {
	t.mu.Lock()
	ts, ok := t.sessions[k]
	delete(t.sessions, k)
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
