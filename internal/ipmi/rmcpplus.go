package ipmi

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/crypto"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/protocol"
	"github.com/bougou/go-ipmi/pkg/rmcpplus"
	"github.com/bougou/go-ipmi/pkg/types"
)

// session is what we keep beside go-ipmi's RMCP+ session: the replay
// window and the request waiting on vCenter, if any.
type session struct {
	s   *bmc.Session
	ch  *bmc.Channel
	win window // touched by the read loop only
	inflight
}

// RAKP status codes (Table 13-15) the server sets or reads.
const (
	statusOK               = 0x00
	statusNoResources      = 0x01
	statusInvalidSession   = 0x02
	statusInvalidRole      = 0x09
	statusUnauthorizedRole = 0x0A
)

// preSession answers Get Channel Authentication Capabilities and Get
// Channel Cipher Suites sent before a session (ipmitool, FreeIPMI, pyghmi).
func (s *server) preSession(d datagram, from net.Addr) {
	resp := s.dispatch(context.Background(), &handlers.HandlerContext{BMC: s.bmc}, parseRequest(d.payload))
	s.send(protocol.BuildRMCPPlusPacket(payloadIPMI, 0, 0, 0, resp), from)
}

// setup serves Open Session, RAKP 1 and RAKP 3 (§13.17-13.23) through
// go-ipmi's handshake, and keeps the round-trip proof: RAKP 1 and 3 are
// served only from the source the Open Session Response went to, since
// only that source learnt the session ID they name.
func (s *server) setup(d datagram, from net.Addr, ip netip.Addr) {
	ctx := context.Background()
	switch d.kind {
	case kindOpenSession:
		s.openSession(ctx, d, from, ip)
	case kindRAKP1:
		k := hsKey{id: binary.LittleEndian.Uint32(d.payload[4:8])}
		if _, ok := s.hs.from(k, ip); !ok {
			s.dropped(dropForeign)
			return
		}
		resp, _ := handlers.HandleRAKP1(ctx, s.bmc, d.payload)
		if resp[1] == statusOK {
			s.hs.sentRAKP2(k)
		} else {
			s.hs.done(k)
			s.release(&handshake{key: k})
		}
		s.send(protocol.BuildRMCPPlusPacket(payloadRAKP2, 0, 0, 0, resp), from)
	case kindRAKP3:
		s.rakp3(ctx, d, from, ip)
	}
}

func (s *server) openSession(ctx context.Context, d datagram, from net.Addr, ip netip.Addr) {
	if s.activeSessions() >= s.limit {
		resp := &rmcpplus.OpenSessionResponse{
			MessageTag:             d.payload[0],
			RmcpStatusCode:         statusNoResources,
			RemoteConsoleSessionID: binary.LittleEndian.Uint32(d.payload[4:8]),
		}
		if s.obs != nil {
			s.obs.Session(s.endpoint, "refused")
		}
		s.send(protocol.BuildRMCPPlusPacket(payloadOpenResp, 0, 0, 0, resp.Pack()), from)
		return
	}
	for _, h := range s.hs.admit(ip) {
		s.release(h)
	}
	resp, _ := handlers.HandleOpenSession(ctx, s.bmc, d.payload)
	if len(resp) >= 12 && resp[1] == statusOK {
		id := binary.LittleEndian.Uint32(resp[8:12])
		s.hs.add(&handshake{key: hsKey{id: id}, ip: ip, at: time.Now()})
	}
	s.send(protocol.BuildRMCPPlusPacket(payloadOpenResp, 0, 0, 0, resp), from)
}

// rakp3 completes or fails a handshake. Every failure here is proven (the
// RAKP 2 it answers went to this source) and counts: the console rejecting
// RAKP 2 (non-zero status: it found the password wrong) or a key exchange
// code that does not match (status 0Dh back).
func (s *server) rakp3(ctx context.Context, d datagram, from net.Addr, ip netip.Addr) {
	k := hsKey{id: binary.LittleEndian.Uint32(d.payload[4:8])}
	if h, ok := s.hs.from(k, ip); !ok || !h.rakp2 {
		s.dropped(dropForeign)
		return
	}
	s.hs.done(k)
	var resp []byte
	if d.payload[1] == statusOK && s.activeSessions() >= s.limit {
		var console uint32
		if sess, err := s.bmc.Sessions.Get(k.id); err == nil {
			console = sess.ConsoleID // set at allocation, never written again
		}
		s.release(&handshake{key: k})
		resp = (&rmcpplus.RAKPMessage4{MessageTag: d.payload[0], RmcpStatusCode: statusNoResources, MgmtConsoleSessionID: console}).Pack()
		if s.obs != nil {
			s.obs.Session(s.endpoint, "refused")
		}
	} else {
		resp, _ = handlers.HandleRAKP3(ctx, s.bmc, d.payload)
	}
	switch status := resp[1]; status {
	case statusOK:
		s.activate(k.id)
	case statusNoResources, statusInvalidSession, statusInvalidRole, statusUnauthorizedRole:
	default:
		s.authFailed(ip)
	}
	s.send(protocol.BuildRMCPPlusPacket(payloadRAKP4, 0, 0, 0, resp), from)
}

