package ipmi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/protocol"
	"github.com/bougou/go-ipmi/pkg/types"
)

// IPMI 1.5 sessions (§6.12, §22.15-22.17) are ours, on go-ipmi's session
// type and MD5 auth codes: go-ipmi's 1.5 store holds four sessions in all,
// one per user, pending ones included, so one console that does not log
// out, or a few challenges from anywhere, leave the BMC "busy" for the
// next; and its refusal of a wrong password carries an auth code keyed by
// the real password, which is all an offline dictionary attack needs.

// v15session is an active IPMI 1.5 session.
type v15session struct {
	s    *bmc.V15Session
	hctx handlers.HandlerContext
	ip   netip.Addr // the source that activated it
	win  window     // touched by the read loop only
	peer
	inflight
}

func (st *v15session) flight() *inflight                 { return &st.inflight }
func (st *v15session) context() *handlers.HandlerContext { return &st.hctx }
func (st *v15session) end(s *server)                     { s.endV15(st.s.SessionID) }

func (st *v15session) send(s *server, msg []byte) {
	s.replyV15(st, msg, s.peerAddr(&st.peer))
}

// v15Reactivate is how long an Activate Session may be repeated after it
// succeeded: if the reply is lost, FreeIPMI sends the same request again
// under the temporary ID (up to 8 times over 20 s), and must get the same
// answer rather than silence and, later, "BMC busy".
const v15Reactivate = 30 * time.Second

// Completion codes of Get Session Challenge and Activate Session (§22.16,
// §22.17).
const (
	ccInvalidUser       = 0x81 // Get Session Challenge: invalid user name
	ccNullUser          = 0x82 // Get Session Challenge: null user not enabled
	ccNoSlot            = 0x81 // Activate Session: no session slot available
	ccInvalidSessionID  = 0x85
	ccPrivilegeTooHigh  = 0x86
	lanChannel          = 1
	v15ActivateReqBytes = 22
)

// v15Datagram serves an IPMI 1.5 datagram: discovery and challenge outside
// a session, Activate Session, or a request inside a session.
func (s *server) v15Datagram(d datagram, from netip.AddrPort, ip netip.Addr) {
	r := parseRequest(d.payload)
	switch {
	case d.authType == authNone && r.cmd == cmdGetSessionChall:
		if s.admitSetup(ip) {
			s.challenge(r, from, ip)
		}
	case d.authType == authNone:
		resp := s.dispatch(context.Background(), &handlers.HandlerContext{BMC: s.bmc}, r)
		s.sendV15(authNone, 0, 0, nil, resp, from)
	case d.seq == 0:
		// Activate Session is the one authenticated request with sequence
		// 0 (§22.17): it is sent under the temporary session ID.
		if r.netFn != netFnApp || r.cmd != cmdActivateSession {
			s.dropped(dropV15Header)
			return
		}
		if s.admitStep(ip) {
			s.activateV15(d, r, from, ip)
		}
	default:
		s.inSessionV15(d, r, from)
	}
}

// v15Activation is an activated session still answering repeats of its
// Activate Session.
type v15Activation struct {
	st *v15session
	at time.Time
}

// challenge answers Get Session Challenge (§22.16): a temporary session ID
// and a random challenge, which only this source learns; Activate Session
// must come back from it with both.
func (s *server) challenge(r request, from netip.AddrPort, ip netip.Addr) {
	answer := func(cc uint8, data []byte) {
		s.sendV15(authNone, 0, 0, nil, protocol.BuildIPMIResponse(r.netFn, r.cmd, r.rqSeq, cc, data), from)
	}
	if len(r.data) != 17 {
		answer(uint8(types.CodeRequestDataLengthInvalid), nil)
		return
	}
	if r.data[0]&0x0F != authMD5 {
		answer(uint8(types.CodeRequestDataFieldInvalid), nil)
		return
	}
	name := trimNUL(r.data[1:17])
	if name == "" {
		answer(ccNullUser, nil)
		return
	}
	user, err := s.bmc.Users.GetByName(name)
	if err != nil || !user.Enabled || !handlers.V15Usable(user) {
		answer(ccInvalidUser, nil)
		return
	}
	if !s.hs.admit(ip) {
		answer(ccNoSlot, nil) // no code for this in §22.16; what a full BMC says
		return
	}
	v := &bmc.V15Session{State: bmc.V15SessionStatePending, AuthType: bmc.V15AuthTypeMD5, User: user, Channel: lanChannel, CreatedAt: s.now()}
	v.TempSessionID = newID(func(id uint32) bool { _, taken := s.hs.get(hsKey{id: id, v15: true}); return taken })
	_, _ = rand.Read(v.Challenge[:])
	s.hs.add(&handshake{key: hsKey{id: v.TempSessionID, v15: true}, ip: ip, at: v.CreatedAt, v15: v})
	data := binary.LittleEndian.AppendUint32(nil, v.TempSessionID)
	answer(0, append(data, v.Challenge[:]...))
}

