package console

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// migrating is a VM in the middle of a vMotion: GOAHEAD sent to the
// source, a keystroke held, the target's PEER accepted.
type migrating struct {
	tc       *testConc
	c        *Console
	sub      *Subscription
	src, dst *fakeHost
	// goahead is the sequence and secret, as VMOTION-PEER carries them.
	goahead []byte
}

func startVMotion(t *testing.T, seq []byte) migrating {
	t.Helper()
	tc := startConc(t, Config{})
	m := migrating{tc: tc, src: dialHost(t, tc.addr, vmA)}
	m.c = waitConsole(t, tc, vmAInstance)
	m.sub = m.c.Subscribe(true)
	m.src.print("before\r\n")
	readUntil(t, m.sub, "before")
	m.src.send(vmotionBegin, seq)
	goahead := m.src.waitExt(vmotionGoahead)
	m.goahead = goahead
	if !bytes.HasPrefix(goahead, seq) || len(goahead) != len(seq)+secretLen {
		t.Fatalf("GOAHEAD %x, want the sequence %x and a %d-byte secret", goahead, seq, secretLen)
	}
	// Keystrokes typed during the vMotion wait for its end.
	if _, err := m.c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	m.src.noKeys(50 * time.Millisecond)
	m.dst = dialHost(t, tc.addr, vmA, appendSubneg(nil, optVMware, []byte{vmotionPeer}, goahead))
	if ok := m.dst.waitExt(vmotionPeerOK); !bytes.Equal(ok, seq) {
		t.Fatalf("PEER-OK %x, want the sequence %x", ok, seq)
	}
	return m
}

func TestVMotion(t *testing.T) {
	tests := []struct {
		name string
		// seq is the host's opaque sequence; one holding 255 checks the
		// RFC 855 doubling both ways.
		seq []byte
	}{
		{"plain sequence", []byte{0, 1, 2, 3}},
		{"IAC in the sequence", []byte{0xff, 0xf0, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startVMotion(t, tt.seq)
			m.dst.send(vmotionComplete, tt.seq)
			m.tc.waitEvent(t, EventMigrated)
			m.dst.waitKeys("held")
			m.src.conn.Close()
			m.dst.print("after\r\n")
			readUntil(t, m.sub, "after")
			if got := string(m.c.Snapshot()); got != "before\r\nafter\r\n" {
				t.Errorf("log %q, want one log across both hosts", got)
			}
			m.c.Write([]byte("typed"))
			m.dst.waitKeys("typed")
			if !m.c.Connected() || m.c.Stats().Migrations != 1 {
				t.Errorf("connected %v, stats %+v after vMotion", m.c.Connected(), m.c.Stats())
			}
			if k, want := m.tc.kinds(), []EventKind{EventConnected, EventMigrated}; !slices.Equal(k, want) {
				t.Errorf("events %v, want %v", k, want)
			}
		})
	}
}

func TestVMotionAbort(t *testing.T) {
	seq := []byte{9, 9}
	m := startVMotion(t, seq)
	// A COMPLETE from the source, or with another sequence, is not the
	// end of this vMotion.
	m.src.send(vmotionComplete, seq)
	m.dst.send(vmotionComplete, []byte{9})
	m.src.send(vmotionAbort, seq)
	m.tc.waitEvent(t, EventMigrationAborted)
	m.src.waitKeys("held")
	m.dst.conn.Close()
	m.c.Write([]byte("after"))
	m.src.waitKeys("after")
	if k, want := m.tc.kinds(), []EventKind{EventConnected, EventMigrationAborted}; !slices.Equal(k, want) {
		t.Errorf("events %v, want %v", k, want)
	}
}

func TestVMotionRefusals(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, tc *testConc)
	}{
		{"BEGIN before the VM is known gets NOTNOW", func(t *testing.T, tc *testConc) {
			h := dialHost(t, tc.addr, fakeVM{mute: true}, appendSubneg(nil, optVMware, []byte{vmotionBegin}, []byte{7}))
			if got := h.waitExt(vmotionNotnow); !bytes.Equal(got, []byte{7}) {
				t.Errorf("NOTNOW %x, want the sequence 07", got)
			}
		}},
		{"PEER with a secret we did not issue is closed", func(t *testing.T, tc *testConc) {
			h := dialHost(t, tc.addr, vmB, appendSubneg(nil, optVMware, []byte{vmotionPeer}, []byte("seq-12345678")))
			if !h.closed() {
				t.Error("connection left open")
			}
		}},
		{"PEER naming another VM than the connection's is closed", func(t *testing.T, tc *testConc) {
			src := dialHost(t, tc.addr, vmA)
			waitConsole(t, tc, vmAInstance)
			src.send(vmotionBegin, []byte{1})
			goahead := src.waitExt(vmotionGoahead)
			other := dialHost(t, tc.addr, vmB)
			waitConsole(t, tc, NormalizeUUID(vmB.instance))
			other.send(vmotionPeer, goahead)
			if !other.closed() {
				t.Error("connection left open")
			}
		}},
		{"held keystrokes are bounded", func(t *testing.T, tc *testConc) {
			src := dialHost(t, tc.addr, vmA)
			c := waitConsole(t, tc, vmAInstance)
			src.send(vmotionBegin, []byte{1})
			src.waitExt(vmotionGoahead)
			if _, err := c.Write(make([]byte, pendingKeystrokesLimit)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("x")); err != ErrMigrationBacklog {
				t.Errorf("Write past the backlog: %v, want ErrMigrationBacklog", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, startConc(t, Config{IdentifyTimeout: time.Second}))
		})
	}
}

func TestVMotionExpires(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	tc := startConc(t, Config{MigrationTimeout: time.Minute, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	src := dialHost(t, tc.addr, vmA)
	c := waitConsole(t, tc, vmAInstance)
	src.send(vmotionBegin, []byte{1})
	src.waitExt(vmotionGoahead)
	c.Write([]byte("held "))
	src.noKeys(20 * time.Millisecond)
	now.Add(int64(2 * time.Minute))
	// The hosts never finished: held keystrokes go to the VM's host.
	if _, err := c.Write([]byte("then")); err != nil {
		t.Fatal(err)
	}
	src.waitKeys("held then")
}
