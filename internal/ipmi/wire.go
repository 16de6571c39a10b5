package ipmi

import "encoding/binary"

// This file is the front door's first check: every datagram is parsed here,
// strictly and without trusting any length field, before go-ipmi's message
// types or our session code see any of its bytes. go-ipmi v0.9.1 trusts
// length fields (RAKPMessage1.Unpack indexes 28+UsernameLength as a uint8,
// which a single unauthenticated datagram with a length of 228 or more
// overflows), so what reaches it must already be known consistent.

// maxDatagram is the largest request a console sends: an IPMI message is at
// most 255 bytes in IPMI 1.5 (one length byte), and RMCP+ adds 16 bytes of
// header, 16 of IV, up to 16 of AES padding and 22 of trailer. Anything
// larger is not IPMI.
const maxDatagram = 512

// Datagram kinds, by what serves them.
type kind uint8

const (
	kindPing        kind = iota + 1 // ASF Presence Ping (RMCP class 6)
	kindV15                         // IPMI 1.5 session wrapper, §22.12
	kindOpenSession                 // RMCP+ Open Session Request, §13.17
	kindRAKP1                       // RAKP Message 1, §13.20
	kindRAKP3                       // RAKP Message 3, §13.22
	kindPreSession                  // RMCP+ IPMI payload outside a session
	kindSession                     // RMCP+ IPMI payload in a session
	kindSOL                         // RMCP+ SOL payload in a session
)

// Drop reasons, the label of the dropped-datagram metric. Each is a rule
// below; a datagram breaking it is answered with silence.
const (
	dropOversize     = "oversize"
	dropRMCP         = "rmcp_header"     // version, reserved byte, ACK bit or class
	dropASF          = "asf"             // anything but a well-formed Presence Ping
	dropV15Header    = "ipmi15_header"   // auth type, session fields or length
	dropRMCPPlus     = "rmcpplus_header" // payload type, flags, session fields or length
	dropSetupPayload = "setup_payload"   // Open Session or RAKP sizes
	dropTrailer      = "trailer"         // integrity pad, pad length, next header
	dropMessage      = "message"         // IPMI message length or checksums
	dropPreSession   = "presession_command"
	dropUnknownSess  = "unknown_session"
	dropSOLInactive  = "sol_inactive" // SOL packet of a session with no payload active
	dropAuth         = "auth"         // integrity or auth code wrong
	dropReplay       = "replay"
	dropForeign      = "foreign_handshake" // handshake step from another source
	dropRefused      = "refused"           // locked out or over the setup rate
	dropPanic        = "panic"
)

// RMCP+ payload types (Table 13-16) and flags.
const (
	payloadIPMI        = 0x00
	payloadSOL         = 0x01
	payloadOpenSession = 0x10
	payloadOpenResp    = 0x11
	payloadRAKP1       = 0x12
	payloadRAKP2       = 0x13
	payloadRAKP3       = 0x14
	payloadRAKP4       = 0x15
	flagEncrypted      = 0x80
	flagAuthenticated  = 0x40
)

// Commands allowed outside a session (§22.13, §22.15, §22.16): discovery and
// session setup. Everything else needs a session.
const (
	netFnApp              = 0x06
	cmdGetChannelAuthCaps = 0x38
	cmdGetSessionChall    = 0x39
	cmdActivateSession    = 0x3A
	cmdCloseSession       = 0x3C
	cmdGetCipherSuites    = 0x54
)

// IPMI 1.5 authentication types this BMC speaks: none outside a session,
// MD5 inside one (§22.12; MD2 and straight password are not offered).
const (
	authNone = 0x00
	authMD5  = 0x02
)

// datagram is a validated request.
type datagram struct {
	kind kind
	// RMCP+: the session header; payload is the payload field exactly.
	// IPMI 1.5: seq and sid from the session header, payload the IPMI
	// message, authCode the 16-byte auth code (MD5 only).
	sid, seq uint32
	payload  []byte
	authType uint8
	authCode []byte
	// full is the whole datagram: RMCP+ integrity covers bytes 4 to the
	// auth code, and an auth code length of 12 or 16 was found in it.
	full    []byte
	authLen int
}