// activateV15 serves Activate Session (§22.17). Only the source that got
// the challenge may answer it, so a wrong auth code is a proven failed
// login and counts; its refusal is sent without an auth code, since one
// keyed by the real password would let the guesser test passwords offline.
func (s *server) activateV15(d datagram, r request, from netip.AddrPort, ip netip.Addr) {
	k := hsKey{id: d.sid, v15: true}
	h, ok := s.hs.from(k, ip)
	if !ok || !s.hs.done(k) {
		s.reactivate(d, r, from, ip)
		return
	}
	v := h.v15
	// Every answer to Activate Session carries the temporary ID it was
	// sent under: FreeIPMI matches replies to requests by session ID and
	// ignores one with the new ID (OpenIPMI's lanserv answers so too).
	refuse := func(cc uint8) {
		s.sendV15(authNone, 0, d.sid, nil, protocol.BuildIPMIResponse(r.netFn, r.cmd, r.rqSeq, cc, nil), from)
	}
	if !handlers.VerifyV15AuthCode(v.User.PasswordV15Padded(), bmc.V15AuthTypeMD5, d.sid, d.payload, 0, d.authCode) {
		s.authFailed(ip)
		refuse(ccInvalidSessionID)
		return
	}
	if len(r.data) != v15ActivateReqBytes || r.data[0]&0x0F != authMD5 || [16]byte(r.data[2:18]) != v.Challenge {
		refuse(ccInvalidSessionID)
		return
	}
	priv := bmc.PrivilegeLevel(r.data[1] & 0x0F)
	outbound := binary.LittleEndian.Uint32(r.data[18:22])
	if priv < bmc.PrivilegeLevelCallback || priv > v.User.ChannelAccess[lanChannel].MaxPrivilege || outbound == 0 {
		refuse(ccPrivilegeTooHigh)
		return
	}
	st := s.startV15(v, priv, outbound, ip)
	if st == nil {
		refuse(ccNoSlot)
		return
	}
	s.activated(st, r, from)
}

// activated answers a successful Activate Session: the session ID, the
// sequence number the console starts from, and the maximum privilege.
func (s *server) activated(st *v15session, r request, to netip.AddrPort) {
	v := st.s
	data := []byte{authMD5}
	data = binary.LittleEndian.AppendUint32(data, v.SessionID)
	data = binary.LittleEndian.AppendUint32(data, v.InboundSeq+1)
	data = append(data, byte(v.MaxPrivilege))
	s.replyV15As(st, v.TempSessionID, protocol.BuildIPMIResponse(r.netFn, r.cmd, r.rqSeq, 0, data), to)
}

// reactivate answers a repeated Activate Session of a session activated
// within v15Reactivate, from the same source, with the same challenge and
// a valid auth code: the first answer was lost. Anything else naming an
// unknown temporary ID is dropped.
func (s *server) reactivate(d datagram, r request, from netip.AddrPort, ip netip.Addr) {
	s.mu.Lock()
	a, ok := s.v15Temp[d.sid]
	s.mu.Unlock()
	if !ok || a.st.ip != ip || s.now().Sub(a.at) > v15Reactivate {
		s.dropped(dropForeign)
		return
	}
	v := a.st.s
	if !handlers.VerifyV15AuthCode(v.User.PasswordV15Padded(), bmc.V15AuthTypeMD5, d.sid, d.payload, 0, d.authCode) ||
		len(r.data) != v15ActivateReqBytes || [16]byte(r.data[2:18]) != v.Challenge {
		s.dropped(dropAuth)
		return
	}
	s.activated(a.st, r, from)
}

