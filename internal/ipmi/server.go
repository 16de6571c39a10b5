package ipmi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/protocol"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/rawsock"
)

// server owns an endpoint's socket: one goroutine reads every datagram,
// checks it (wire.go), and serves it in place, with a recover around each,
// so that no datagram can take the process down and no goroutine is
// started per packet (go-ipmi's Server.Serve does both: a goroutine per
// datagram, without recover). go-ipmi keeps what it is good at: its
// message types, its RAKP handshake and key derivation, its RMCP+ session
// store and the handler registry. The sessions' replay windows, the proof
// that a failed login came from whom it claims, and IPMI 1.5 sessions are
// ours (see rmcpplus.go and v15.go).
type server struct {
	conn     rawsock.PacketConn
	bmc      *bmc.BMC
	reg      *handlers.Registry
	guard    *guard.Guard
	obs      Observer
	log      *slog.Logger
	endpoint string
	limit    int // concurrent sessions, each protocol
	timeout  time.Duration
	hs       *handshakes
	tracker  *tracker
	sol      *solConsole // nil: the machine offers no serial console
	// now is the clock that handshakes, sessions and their expiry read:
	// time.Now, but for tests of timeouts, which set it before serving
	// instead of waiting the timeouts out.
	now func() time.Time

	mu       sync.Mutex
	sessions map[uint32]*session      // active RMCP+ sessions by managed system session ID
	v15      map[uint32]*v15session   // active IPMI 1.5 sessions by session ID
	v15Temp  map[uint32]v15Activation // recent activations by temporary ID
	recent   map[uint32]recentRAKP    // recent RMCP+ activations

	// actions bounds the requests waiting on vCenter at once (see slow).
	actions chan struct{}
}

// maxActions is how many requests that wait on vCenter one endpoint runs
// at once; past that a request gets C0h (node busy), which Ironic retries.
const maxActions = 8

// housekeepingEvery is how often expired handshakes and idle sessions are
// swept: a handshake abandoned after RAKP 2 counts as a failure within
// this much of its timeout.
const housekeepingEvery = 500 * time.Millisecond

// serve reads datagrams until the socket is closed or ctx ends.
func (s *server) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A payload activated by the last datagram served would otherwise
	// keep its pump and console reader once the loop is gone.
	defer s.bmc.SOL.CloseAll()
	go func() {
		<-ctx.Done()
		_ = s.conn.Close()
	}()
	go s.housekeeping(ctx)
	buf := make([]byte, maxDatagram+1)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Debug("ipmi read failed", "err", err)
			continue
		}
		s.handle(buf[:n], from)
	}
}

// handle serves one datagram. A panic anywhere below costs that datagram
// only: it is logged with its stack and counted, and the loop goes on.
func (s *server) handle(p []byte, from netip.AddrPort) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("ipmi datagram handling panicked", "source", from.String(), "panic", r, "stack", string(debug.Stack()))
			s.dropped(dropPanic)
			if s.obs != nil {
				s.obs.Panic()
			}
		}
	}()
	d, why := parse(p)
	if why != "" {
		s.dropped(why)
		return
	}
	ip := from.Addr().Unmap()
	switch d.kind {
	case kindPing:
		s.send(protocol.BuildASFPresencePong(p[9]), from)
	case kindPreSession:
		s.preSession(d, from)
	case kindOpenSession:
		if s.admitSetup(ip) {
			s.openSession(d, from, ip)
		}
	case kindRAKP1:
		if s.admitStep(ip) {
			s.rakp1(d, from, ip)
		}
	case kindRAKP3:
		if s.admitStep(ip) {
			s.rakp3(d, from, ip)
		}
	case kindSession:
		s.inSession(d, from)
	case kindSOL:
		s.solPacket(d, from)
	case kindV15:
		s.v15Datagram(d, from, ip)
	}
}

// admitSetup applies the guard to a session-setup datagram: a locked-out or
// flooding source gets silence, as an answer could amplify a flood.
func (s *server) admitSetup(ip netip.Addr) bool {
	ok, why := s.guard.AllowSetup(ip, s.endpoint)
	if !ok {
		s.dropped(dropRefused)
		if s.obs != nil {
			s.obs.Session(s.endpoint, "refused")
		}
		s.log.Debug("session setup dropped", "source", ip.String(), "reason", why)
	}
	return ok
}