// parse validates p and reports what it is, or why it is dropped.
func parse(p []byte) (datagram, string) {
	if len(p) > maxDatagram {
		return datagram{}, dropOversize
	}
	// RMCP header (§13.1.3): version 06h, reserved 00h, and for IPMI
	// sequence FFh (no RMCP ACK); the class byte has no ACK bit and no
	// reserved bits. Anything else is dropped as the spec says.
	if len(p) < 4 || p[0] != 0x06 || p[1] != 0x00 || p[3]&0xE0 != 0 {
		return datagram{}, dropRMCP
	}
	switch p[3] {
	case 0x06:
		return parseASF(p)
	case 0x07:
		if p[2] != 0xFF {
			return datagram{}, dropRMCP
		}
	default:
		return datagram{}, dropRMCP
	}
	if len(p) < 5 {
		return datagram{}, dropRMCP
	}
	if p[4] == 0x06 {
		return parseRMCPPlus(p)
	}
	return parseV15(p)
}

// parseASF accepts only a Presence Ping (ASF 2.0 §3.2.4.1): IANA 4542,
// message type 80h, no data.
func parseASF(p []byte) (datagram, string) {
	if len(p) != 12 || binary.BigEndian.Uint32(p[4:8]) != 4542 || p[8] != 0x80 || p[10] != 0 || p[11] != 0 {
		return datagram{}, dropASF
	}
	return datagram{kind: kindPing, full: p}, ""
}

// parseV15 checks the IPMI 1.5 session wrapper (§22.12, Table 13-4):
// outside a session only auth type none with session ID and sequence 0 and
// a discovery or challenge command; inside one only MD5 with a session ID.
func parseV15(p []byte) (datagram, string) {
	d := datagram{kind: kindV15, authType: p[4], full: p}
	hdr := 4 + 1 + 4 + 4
	if len(p) < hdr+1 {
		return d, dropV15Header
	}
	d.seq = binary.LittleEndian.Uint32(p[5:9])
	d.sid = binary.LittleEndian.Uint32(p[9:13])
	switch d.authType {
	case authNone:
		if d.sid != 0 || d.seq != 0 {
			return d, dropV15Header
		}
	case authMD5:
		if d.sid == 0 || len(p) < hdr+16+1 {
			return d, dropV15Header
		}
		d.authCode = p[hdr : hdr+16]
		hdr += 16
	default:
		return d, dropV15Header
	}
	end := hdr + 1 + int(p[hdr])
	// A legacy pad byte may follow (ipmitool adds one for some lengths,
	// §13.6, for old NICs).
	if end > len(p) || len(p) > end+1 || (len(p) == end+1 && p[end] != 0) {
		return d, dropV15Header
	}
	d.payload = p[hdr+1 : end]
	if !validRequest(d.payload) {
		return d, dropMessage
	}
	if d.authType == authNone && !preSession(d.payload, cmdGetChannelAuthCaps, cmdGetSessionChall) {
		return d, dropPreSession
	}
	return d, ""
}