// activate starts serving a session go-ipmi has just activated.
func (s *server) activate(id uint32) {
	sess, err := s.bmc.Sessions.Get(id)
	if err != nil {
		return
	}
	ch, _ := s.bmc.Channels.Get(sess.Channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[id] = &session{s: sess, ch: ch}
}

// removed is wired to go-ipmi's session store: a session left it (closed,
// idle or evicted).
func (s *server) removed(id uint32) {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
	s.tracker.removed(sessionKey{id: id})
}

func (s *server) activeSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *server) session(id uint32) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// inSession serves an IPMI request inside an RMCP+ session. Order matters
// (§6.12.13): the packet must authenticate before it may move the replay
// window, and it must be new before it may move the session's reply
// address or its inactivity timer; so a replayed or forged packet, from any
// source, changes nothing.
func (s *server) inSession(d datagram, from net.Addr) {
	st := s.session(d.sid)
	if st == nil {
		s.dropped(dropUnknownSess)
		return
	}
	if !authentic(st.s, d) {
		s.dropped(dropAuth)
		return
	}
	if !st.win.accept(d.seq) {
		s.dropped(dropReplay)
		if s.obs != nil {
			s.obs.Replay()
		}
		return
	}
	st.s.SetAddr(from)
	s.bmc.Sessions.Touch(st.s.BMCID)
	plain, err := crypto.DecryptAESPayload(d.payload, st.s.K2)
	if err != nil || !validRequest(plain) {
		s.dropped(dropMessage)
		return
	}
	s.serveRequest(&st.inflight, parseRequest(plain), func(r request) { s.run(st, r, from) },
		func(msg []byte) { s.reply(st, msg, from) })
}

// authentic checks the integrity auth code (§13.28.4) with the session's
// algorithm and K1.
func authentic(sess *bmc.Session, d datagram) bool {
	n, ok := crypto.IntegrityAuthCodeLen(sess.IntegrityAlg)
	if !ok || n != d.authLen || len(sess.K1) == 0 {
		return false
	}
	end := len(d.full) - n
	want, err := crypto.SessionIntegrityAuthCode(sess.IntegrityAlg, d.full[4:end], sess.K1, "")
	return err == nil && crypto.Equal(want, d.full[end:])
}

// run dispatches r in st and answers; after a Close Session it ends the
// session once the reply, sealed with its keys, is out.
func (s *server) run(st *session, r request, from net.Addr) {
	c := &closing{}
	ctx := context.WithValue(context.Background(), closingKey{}, c)
	hctx := &handlers.HandlerContext{BMC: s.bmc, Session: st.s, Channel: st.ch, User: st.s.User}
	s.reply(st, s.dispatch(ctx, hctx, r), from)
	if c.close {
		_ = s.bmc.Sessions.Close(st.s.BMCID)
	}
}

// reply seals an IPMI response in the session: AES-CBC-128 with K2
// (§13.29), then the integrity trailer with K1 (§13.28.4).
func (s *server) reply(st *session, msg []byte, to net.Addr) {
	sess := st.s
	enc, err := crypto.EncryptAESPayload(msg, sess.K2, crypto.RandomBytes(16))
	if err != nil {
		return
	}
	pkt := protocol.BuildRMCPPlusPacket(payloadIPMI, flagEncrypted|flagAuthenticated, sess.ConsoleID, sess.NextOutboundSeq(), enc)
	pad := types.IntegrityPadLen(12, len(enc))
	for range pad {
		pkt = append(pkt, 0xFF)
	}
	pkt = append(pkt, byte(pad), 0x07)
	code, err := crypto.SessionIntegrityAuthCode(sess.IntegrityAlg, pkt[4:], sess.K1, "")
	if err != nil {
		return
	}
	s.send(append(pkt, code...), to)
}