// admitStep applies the lockout, not the rate, to a later handshake step:
// it names a handshake the source began, so it proves a round trip, and
// throttling it would let Open Sessions forged in a console's name starve
// the console's own handshakes.
func (s *server) admitStep(ip netip.Addr) bool {
	if s.guard.Locked(ip, s.endpoint) > 0 {
		s.dropped(dropRefused)
		return false
	}
	return true
}

// expire ends sessions of both protocols idle past the timeout, and
// forgets handshakes that succeeded too long ago to be repeated.
func (s *server) expire(now time.Time) {
	s.mu.Lock()
	var idle, idle15 []uint32
	for id, st := range s.sessions {
		if now.Sub(st.last) > s.timeout {
			idle = append(idle, id)
		}
	}
	for id, st := range s.v15 {
		if now.Sub(st.last) > s.timeout {
			idle15 = append(idle15, id)
		}
	}
	for id, r := range s.recent {
		if now.Sub(r.at) > handshakeTimeout {
			delete(s.recent, id)
		}
	}
	for id, a := range s.v15Temp {
		if now.Sub(a.at) > v15Reactivate {
			delete(s.v15Temp, id)
		}
	}
	s.mu.Unlock()
	for _, id := range idle {
		s.end(id)
	}
	for _, id := range idle15 {
		s.endV15(id)
	}
}

// authFailed counts a failed login that ip has proved it attempted.
func (s *server) authFailed(ip netip.Addr) {
	if s.obs != nil {
		s.obs.AuthFailure(s.endpoint)
	}
	if s.guard.Failed(ip, s.endpoint) && s.obs != nil {
		s.obs.Lockout(s.endpoint)
	}
}

func (s *server) dropped(reason string) {
	if s.obs != nil {
		s.obs.Dropped(reason)
	}
}

func (s *server) send(p []byte, to netip.AddrPort) {
	if _, err := s.conn.WriteToUDPAddrPort(p, to); err != nil {
		s.log.Debug("ipmi send failed", "to", to.String(), "err", err)
	}
}

// housekeeping ends handshakes that took too long (an abandoned one after
// RAKP 2 is a failed login, counted when its timer fires) and sessions
// idle past the timeout. It sleeps while there is nothing to end, so that
// a thousand idle BMCs cost no wake-ups: each wake-up of a Go process
// costs tens of µs of CPU, and 2 a second per BMC was most of an idle
// bridge's CPU.
func (s *server) housekeeping(ctx context.Context) {
	t := time.NewTimer(housekeepingEvery)
	defer t.Stop()
	for {
		if s.idle() {
			select {
			case <-ctx.Done():
				return
			case <-s.hs.begun:
			}
		}
		t.Reset(housekeepingEvery)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := s.now()
			for _, h := range s.hs.expired(now) {
				if h.rakp2 {
					s.authFailed(h.ip)
				}
			}
			s.expire(now)
		}
	}
}

// idle reports whether the endpoint holds nothing that can expire.
func (s *server) idle() bool {
	if s.hs.len() > 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)+len(s.v15)+len(s.recent)+len(s.v15Temp) == 0
}

// request is one IPMI request inside a session (or before one), ready to
// dispatch.
type request struct {
	netFn, cmd, rqSeq uint8
	data              []byte
}

func parseRequest(m []byte) request {
	netFn, cmd, data, seq, _ := protocol.ParseIPMIRequest(m)
	return request{netFn: netFn, cmd: cmd, rqSeq: seq, data: data}
}

// dispatch runs a request through the registry and builds the response
// message. ctx carries the close-session note (see closeSession).
func (s *server) dispatch(ctx context.Context, hctx *handlers.HandlerContext, r request) []byte {
	data, cc, _ := s.reg.Dispatch(ctx, hctx, r.netFn, r.cmd, r.data)
	return protocol.BuildIPMIResponse(r.netFn, r.cmd, r.rqSeq, uint8(cc), data)
}