// parseRMCPPlus checks the RMCP+ session header (Table 13-8) and, by payload
// type, the payload and trailer sizes.
func parseRMCPPlus(p []byte) (datagram, string) {
	if len(p) < 16 {
		return datagram{}, dropRMCPPlus
	}
	d := datagram{full: p}
	flags, typ := p[5]&0xC0, p[5]&0x3F
	d.sid = binary.LittleEndian.Uint32(p[6:10])
	d.seq = binary.LittleEndian.Uint32(p[10:14])
	plen := int(binary.LittleEndian.Uint16(p[14:16]))
	if 16+plen > len(p) {
		return d, dropRMCPPlus
	}
	d.payload = p[16 : 16+plen]
	if d.sid == 0 || typ >= payloadOpenSession {
		// Outside a session nothing is encrypted or authenticated, the
		// sequence is 0 and nothing follows the payload.
		if flags != 0 || d.seq != 0 || d.sid != 0 || len(p) != 16+plen {
			return d, dropRMCPPlus
		}
		return parseSetup(d, typ)
	}
	switch typ {
	case payloadIPMI:
		d.kind = kindSession
	case payloadSOL:
		d.kind = kindSOL
	default:
		return d, dropRMCPPlus
	}
	// Suites 3 and 17, the only ones offered, encrypt and authenticate
	// every packet: IV plus whole AES blocks, then the trailer.
	if flags != flagEncrypted|flagAuthenticated || plen < 32 || (plen-16)%16 != 0 {
		return d, dropRMCPPlus
	}
	return checkTrailer(d, p, plen)
}

// checkTrailer checks the integrity trailer (§13.28.4): 0xFF pad bytes that
// make header through next header a multiple of 4, the pad length, next
// header 07h, and an auth code of 12 (HMAC-SHA1-96) or 16 (HMAC-SHA256-128)
// bytes.
func checkTrailer(d datagram, p []byte, plen int) (datagram, string) {
	pad := (4 - (12+plen+2)%4) % 4
	at := 16 + plen
	d.authLen = len(p) - at - pad - 2
	if d.authLen != 12 && d.authLen != 16 {
		return d, dropTrailer
	}
	for _, b := range p[at : at+pad] {
		if b != 0xFF {
			return d, dropTrailer
		}
	}
	if p[at+pad] != byte(pad) || p[at+pad+1] != 0x07 {
		return d, dropTrailer
	}
	return d, ""
}

// parseSetup checks the payloads that come before a session exists.
func parseSetup(d datagram, typ byte) (datagram, string) {
	n := len(d.payload)
	switch typ {
	case payloadIPMI:
		d.kind = kindPreSession
		if !validRequest(d.payload) {
			return d, dropMessage
		}
		if !preSession(d.payload, cmdGetChannelAuthCaps, cmdGetCipherSuites) {
			return d, dropPreSession
		}
	case payloadOpenSession:
		// Table 13-9: fixed 32 bytes, three 8-byte algorithm records.
		d.kind = kindOpenSession
		if n != 32 {
			return d, dropSetupPayload
		}
	case payloadRAKP1:
		// Table 13-11: 28 bytes then the user name, at most 16 bytes, and
		// the length byte must say exactly how many follow.
		d.kind = kindRAKP1
		if n < 28 || n > 28+16 || int(d.payload[27]) != n-28 {
			return d, dropSetupPayload
		}
	case payloadRAKP3:
		// Table 13-13: 8 bytes then the key exchange code: none (a
		// console reporting an error), 20 (HMAC-SHA1) or 32 (HMAC-SHA256).
		d.kind = kindRAKP3
		if n != 8 && n != 8+20 && n != 8+32 {
			return d, dropSetupPayload
		}
	default:
		return d, dropRMCPPlus
	}
	return d, ""
}

// validRequest checks an IPMI request message (§13.8, Figure 13-4): at
// least rsAddr, netFn/LUN, checksum, rqAddr, rqSeq/LUN, command and
// checksum; both checksums right; a request (even) NetFn.
func validRequest(m []byte) bool {
	if len(m) < 7 || m[1]>>2&1 != 0 {
		return false
	}
	if m[0]+m[1]+m[2] != 0 {
		return false
	}
	var sum byte
	for _, b := range m[3:] {
		sum += b
	}
	return sum == 0
}

// preSession reports whether the request m is an App command in allowed.
func preSession(m []byte, allowed ...byte) bool {
	if m[1]>>2 != netFnApp {
		return false
	}
	for _, c := range allowed {
		if m[5] == c {
			return true
		}
	}
	return false
}
