package ipmi

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
)

// FuzzSOLPayload is FuzzDatagram past the session's cryptography, which a
// fuzzer cannot forge: each input is the plaintext of a SOL packet,
// sealed in a session whose payload is active and served by the loop's
// datagram handler, so that it reaches go-ipmi's SOL state machine and
// the console. Nothing may panic (the handler's recover counts it), and
// no answer may carry more than one SOL packet's worth.
func FuzzSOLPayload(f *testing.F) {
	obs := &solObserver{}
	srv, console := fuzzSOLServer(f, obs)
	if cc := fuzzRequest(srv, console, msg(netFnApp, 0x48, 1, 1, 0xC0, 0, 0, 0)); cc != 0 {
		f.Fatalf("activate: %02x", cc)
	}
	for _, seed := range [][]byte{
		{1, 0, 0, 0, 'l', 's', '\r'},
		{0, 1, 4, 0},
		{2, 1, 0, 0x40},
		{3, 0, 0, 0x1F, 'x'},
		{0, 0, 0, 0x01},
		{0xFF, 0xFF, 0xFF, 0xFF},
		{1, 2},
		append([]byte{4, 0, 0, 0}, make([]byte, solMaxChars+1)...),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		// Longer plaintext makes a datagram the front door drops as
		// oversize (FuzzDatagram's ground).
		p = p[:min(len(p), maxSOLPlain)]
		srv.handle(console.packet(payloadSOL, p), fuzzPeer)
		for {
			select {
			case r := <-srv.conn.(*memConn).out:
				if len(r) > 16+16+4+solMaxChars+16+22 {
					t.Fatalf("a %d-byte SOL packet got a %d-byte answer", len(p), len(r))
				}
				continue
			default:
			}
			break
		}
		if _, _, _, panics := obs.read(); panics != 0 {
			t.Fatalf("%d panics", panics)
		}
	})
}

// maxSOLPlain is the longest plaintext whose sealed datagram stays within
// maxDatagram: 16 bytes of header, 16 of IV, the plaintext padded to AES
// blocks, at most 5 of trailer and 16 of auth code.
const maxSOLPlain = maxDatagram - 16 - 16 - 5 - 16 - 16

// fuzzSOLServer is a server on an in-memory socket whose machine has a
// console, with one session open as admin, and the console's end of it.
func fuzzSOLServer(f *testing.F, obs Observer) (*server, *rawConsole) {
	c := clienttest.NewConsole()
	c.SetEcho(false)
	m := consoleFake("fuzz", c)
	id, _ := m.Identity(context.Background())
	guid, _ := SMBIOSGUID(id.UUID)
	st, err := newStorage(id)
	if err != nil {
		f.Fatal(err)
	}
	cfg := Config{Username: "admin", Password: "password", Observer: obs}
	b, err := newBMC(guid, st, m, cfg)
	if err != nil {
		f.Fatal(err)
	}
	srv := newServer(newMemConn(), b, m, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Cleanup(srv.bmc.SOL.CloseAll)
	user, _ := b.Users.GetByName("admin")
	const sid = 0x5011
	sess := srv.activate(sid, &rakp{console: 0xC0, auth: types.AuthAlg_HMAC_SHA256, integ: types.IntegrityAlg_HMAC_SHA256_128,
		crypt: types.CryptAlg_AES_CBC_128, maxPriv: bmc.PrivilegeLevelAdministrator, role: 0x14, name: "admin", user: user})
	seal, err := newSealer(types.IntegrityAlg_HMAC_SHA256_128, sess.s.K1, sess.s.K2)
	if err != nil {
		f.Fatal(err)
	}
	return srv, &rawConsole{t: f, sid: sid, seal: seal}
}

// fuzzRequest serves an IPMI request of console's session and returns
// the completion code of its answer.
func fuzzRequest(srv *server, console *rawConsole, m []byte) byte {
	srv.handle(console.packet(payloadIPMI, m), fuzzPeer)
	r := <-srv.conn.(*memConn).out
	d, _ := parse(r)
	console.seal.mu.Lock()
	defer console.seal.mu.Unlock()
	plain, ok := console.seal.open(d.payload)
	if !ok || len(plain) < 7 {
		return 0xFF
	}
	return plain[6]
}
