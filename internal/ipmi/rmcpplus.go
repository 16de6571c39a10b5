package ipmi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/crypto"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/protocol"
	"github.com/bougou/go-ipmi/pkg/rmcpplus"
	"github.com/bougou/go-ipmi/pkg/types"
)

// session is an active RMCP+ session: go-ipmi's session type (which its
// handlers read), its replay window, when it was last used, and the
// request waiting on vCenter, if any.
type session struct {
	s    *bmc.Session
	hctx handlers.HandlerContext
	seal *sealer
	win  window // touched by the read loop only
	peer
	inflight
}

func (st *session) flight() *inflight                 { return &st.inflight }
func (st *session) context() *handlers.HandlerContext { return &st.hctx }
func (st *session) end(s *server)                     { s.end(st.s.BMCID) }

// send seals an IPMI response in the session and sends it.
func (st *session) send(s *server, msg []byte) { st.sendPayload(s, payloadIPMI, msg) }

// sendPayload seals a payload of type typ in the session (§13.28.4,
// §13.29) and sends it to the console's address, which moves only with an
// authentic and fresh packet. The sequence number is taken under the
// sealer's lock, so that replies and the SOL packets a payload pushes
// from its own goroutine leave in sequence order: FreeIPMI drops a packet
// whose number its window has passed.
func (st *session) sendPayload(s *server, typ byte, msg []byte) {
	to := s.peerAddr(&st.peer)
	st.seal.mu.Lock()
	defer st.seal.mu.Unlock()
	s.send(st.seal.seal(typ, st.s.ConsoleID, st.s.NextOutboundSeq(), msg), to)
}

// rakp is an RMCP+ handshake's state, from Open Session to RAKP 3.
type rakp struct {
	console      uint32 // the console's session ID
	auth         types.AuthAlg
	integ        types.IntegrityAlg
	crypt        types.CryptAlg
	maxPriv      bmc.PrivilegeLevel
	rm, rc       [16]byte
	role         byte
	name         string
	user         *bmc.User
	rakp2        []byte // sent, and sent again for a repeated RAKP 1
	rakp3, rakp4 []byte // a repeated RAKP 3 gets the same RAKP 4
}

// RAKP status codes (Table 13-15).
const (
	statusOK               = 0x00
	statusNoResources      = 0x01
	statusInvalidSession   = 0x02
	statusInvalidRole      = 0x09
	statusUnauthorizedRole = 0x0A
	statusUnauthorizedName = 0x0D
	statusNoCipherSuite    = 0x11
	statusIllegalParameter = 0x12
)

// suites are the cipher suites offered (Table 22-20): 3 and 17, the ones
// ipmitool, FreeIPMI, pyghmi and Ironic use; suite 0 (no authentication)
// never.
var suites = [][3]uint8{
	{uint8(types.AuthAlg_HMAC_SHA1), uint8(types.IntegrityAlg_HMAC_SHA1_96), uint8(types.CryptAlg_AES_CBC_128)},
	{uint8(types.AuthAlg_HMAC_SHA256), uint8(types.IntegrityAlg_HMAC_SHA256_128), uint8(types.CryptAlg_AES_CBC_128)},
}

// preSession answers Get Channel Authentication Capabilities and Get
// Channel Cipher Suites sent before a session (ipmitool, FreeIPMI, pyghmi).
func (s *server) preSession(d datagram, from netip.AddrPort) {
	resp := s.dispatch(context.Background(), &handlers.HandlerContext{BMC: s.bmc}, parseRequest(d.payload))
	s.send(protocol.BuildRMCPPlusPacket(payloadIPMI, 0, 0, 0, resp), from)
}

// The RMCP+ handshake (§13.17-13.23) is ours, on go-ipmi's message types
// and RAKP crypto: go-ipmi's handshake keeps sessions in setup in its
// session store, whose one-byte session handles run out at 254 (the next
// allocation then spins for ever holding the store lock: 255 Open Session
// datagrams froze a BMC), and which evicts the oldest pending session, so
// a flood wins. Ours keeps them in the handshake table (handshakes.go).

