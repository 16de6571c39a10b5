package ipmi

import (
	"encoding/binary"
	"testing"
)

// msg builds an IPMI request message with correct checksums.
func msg(netFn, cmd byte, data ...byte) []byte {
	m := []byte{0x20, netFn << 2, 0, 0x81, 0x04, cmd}
	m[2] = -(m[0] + m[1])
	m = append(m, data...)
	var sum byte
	for _, b := range m[3:] {
		sum += b
	}
	return append(m, -sum)
}

// v15Frame wraps m in an IPMI 1.5 session header.
func v15Frame(auth byte, seq, sid uint32, code []byte, m []byte) []byte {
	p := []byte{0x06, 0x00, 0xff, 0x07, auth}
	p = binary.LittleEndian.AppendUint32(p, seq)
	p = binary.LittleEndian.AppendUint32(p, sid)
	p = append(p, code...)
	p = append(p, byte(len(m)))
	return append(p, m...)
}

// rmcpPlus frames a payload in an RMCP+ session header.
func rmcpPlus(typ byte, sid, seq uint32, payload []byte) []byte {
	p := []byte{0x06, 0x00, 0xff, 0x07, 0x06, typ}
	p = binary.LittleEndian.AppendUint32(p, sid)
	p = binary.LittleEndian.AppendUint32(p, seq)
	p = binary.LittleEndian.AppendUint16(p, uint16(len(payload)))
	return append(p, payload...)
}

// sealed is an in-session RMCP+ datagram shape: IV and one AES block, a
// correct trailer and a 16-byte auth code (contents need not verify).
func sealed(mutate func([]byte)) []byte {
	p := rmcpPlus(0xC0, 0x1234, 5, make([]byte, 32))
	pad := (4 - (12+32+2)%4) % 4
	for range pad {
		p = append(p, 0xFF)
	}
	p = append(p, byte(pad), 0x07)
	p = append(p, make([]byte, 16)...)
	if mutate != nil {
		mutate(p)
	}
	return p
}