// slow reports the requests that wait on vCenter: power and boot-device
// changes (up to the 0.8 s reply budget). Everything else is answered from
// the watched inventory at once, inline in the read loop.
func slow(r request) bool {
	return r.netFn == uint8(types.NetFnChassisRequest) &&
		(r.cmd == types.CommandChassisControl.ID || r.cmd == types.CommandSetSystemBootOptions.ID)
}

// inflight is a session's request waiting on vCenter, if any. Consoles
// send one request at a time per session, so another request meanwhile is
// a retransmission or a console out of step. A retransmission (same
// command and data; FreeIPMI gives each one a new rqSeq, ipmitool keeps
// it) is answered when the request completes, with the request's answer
// under each rqSeq it came with: running it again could act twice, and an
// early C0h would tell the console that an action failed which has not.
// Any other request gets C0h (node busy).
type inflight struct {
	mu      sync.Mutex
	busy    bool
	req     request // data copied: the read buffer is reused
	repeats []uint8 // rqSeq of retransmissions to answer too
}

// conversation is a session of either protocol as the request path sees
// it: where its requests are dispatched from, how an answer is sealed and
// sent, and how it ends.
type conversation interface {
	flight() *inflight
	// context is the handler context of the session; inline requests
	// share it (the read loop serves them one at a time).
	context() *handlers.HandlerContext
	send(s *server, msg []byte)
	end(s *server)
}

// serveRequest runs r inline, or, when it waits on vCenter, on its own
// goroutine while the loop serves everyone else. Either way the session is
// free again before the console can have the answer and send its next
// request.
func (s *server) serveRequest(c conversation, r request) {
	f := c.flight()
	f.mu.Lock()
	if f.busy {
		retransmit := f.req.netFn == r.netFn && f.req.cmd == r.cmd && bytes.Equal(f.req.data, r.data)
		if retransmit && f.req.rqSeq != r.rqSeq && !slices.Contains(f.repeats, r.rqSeq) && len(f.repeats) < 8 {
			f.repeats = append(f.repeats, r.rqSeq)
		}
		f.mu.Unlock()
		if !retransmit {
			c.send(s, protocol.BuildIPMIResponse(r.netFn, r.cmd, r.rqSeq, uint8(types.CodeNodeBusy), nil))
		}
		return
	}
	if !slow(r) {
		f.mu.Unlock()
		s.answer(c, c.context(), r, nil)
		return
	}
	select {
	case s.actions <- struct{}{}:
	default:
		f.mu.Unlock()
		c.send(s, protocol.BuildIPMIResponse(r.netFn, r.cmd, r.rqSeq, uint8(types.CodeNodeBusy), nil))
		return
	}
	r.data = slices.Clone(r.data)
	f.busy, f.req, f.repeats = true, r, nil
	f.mu.Unlock()
	hctx := *c.context() // its own: the loop goes on serving the session's other requests
	go func() {
		defer func() { <-s.actions }()
		defer f.free() // after a panic
		defer s.recoverAsync()
		s.answer(c, &hctx, r, f)
	}()
}

// free ends the request in flight and returns the rqSeqs of the
// retransmissions to answer too.
func (f *inflight) free() []uint8 {
	f.mu.Lock()
	defer f.mu.Unlock()
	repeats := f.repeats
	f.busy, f.repeats = false, nil
	return repeats
}

// withSeq is response msg under another rqSeq, its checksum redone.
func withSeq(msg []byte, rqSeq uint8) []byte {
	m := slices.Clone(msg)
	m[4] = rqSeq<<2 | m[4]&0x03
	m[len(m)-1] = protocol.Checksum(m[3 : len(m)-1])
	return m
}

// peer is where a session's console is: when it last sent an authentic,
// fresh packet, and from where, the address replies go to. Guarded by
// server.mu; only fresh moves it.
type peer struct {
	last time.Time
	addr netip.AddrPort
}

func (s *server) peerAddr(p *peer) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return p.addr
}

// fresh applies §6.12.13's order to an in-session packet: it must be
// authentic, then new to the window; only then does it count as activity
// and move the session's reply address. moved reports that it did.
func (s *server) fresh(authentic bool, w *window, p *peer, seq uint32, from netip.AddrPort) (ok, moved bool) {
	if !authentic {
		s.dropped(dropAuth)
		return false, false
	}
	if !w.accept(seq) {
		s.dropped(dropReplay)
		if s.obs != nil {
			s.obs.Replay()
		}
		return false, false
	}
	s.mu.Lock()
	moved = p.addr != from
	p.last, p.addr = s.now(), from
	s.mu.Unlock()
	return true, moved
}