// openSession answers Open Session (§13.17) with the requested suite, or
// 11h (no matching cipher suite), which Ironic and pyghmi fall back on.
func (s *server) openSession(d datagram, from netip.AddrPort, ip netip.Addr) {
	p := d.payload
	answer := &rmcpplus.OpenSessionResponse{MessageTag: p[0], RemoteConsoleSessionID: binary.LittleEndian.Uint32(p[4:8])}
	send := func() { s.send(protocol.BuildRMCPPlusPacket(payloadOpenResp, 0, 0, 0, answer.Pack()), from) }
	algs := [3]uint8{p[12], p[20], p[28]}
	if p[8] != 0 || p[16] != 1 || p[24] != 2 || !slices.Contains(suites, algs) {
		answer.RmcpStatusCode = statusNoCipherSuite
		send()
		return
	}
	maxPriv := bmc.PrivilegeLevel(p[1] & 0x0F)
	if maxPriv == 0 {
		maxPriv = bmc.PrivilegeLevelAdministrator // 0: the highest the user may have
	}
	if maxPriv > bmc.PrivilegeLevelOEM || answer.RemoteConsoleSessionID == 0 {
		answer.RmcpStatusCode = statusIllegalParameter
		send()
		return
	}
	if s.activeSessions() >= s.limit || !s.hs.admit(ip) {
		answer.RmcpStatusCode = statusNoResources
		if s.obs != nil {
			s.obs.Session(s.endpoint, "refused")
		}
		send()
		return
	}
	h := &rakp{console: answer.RemoteConsoleSessionID, auth: types.AuthAlg(algs[0]), integ: types.IntegrityAlg(algs[1]), crypt: types.CryptAlg(algs[2]), maxPriv: maxPriv}
	id := s.newSessionID()
	s.hs.add(&handshake{key: hsKey{id: id}, ip: ip, at: s.now(), rmcp: h})
	answer.MaximumPrivilegeLevel = uint8(maxPriv)
	answer.ManagedSystemSessionID = id
	answer.AuthenticationPayload, answer.IntegrityPayload, answer.ConfidentialityPayload = rmcpplus.NewAlgorithmPayloads(h.auth, h.integ, h.crypt)
	send()
}

// newSessionID draws a random non-zero ID no session or handshake uses.
func (s *server) newSessionID() uint32 {
	return newID(func(id uint32) bool {
		_, pending := s.hs.get(hsKey{id: id})
		return pending || s.session(id) != nil
	})
}

// rakp1 answers RAKP 1 with RAKP 2 (§13.20, §13.21), from the source the
// Open Session Response went to only. An unknown user gets a RAKP 2 keyed
// by no password, as go-ipmi does, so that names cannot be probed; the
// console's check of RAKP 2 fails and it abandons the handshake, which
// counts. A repeat of the same RAKP 1 (its answer was lost) gets the same
// RAKP 2, so the console's RAKP 3 still matches.
func (s *server) rakp1(d datagram, from netip.AddrPort, ip netip.Addr) {
	p := d.payload
	k := hsKey{id: binary.LittleEndian.Uint32(p[4:8])}
	hs, ok := s.hs.from(k, ip)
	if !ok {
		s.dropped(dropForeign)
		return
	}
	h := hs.rmcp
	if hs.rakp2 && [16]byte(p[8:24]) == h.rm && p[24] == h.role {
		s.send(protocol.BuildRMCPPlusPacket(payloadRAKP2, 0, 0, 0, h.rakp2), from)
		return
	}
	if hs.rakp2 {
		// A different RAKP 1 after RAKP 2: the console starts over. The
		// RAKP 2 already sent was enough to test passwords offline, so the
		// handshake it ends counts as failed.
		s.hs.done(k)
		s.authFailed(ip)
		s.dropped(dropForeign)
		return
	}
	h.rm, h.role, h.name = [16]byte(p[8:24]), p[24], string(p[28:])
	answer := &rmcpplus.RAKPMessage2{MessageTag: p[0], RemoteConsoleSessionID: h.console}
	if status := s.authorize(h); status != statusOK {
		s.hs.done(k)
		answer.RmcpStatusCode = types.RmcpStatusCode(status)
		s.send(protocol.BuildRMCPPlusPacket(payloadRAKP2, 0, 0, 0, answer.Pack()), from)
		return
	}
	_, _ = rand.Read(h.rc[:])
	code, err := crypto.RAKP2AuthCode(h.auth, h.console, k.id, h.rm[:], h.rc[:], s.bmc.GUID[:], h.role, h.name, h.kuid())
	if err != nil {
		s.hs.done(k)
		return
	}
	answer.ManagedSystemRandomNumber, answer.ManagedSystemGUID, answer.KeyExchangeAuthenticationCode = h.rc, s.bmc.GUID, code
	h.rakp2 = answer.Pack()
	s.hs.sentRAKP2(k)
	s.send(protocol.BuildRMCPPlusPacket(payloadRAKP2, 0, 0, 0, h.rakp2), from)
}