func TestParse(t *testing.T) {
	t.Parallel()
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}
	authCaps := msg(netFnApp, cmdGetChannelAuthCaps, 0x8e, 0x04)
	rakp1 := func(ulen byte, name string) []byte {
		p := append(make([]byte, 27), ulen)
		return rmcpPlus(payloadRAKP1, 0, 0, append(p, name...))
	}
	with := func(p []byte, i int, b byte) []byte {
		q := append([]byte(nil), p...)
		q[i] = b
		return q
	}
	tests := []struct {
		name string
		p    []byte
		kind kind
		drop string
	}{
		{"asf ping", ping, kindPing, ""},
		{"asf pong", with(ping, 8, 0x40), 0, dropASF},
		{"asf with data", append(with(ping, 11, 1), 0), 0, dropASF},
		{"rmcp version 07", with(ping, 0, 0x07), 0, dropRMCP},
		{"rmcp reserved byte", with(ping, 1, 0x01), 0, dropRMCP},
		{"rmcp ack bit", with(ping, 3, 0x86), 0, dropRMCP},
		{"rmcp class 8", with(ping, 3, 0x08), 0, dropRMCP},
		{"ipmi rmcp sequence not ffh", with(v15Frame(authNone, 0, 0, nil, authCaps), 2, 0x00), 0, dropRMCP},
		{"short", []byte{0x06, 0x00}, 0, dropRMCP},
		{"oversize", append(v15Frame(authNone, 0, 0, nil, authCaps), make([]byte, maxDatagram)...), 0, dropOversize},
		{"1.5 auth caps", v15Frame(authNone, 0, 0, nil, authCaps), kindV15, ""},
		{"1.5 auth caps with legacy pad", append(v15Frame(authNone, 0, 0, nil, authCaps), 0), kindV15, ""},
		{"1.5 two trailing bytes", append(v15Frame(authNone, 0, 0, nil, authCaps), 0, 0), kindV15, dropV15Header},
		{"1.5 length past the end", with(v15Frame(authNone, 0, 0, nil, authCaps), 13, 200), kindV15, dropV15Header},
		{"1.5 bad checksum", with(v15Frame(authNone, 0, 0, nil, authCaps), 16, 0), kindV15, dropMessage},
		{"1.5 response netfn", v15Frame(authNone, 0, 0, nil, msg(netFnApp+1, cmdGetChannelAuthCaps)), kindV15, dropMessage},
		{"1.5 chassis control outside a session", v15Frame(authNone, 0, 0, nil, msg(0x00, 0x02, 0x01)), kindV15, dropPreSession},
		{"1.5 none with a session id", v15Frame(authNone, 0, 7, nil, authCaps), kindV15, dropV15Header},
		{"1.5 md2", v15Frame(0x01, 1, 7, make([]byte, 16), authCaps), kindV15, dropV15Header},
		{"1.5 straight password", v15Frame(0x04, 1, 7, make([]byte, 16), authCaps), kindV15, dropV15Header},
		{"1.5 md5 in session", v15Frame(authMD5, 1, 7, make([]byte, 16), msg(0x00, 0x01)), kindV15, ""},
		{"1.5 md5 without session", v15Frame(authMD5, 1, 0, make([]byte, 16), msg(0x00, 0x01)), kindV15, dropV15Header},
		{"1.5 md5 short auth code", v15Frame(authMD5, 1, 7, make([]byte, 3), nil), kindV15, dropV15Header},
		{"open session", openSessionRequest(1), kindOpenSession, ""},
		{"open session short", rmcpPlus(payloadOpenSession, 0, 0, make([]byte, 31)), kindOpenSession, dropSetupPayload},
		{"open session encrypted flag", with(openSessionRequest(1), 5, 0x90), 0, dropRMCPPlus},
		{"open session with a session id", with(openSessionRequest(1), 6, 1), 0, dropRMCPPlus},
		{"open session trailing byte", append(openSessionRequest(1), 0), 0, dropRMCPPlus},
		{"payload length past the end", with(openSessionRequest(1), 14, 33), 0, dropRMCPPlus},
		{"rakp1 admin", rakp1(5, "admin"), kindRAKP1, ""},
		{"rakp1 no name", rakp1(0, ""), kindRAKP1, ""},
		{"rakp1 length ffh (go-ipmi overflow)", rakp1Overflow, kindRAKP1, dropSetupPayload},
		{"rakp1 length 228", rakp1(228, ""), kindRAKP1, dropSetupPayload},
		{"rakp1 length says more than sent", rakp1(6, "admin"), kindRAKP1, dropSetupPayload},
		{"rakp1 name of 17", rakp1(17, "aaaaaaaaaaaaaaaaa"), kindRAKP1, dropSetupPayload},
		{"rakp3 error status", rmcpPlus(payloadRAKP3, 0, 0, make([]byte, 8)), kindRAKP3, ""},
		{"rakp3 sha1", rmcpPlus(payloadRAKP3, 0, 0, make([]byte, 28)), kindRAKP3, ""},
		{"rakp3 sha256", rmcpPlus(payloadRAKP3, 0, 0, make([]byte, 40)), kindRAKP3, ""},
		{"rakp3 odd length", rmcpPlus(payloadRAKP3, 0, 0, make([]byte, 20)), kindRAKP3, dropSetupPayload},
		{"rakp2 from a console", rmcpPlus(payloadRAKP2, 0, 0, make([]byte, 40)), 0, dropRMCPPlus},
		{"oem payload", rmcpPlus(0x02, 0, 0, make([]byte, 8)), 0, dropRMCPPlus},
		{"pre-session cipher suites", rmcpPlus(payloadIPMI, 0, 0, msg(netFnApp, cmdGetCipherSuites, 0x0e, 0, 0x80)), kindPreSession, ""},
		{"pre-session chassis control", rmcpPlus(payloadIPMI, 0, 0, msg(0x00, 0x02, 0x01)), kindPreSession, dropPreSession},
		{"pre-session sequence", rmcpPlus(payloadIPMI, 0, 3, msg(netFnApp, cmdGetCipherSuites, 0x0e, 0, 0x80)), 0, dropRMCPPlus},
		{"in session", sealed(nil), kindSession, ""},
		{"in session sol", sealed(func(p []byte) { p[5] = 0xC1 }), kindSOL, ""},
		{"in session not encrypted", sealed(func(p []byte) { p[5] = 0x40 }), 0, dropRMCPPlus},
		{"in session not whole blocks", sealed(func(p []byte) { p[14] = 33 }), 0, dropRMCPPlus},
		{"in session bad pad byte", sealed(func(p []byte) { p[16+32] = 0 }), 0, dropTrailer},
		{"in session bad next header", sealed(func(p []byte) { p[len(p)-17] = 0x06 }), 0, dropTrailer},
		{"in session short auth code", sealed(nil)[:16+32+4+10], 0, dropTrailer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, why := parse(tt.p)
			if why != tt.drop {
				t.Fatalf("drop reason %q, want %q", why, tt.drop)
			}
			if tt.kind != 0 && d.kind != tt.kind {
				t.Fatalf("kind %d, want %d", d.kind, tt.kind)
			}
		})
	}
}