// startV15 makes v an active session at the privilege the console asked
// for as its maximum; it starts at User (§22.17), or Callback. It returns
// nil when every slot is taken.
func (s *server) startV15(v *bmc.V15Session, max bmc.PrivilegeLevel, outbound uint32, ip netip.Addr) *v15session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.v15) >= s.limit {
		return nil
	}
	v.SessionID = newID(func(id uint32) bool { return s.v15[id] != nil })
	v.Handle = freeHandle(s.v15, func(st *v15session) uint8 { return st.s.Handle })
	var inbound [4]byte
	_, _ = rand.Read(inbound[:])
	v.InboundSeq = binary.LittleEndian.Uint32(inbound[:])&0x7FFFFFFF + 1 // the console starts at InboundSeq+1
	v.OutboundSeq = outbound
	v.State = bmc.V15SessionStateActive
	v.MaxPrivilege = max
	v.PrivilegeLevel = min(max, bmc.PrivilegeLevelUser)
	ch, _ := s.bmc.Channels.Get(v.Channel)
	// go-ipmi's 1.5 window marks the wrong bit when the sequence jumps,
	// so a skipped packet could be replayed; ours does not.
	st := &v15session{s: v, ip: ip, peer: peer{last: s.now()}, win: window{high: v.InboundSeq, used: true},
		hctx: handlers.HandlerContext{BMC: s.bmc, V15Session: v, Channel: ch, User: v.User}}
	s.v15[v.SessionID] = st
	s.v15Temp[v.TempSessionID] = v15Activation{st: st, at: st.last}
	return st
}

// newID draws a random non-zero session ID that taken does not claim.
func newID(taken func(uint32) bool) uint32 {
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		if id := binary.LittleEndian.Uint32(b[:]); id != 0 && !taken(id) {
			return id
		}
	}
}

// inSessionV15 serves a request in an active 1.5 session: authenticated
// first, then new (the window rejects repeats, §6.12.13), then served.
func (s *server) inSessionV15(d datagram, r request, from netip.AddrPort) {
	s.mu.Lock()
	st := s.v15[d.sid]
	s.mu.Unlock()
	if st == nil {
		s.dropped(dropUnknownSess)
		return
	}
	ok := handlers.VerifyV15AuthCode(st.s.User.PasswordV15Padded(), bmc.V15AuthTypeMD5, d.sid, d.payload, d.seq, d.authCode)
	if ok, _ := s.fresh(ok, &st.win, &st.peer, d.seq, from); !ok {
		return
	}
	s.serveRequest(st, r)
}

func (s *server) endV15(id uint32) {
	s.mu.Lock()
	st, ok := s.v15[id]
	if ok {
		delete(s.v15, id)
		delete(s.v15Temp, st.s.TempSessionID)
	}
	s.mu.Unlock()
	if ok {
		s.tracker.removed(sessionKey{id: id, v15: true})
	}
}

// replyV15 sends a response in a 1.5 session, authenticated with MD5 over
// the session ID, the response and the session's next outbound sequence
// number (§22.12, §6.12.9).
func (s *server) replyV15(st *v15session, msg []byte, to netip.AddrPort) {
	s.replyV15As(st, st.s.SessionID, msg, to)
}

// replyV15As replies under session ID sid: the session's own, or for
// Activate Session the temporary one.
func (s *server) replyV15As(st *v15session, sid uint32, msg []byte, to netip.AddrPort) {
	v := st.s
	st.mu.Lock()
	seq := v.NextOutboundSeq()
	st.mu.Unlock()
	code := handlers.GenV15AuthCode(v.User.PasswordV15Padded(), bmc.V15AuthTypeMD5, sid, msg, seq)
	s.sendV15(authMD5, seq, sid, code, msg, to)
}

// sendV15 frames an IPMI message in the 1.5 session wrapper.
func (s *server) sendV15(auth uint8, seq, sid uint32, code, msg []byte, to netip.AddrPort) {
	p := []byte{0x06, 0x00, 0xFF, 0x07, auth}
	p = binary.LittleEndian.AppendUint32(p, seq)
	p = binary.LittleEndian.AppendUint32(p, sid)
	p = append(p, code...)
	p = append(p, byte(len(msg)))
	s.send(append(p, msg...), to)
}

func trimNUL(b []byte) string {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}