// authorize looks the user up and checks the role RAKP 1 asks for against
// the Open Session maximum and the user's channel access (§13.20): 09h for
// a role that is no privilege level, 0Ah for one above what is allowed.
func (s *server) authorize(h *rakp) uint8 {
	priv := bmc.PrivilegeLevel(h.role & 0x0F)
	if priv == 0 {
		priv = h.maxPriv
	}
	if priv < bmc.PrivilegeLevelCallback || priv > bmc.PrivilegeLevelOEM {
		return statusInvalidRole
	}
	if u, err := s.bmc.Users.GetByName(h.name); err == nil && u.Enabled {
		h.user = u
	}
	if h.user == nil {
		return statusOK // found out at RAKP 3, see rakp1
	}
	access := h.user.ChannelAccess[lanChannel]
	if !access.Enabled || priv > h.maxPriv || priv > access.MaxPrivilege {
		return statusUnauthorizedRole
	}
	h.maxPriv = priv
	return statusOK
}

// kuid is the key the RAKP codes are keyed by (§13.31): the user's
// password padded to 20 bytes, or nothing for an unknown user.
func (h *rakp) kuid() []byte {
	if h.user == nil {
		return crypto.PadPassword20(nil)
	}
	return crypto.PadPassword20(h.user.Password[:])
}

// rakp3 completes or fails a handshake (§13.22, §13.23). Every failure
// here is proven (the RAKP 2 it answers went to this source) and counts:
// a console rejecting RAKP 2 (any non-zero status: it found the password
// wrong) or a key exchange code that does not match (0Dh back). A repeat
// of the RAKP 3 that succeeded (RAKP 4 was lost) gets the same RAKP 4.
func (s *server) rakp3(d datagram, from netip.AddrPort, ip netip.Addr) {
	p := d.payload
	k := hsKey{id: binary.LittleEndian.Uint32(p[4:8])}
	if r := s.repeatRAKP4(k.id, ip, p); r != nil {
		s.send(protocol.BuildRMCPPlusPacket(payloadRAKP4, 0, 0, 0, r), from)
		return
	}
	hs, ok := s.hs.from(k, ip)
	if !ok || !hs.rakp2 || !s.hs.done(k) {
		s.dropped(dropForeign)
		return
	}
	h := hs.rmcp
	answer := &rmcpplus.RAKPMessage4{MessageTag: p[0], MgmtConsoleSessionID: h.console}
	want, err := crypto.RAKP3AuthCode(h.auth, h.rc[:], h.console, h.role, h.name, h.kuid())
	switch {
	case p[1] != statusOK:
		s.authFailed(ip)
		answer.RmcpStatusCode = types.RmcpStatusCode(p[1])
	case err != nil || h.user == nil || !crypto.Equal(want, p[8:]):
		s.authFailed(ip)
		answer.RmcpStatusCode = statusUnauthorizedName
	default:
		st := s.activate(k.id, h)
		if st == nil {
			answer.RmcpStatusCode = statusNoResources
			if s.obs != nil {
				s.obs.Session(s.endpoint, "refused")
			}
			break
		}
		answer.IntegrityCheckValue, _ = crypto.RAKP4ICV(h.auth, h.rm[:], k.id, s.bmc.GUID[:], st.s.SIK)
		h.rakp3, h.rakp4 = slices.Clone(p), answer.Pack()
		s.rememberRAKP4(k.id, ip, h)
	}
	s.send(protocol.BuildRMCPPlusPacket(payloadRAKP4, 0, 0, 0, answer.Pack()), from)
}

