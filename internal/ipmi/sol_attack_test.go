package ipmi

import (
	"strings"
	"testing"
	"time"
)

// solAttacks are SOL packets from a hostile network: before activation,
// from a session that does not own the payload, replayed, forged,
// malformed or out of step.
var solAttacks = []struct {
	name     string
	activate bool
	attack   func(owner, other *rawConsole)
	answered bool   // the owner gets an answer
	typed    string // what reaches the system
	drop     string // the drop counted, if any
}{
	{"before activation", false, func(owner, _ *rawConsole) {
		owner.sendSOL(1, 0, 0, 0, "reboot\r")
	}, false, "", dropSOLInactive},
	{"from another session", true, func(_, other *rawConsole) {
		other.sendSOL(1, 0, 0, 0, "reboot\r")
	}, false, "", dropSOLInactive},
	{"replayed, from the console's address and another", true, func(owner, other *rawConsole) {
		p := owner.packet(payloadSOL, []byte{1, 0, 0, 0, 'x'})
		owner.send(p)
		owner.send(p)
		_, _ = other.c.WriteToUDP(p, owner.to)
	}, true, "x", dropReplay},
	{"forged auth code", true, func(owner, _ *rawConsole) {
		p := owner.packet(payloadSOL, []byte{1, 0, 0, 0, 'x'})
		p[len(p)-1] ^= 1
		owner.send(p)
	}, false, "", dropAuth},
	{"oversized", true, func(owner, _ *rawConsole) {
		owner.sendSOL(1, 0, 0, 0, strings.Repeat("x", solMaxChars+1))
	}, false, "", dropMessage},
	{"shorter than its header", true, func(owner, _ *rawConsole) {
		owner.send(owner.packet(payloadSOL, []byte{1, 0}))
	}, false, "", dropMessage},
	{"ACK of a packet never sent", true, func(owner, _ *rawConsole) {
		owner.sendSOL(0, 9, 200, 0x40, "")
	}, false, "", ""},
	{"sequence number out of range, every operation", true, func(owner, _ *rawConsole) {
		owner.sendSOL(0xFF, 0xFF, 0xFF, 0xFF, "y")
	}, true, "y", ""},
	{"ACK-only packet carrying data", true, func(owner, _ *rawConsole) {
		owner.sendSOL(0, 0, 0, 0, "z")
	}, false, "", ""},
}

// Each of solAttacks gets silence or a clean answer, types nothing it
// should not, and the endpoint serves on without a panic.
func TestSOLHostilePackets(t *testing.T) {
	t.Parallel()
	for _, tc := range solAttacks {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := serveSOL(t, Config{})
			tg.c.SetEcho(false)
			owner := dialRaw(t, tg.addr, "127.0.0.1", 4)
			other := dialRaw(t, tg.addr, "127.0.0.2", 4)
			if tc.activate {
				if cc := owner.activate(); cc != 0 {
					t.Fatalf("activate: %02x", cc)
				}
			}
			tc.attack(owner, other)
			if p := owner.solPacket(300 * time.Millisecond); (p != nil) != tc.answered {
				t.Errorf("answer % x, want one: %v", p, tc.answered)
			}
			if p := owner.solPacket(100 * time.Millisecond); p != nil {
				t.Errorf("a second answer: % x", p)
			}
			if got := tg.c.Typed(); got != tc.typed {
				t.Errorf("typed %q, want %q", got, tc.typed)
			}
			if tc.drop != "" && tg.obs.dropped(tc.drop) == 0 {
				t.Errorf("no %s drop counted", tc.drop)
			}
			if cc, _ := owner.request(netFnApp, 0x01); cc != 0 {
				t.Errorf("Get Device ID afterwards: %02x", cc)
			}
			if _, _, _, panics := tg.obs.read(); panics != 0 {
				t.Errorf("%d panics", panics)
			}
		})
	}
}
