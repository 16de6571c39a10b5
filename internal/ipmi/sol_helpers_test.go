package ipmi

import (
	"encoding/binary"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/crypto"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// consoleFake is a machine whose BMC offers c as its serial console.
func consoleFake(name string, c machine.SerialConsole) machine.Machine {
	m := newFake(name)
	m.Console = c
	return m
}

// rawConsole is a remote console written for the tests: an RMCP+ session
// (suite 17, as admin) it opened itself, so that it can send any SOL
// packet, well-formed or not, and see each packet the BMC sends.
type rawConsole struct {
	t    testing.TB
	c    *net.UDPConn
	to   *net.UDPAddr
	sid  uint32 // the BMC's session ID, in what the console sends
	seq  uint32
	seal *sealer
	sol  [][]byte // SOL packets received while waiting for a reply
}

// dialRaw logs in from source address ip at privilege priv (2 User, 3
// Operator, 4 Administrator).
func dialRaw(t testing.TB, to *net.UDPAddr, ip string, priv byte) *rawConsole {
	t.Helper()
	c := from(t, ip)
	const console = 0xC0501E
	r := exchange(c, to, openSessionRequest(console), time.Second)
	if len(r) < 28 || r[17] != 0 {
		t.Fatalf("open session: % x", r)
	}
	sid := binary.LittleEndian.Uint32(r[24:28])
	role := 0x10 | priv // name-only lookup
	payload := binary.LittleEndian.AppendUint32([]byte{0, 0, 0, 0}, sid)
	payload = append(append(payload, make([]byte, 16)...), role, 0, 0, 5)
	payload = append(payload, "admin"...)
	r = exchange(c, to, rmcpPlus(payloadRAKP1, 0, 0, payload), time.Second)
	if len(r) < 16+40 || r[17] != 0 {
		t.Fatalf("RAKP 2: % x", r)
	}
	rc, rm := r[16+8:16+24], make([]byte, 16)
	kuid := crypto.PadPassword20([]byte("password"))
	code, err := crypto.RAKP3AuthCode(types.AuthAlg_HMAC_SHA256, rc, console, role, "admin", kuid)
	if err != nil {
		t.Fatal(err)
	}
	if r = exchange(c, to, rakp3(sid, 0, code), time.Second); len(r) < 18 || r[17] != 0 {
		t.Fatalf("RAKP 4: % x", r)
	}
	_, k1, k2, err := crypto.DeriveSessionKeys(types.AuthAlg_HMAC_SHA256, rm, rc, role, "admin", kuid)
	if err != nil {
		t.Fatal(err)
	}
	seal, err := newSealer(types.IntegrityAlg_HMAC_SHA256_128, k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	return &rawConsole{t: t, c: c, to: to, sid: sid, seal: seal}
}

// packet seals payload of type typ as the console's next packet.
func (rc *rawConsole) packet(typ byte, payload []byte) []byte {
	rc.seq++
	rc.seal.mu.Lock()
	defer rc.seal.mu.Unlock()
	return slices.Clone(rc.seal.seal(typ, rc.sid, rc.seq, payload))
}

func (rc *rawConsole) send(p []byte) { _, _ = rc.c.WriteToUDP(p, rc.to) }

// sendSOL sends a SOL packet: sequence, ACKed sequence, accepted count,
// operation, then data.
func (rc *rawConsole) sendSOL(seq, ack, count, op byte, data string) {
	rc.send(rc.packet(payloadSOL, append([]byte{seq, ack, count, op}, data...)))
}

// next is the next packet the BMC sends within wait, opened: its payload
// type and plaintext, or ok false.
func (rc *rawConsole) next(wait time.Duration) (typ byte, plain []byte, ok bool) {
	rc.t.Helper()
	buf := make([]byte, 1024)
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	n, _, err := rc.c.ReadFromUDP(buf)
	if err != nil {
		return 0, nil, false
	}
	d, why := parse(buf[:n])
	if why != "" || (d.kind != kindSession && d.kind != kindSOL) {
		rc.t.Fatalf("the BMC sent a packet the console cannot take (%q): % x", why, buf[:n])
	}
	rc.seal.mu.Lock()
	defer rc.seal.mu.Unlock()
	if !rc.seal.authentic(d.full, d.authLen) {
		rc.t.Fatal("the BMC's packet does not authenticate")
	}
	p, ok := rc.seal.open(d.payload)
	if !ok {
		rc.t.Fatal("the BMC's packet does not decrypt")
	}
	return buf[5] & 0x3F, slices.Clone(p), true
}

// request sends an IPMI request and returns the completion code and data
// of its reply, keeping SOL packets that come first in rc.sol.
func (rc *rawConsole) request(netFn, cmd byte, data ...byte) (byte, []byte) {
	rc.t.Helper()
	rc.send(rc.packet(payloadIPMI, msg(netFn, cmd, data...)))
	for {
		typ, p, ok := rc.next(2 * time.Second)
		if !ok {
			rc.t.Fatalf("no reply to NetFn %02x command %02x", netFn, cmd)
		}
		if typ == payloadSOL {
			rc.sol = append(rc.sol, p)
			continue
		}
		return p[6], p[7 : len(p)-1]
	}
}

func (rc *rawConsole) activate() byte {
	cc, _ := rc.request(netFnApp, 0x48, 1, 1, 0xC0, 0, 0, 0)
	return cc
}

func (rc *rawConsole) deactivate() byte {
	cc, _ := rc.request(netFnApp, 0x49, 1, 1, 0, 0, 0, 0)
	return cc
}

// solPacket is the next SOL packet the BMC sends within wait, from those
// kept first; nil if none.
func (rc *rawConsole) solPacket(wait time.Duration) []byte {
	rc.t.Helper()
	if len(rc.sol) > 0 {
		p := rc.sol[0]
		rc.sol = rc.sol[1:]
		return p
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		typ, p, ok := rc.next(time.Until(deadline))
		if ok && typ == payloadSOL {
			return p
		}
		if ok {
			rc.t.Fatalf("an IPMI message nobody asked for: % x", p)
		}
	}
	return nil
}

// notice reads SOL packets, ACKing output, until the deactivating
// notice, and reports whether it came within wait.
func (rc *rawConsole) notice(wait time.Duration) bool {
	rc.t.Helper()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		p := rc.solPacket(time.Until(deadline))
		switch {
		case p == nil:
			return false
		case p[3]&solStatusDeactivating != 0:
			return true
		case p[0] != 0:
			rc.sendSOL(0, p[0], byte(len(p)-4), 0, "")
		}
	}
	return false
}

// output reads the system's output until want has arrived, ACKing each
// packet as a console does, and returns all of it.
func (rc *rawConsole) output(want string) string {
	rc.t.Helper()
	var got []byte
	for !strings.Contains(string(got), want) {
		p := rc.solPacket(3 * time.Second)
		if p == nil {
			rc.t.Fatalf("output %q, then nothing; want %q", got, want)
		}
		if p[0] != 0 {
			got = append(got, p[4:]...)
			rc.sendSOL(0, p[0], byte(len(p)-4), 0, "")
		}
	}
	return string(got)
}