// activate opens the session a handshake authenticated, with the keys of
// §13.32, unless every slot is taken.
func (s *server) activate(id uint32, h *rakp) *session {
	sik, k1, k2, err := crypto.DeriveSessionKeys(h.auth, h.rm[:], h.rc[:], h.role, h.name, h.kuid())
	if err != nil {
		return nil
	}
	now := s.now()
	sess := &bmc.Session{
		BMCID: id, ConsoleID: h.console, State: bmc.SessionStateActive,
		AuthAlg: h.auth, IntegrityAlg: h.integ, CryptAlg: h.crypt,
		SIK: sik, K1: k1, K2: k2, ConsoleRand: h.rm, BMCRand: h.rc, Role: h.role,
		User: h.user, PrivilegeLevel: h.maxPriv, MaxPrivilege: h.maxPriv, Channel: lanChannel,
		CreatedAt: now, LastActivity: now,
	}
	seal, err := newSealer(h.integ, k1, k2)
	if err != nil {
		return nil
	}
	ch, _ := s.bmc.Channels.Get(lanChannel)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= s.limit {
		return nil
	}
	sess.Handle = freeHandle(s.sessions, func(st *session) uint8 { return st.s.Handle })
	st := &session{s: sess, seal: seal, peer: peer{last: now},
		hctx: handlers.HandlerContext{BMC: s.bmc, Session: sess, Channel: ch, User: sess.User}}
	s.sessions[id] = st
	return st
}

// freeHandle is the lowest session handle (§22.20: 1 to FEh) none of
// sessions has; sessions are far fewer than 254 (see sessionLimit).
// Callers hold server.mu.
func freeHandle[S any](sessions map[uint32]S, handle func(S) uint8) uint8 {
	used := map[uint8]bool{}
	for _, st := range sessions {
		used[handle(st)] = true
	}
	h := uint8(1)
	for used[h] {
		h++
	}
	return h
}

// rememberRAKP4 keeps a successful RAKP 4 for a few seconds, for a repeat.
func (s *server) rememberRAKP4(id uint32, ip netip.Addr, h *rakp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent[id] = recentRAKP{ip: ip, h: h, at: s.now()}
}

func (s *server) repeatRAKP4(id uint32, ip netip.Addr, p []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recent[id]
	if !ok || r.ip != ip || s.now().Sub(r.at) > handshakeTimeout || !bytes.Equal(r.h.rakp3, p) {
		return nil
	}
	return r.h.rakp4
}

// recentRAKP is a handshake that succeeded moments ago.
type recentRAKP struct {
	ip netip.Addr
	h  *rakp
	at time.Time
}

// end closes an RMCP+ session.
func (s *server) end(id uint32) {
	s.mu.Lock()
	_, ok := s.sessions[id]
	delete(s.sessions, id)
	s.mu.Unlock()
	if ok {
		s.bmc.SOL.DeactivateBySession(id)
		s.tracker.removed(sessionKey{id: id})
	}
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

// admit applies to a packet in an RMCP+ session, IPMI request or SOL, the
// checks of §6.12.13 in their order: the packet must authenticate before
// it may move the replay window, and it must be new before it may move
// the session's reply address or its inactivity timer; so a replayed or
// forged packet, from any source, changes nothing. It returns the
// session, or nil when the packet is dropped.
func (s *server) admit(d datagram, from netip.AddrPort) *session {
	st := s.session(d.sid)
	if st == nil {
		s.dropped(dropUnknownSess)
		return nil
	}
	st.seal.mu.Lock()
	ok := st.seal.authentic(d.full, d.authLen)
	st.seal.mu.Unlock()
	ok, moved := s.fresh(ok, &st.win, &st.peer, d.seq, from)
	if !ok {
		return nil
	}
	if moved {
		// go-ipmi's session carries the address its readers (the request
		// log, the session list) name the console by, and SOL activation
		// wants one; set only when it moves, as making a net.Addr
		// allocates.
		st.s.SetAddr(net.UDPAddrFromAddrPort(from))
	}
	return st
}

// inSession serves an IPMI request inside an RMCP+ session.
func (s *server) inSession(d datagram, from netip.AddrPort) {
	st := s.admit(d, from)
	if st == nil {
		return
	}
	// The plaintext buffer is the read loop's alone (only it opens), so it
	// stays valid while the request is served inline; an async request
	// copies its data.
	st.seal.mu.Lock()
	plain, ok := st.seal.open(d.payload)
	st.seal.mu.Unlock()
	if !ok || !validRequest(plain) {
		s.dropped(dropMessage)
		return
	}
	s.serveRequest(st, parseRequest(plain))
}