// answer dispatches r in c, frees the request in flight f (nil inline),
// sends the reply, and after a successful Close Session ends the session:
// the reply had to be sealed with the session's keys first.
func (s *server) answer(c conversation, hctx *handlers.HandlerContext, r request, f *inflight) {
	msg := s.dispatch(context.Background(), hctx, r)
	var repeats []uint8
	if f != nil {
		repeats = f.free()
	}
	c.send(s, msg)
	for _, seq := range repeats {
		c.send(s, withSeq(msg, seq))
	}
	if r.netFn == netFnApp && r.cmd == cmdCloseSession && msg[6] == uint8(types.CodeOK) {
		c.end(s)
	}
}

// recoverAsync fences a panic in a request served off the loop.
func (s *server) recoverAsync() {
	if r := recover(); r != nil {
		s.log.Error("ipmi request panicked", "panic", r, "stack", string(debug.Stack()))
		s.dropped(dropPanic)
		if s.obs != nil {
			s.obs.Panic()
		}
	}
}

// closeSession implements Close Session (§22.19) for both protocols: a
// console closes its own session, named by ID or, with ID 0, by handle.
// go-ipmi's handler closes any session whose ID it is given, so one console
// could end another's; that is refused with 87h (invalid session ID).
func closeSession(_ context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 4 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	id := uint32(req[0]) | uint32(req[1])<<8 | uint32(req[2])<<16 | uint32(req[3])<<24
	var own uint32
	var handle uint8
	switch {
	case hctx.Session != nil:
		own, handle = hctx.Session.BMCID, hctx.Session.Handle
	case hctx.V15Session != nil:
		own, handle = hctx.V15Session.SessionID, hctx.V15Session.Handle
	default:
		return nil, types.CodeInsufficientPrivilege, nil
	}
	byHandle := id == 0 && len(req) >= 5 && req[4] == handle
	if id != own && !byHandle {
		return nil, 0x87, nil
	}
	return nil, types.CodeOK, nil // the server ends the session once this is sent
}

// sessionInfo answers Get Session Info (§22.20) for the current session
// (index 0), which is what consoles and `ipmitool session info active`
// ask: go-ipmi's handler counts the sessions of its own store, which this
// server does not use. The table sizes are this endpoint's.
func (s *server) sessionInfo(_ context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 1 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	if req[0] != 0 {
		return nil, types.CodeRequestDataFieldInvalid, nil // only "this session"
	}
	var handle, user, priv, aux byte
	var active int
	var lan netip.AddrPort
	s.mu.Lock()
	switch {
	case hctx.Session != nil:
		sess := hctx.Session
		handle, priv, aux, active = sess.Handle, byte(sess.PrivilegeLevel), 0x10|lanChannel, len(s.sessions)
		if st := s.sessions[sess.BMCID]; st != nil {
			lan = st.addr
		}
		if sess.User != nil {
			user = sess.User.ID
		}
	case hctx.V15Session != nil:
		sess := hctx.V15Session
		handle, priv, aux, active = sess.Handle, byte(sess.PrivilegeLevel), lanChannel, len(s.v15)
		if sess.User != nil {
			user = sess.User.ID
		}
	default:
		s.mu.Unlock()
		return nil, types.CodeRequestDataFieldInvalid, nil
	}
	s.mu.Unlock()
	resp := []byte{handle, byte(min(s.limit, 0x3F)), byte(min(active, 0x3F)), user, priv, aux}
	if ip := lan.Addr().Unmap(); ip.Is4() {
		// Table 22-26 bytes 7-18 for an 802.3 LAN channel: the console's
		// IP address, MAC (not known: zeros) and port (little-endian).
		a := ip.As4()
		resp = append(resp, a[:]...)
		resp = append(resp, 0, 0, 0, 0, 0, 0, byte(lan.Port()), byte(lan.Port()>>8))
	}
	return resp, types.CodeOK, nil
}
