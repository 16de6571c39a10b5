package console

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// closedByServer sends b on a fresh connection and reports whether the
// concentrator closes it.
func closedByServer(t *testing.T, addr string, b []byte) bool {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go conn.Write(b)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	// EOF or a reset: either way the concentrator closed it.
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func rep(b []byte, n int) []byte { return bytes.Repeat(b, n) }

func garbage(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestHostileInput(t *testing.T) {
	hello := []byte{cmdIAC, cmdWill, optVMware}
	tests := []struct {
		name  string
		input []byte
		stat  func(Stats) uint64
	}{
		{"endless subnegotiation", append(hello, append([]byte{cmdIAC, cmdSB, optVMware}, rep([]byte{'x'}, 4096)...)...),
			func(s Stats) uint64 { return s.ProtocolErrors }},
		{"IAC other than IAC or SE inside a subnegotiation", append(hello, cmdIAC, cmdSB, optVMware, 0, cmdIAC, 'x'),
			func(s Stats) uint64 { return s.ProtocolErrors }},
		{"flood of IAC NOP", rep([]byte{cmdIAC, 241}, 5000),
			func(s Stats) uint64 { return s.ProtocolErrors }},
		{"option flapping", rep([]byte{cmdIAC, cmdWill, optSGA, cmdIAC, cmdWont, optSGA}, 2000),
			func(s Stats) uint64 { return s.ProtocolErrors }},
		{"output without ever naming the VM", append(hello, rep([]byte("x"), 200<<10)...),
			func(s Stats) uint64 { return s.Unidentified }},
		{"silence", nil,
			func(s Stats) uint64 { return s.Unidentified }},
		{"a plain telnet client refusing the extension", []byte{cmdIAC, cmdWont, optVMware},
			func(s Stats) uint64 { return s.Unidentified }},
		{"VMware sub-options without WILL VMWARE-TELNET-EXT are ignored", appendSubneg(nil, optVMware, []byte{vmVCUUID}, []byte(vmA.instance)),
			func(s Stats) uint64 { return s.Unidentified }},
		{"PEER of no vMotion", appendSubneg(hello, optVMware, []byte{vmotionPeer}, make([]byte, 20)),
			func(s Stats) uint64 { return s.ProtocolErrors }},
		{"random bytes", garbage(256 << 10),
			func(s Stats) uint64 { return s.ProtocolErrors + s.Unidentified }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, Config{IdentifyTimeout: 300 * time.Millisecond})
			if !closedByServer(t, tc.addr, tt.input) {
				t.Fatal("connection left open")
			}
			deadline := time.Now().Add(2 * time.Second)
			for tt.stat(tc.Stats()) != 1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if st := tc.Stats(); tt.stat(st) != 1 || st.Consoles != 0 {
				t.Errorf("stats %+v, want the close counted once and no console", st)
			}
		})
	}
}

func TestConnectionLimits(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		open      int
		wantAlive int
	}{
		{"per source", Config{MaxConnectionsPerSource: 3}, 5, 3},
		{"in all", Config{MaxConnections: 2}, 4, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, tt.cfg)
			var conns []net.Conn
			for range tt.open {
				conn, err := net.Dial("tcp", tc.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conns = append(conns, conn)
			}
			deadline := time.Now().Add(5 * time.Second)
			for tc.Stats().Refused != uint64(tt.open-tt.wantAlive) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if st := tc.Stats(); st.Refused != uint64(tt.open-tt.wantAlive) || st.Active != int64(tt.wantAlive) {
				t.Errorf("stats %+v, want %d refused and %d active", st, tt.open-tt.wantAlive, tt.wantAlive)
			}
		})
	}
}

func TestUnknownVMPolicy(t *testing.T) {
	refuse := errors.New("not a VM of this bridge")
	tests := []struct {
		name   string
		accept func(Identity) error
		want   bool
	}{
		{"kept by default", nil, true},
		{"kept when Accept agrees", func(id Identity) error { return nil }, true},
		{"refused when Accept refuses", func(Identity) error { return refuse }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, Config{Accept: tt.accept})
			h := dialHost(t, tc.addr, vmA)
			if !tt.want {
				if !h.closed() {
					t.Fatal("refused VM's connection left open")
				}
				if st := tc.Stats(); st.Rejected != 1 || st.Consoles != 0 {
					t.Errorf("stats %+v, want 1 rejected, no console", st)
				}
				return
			}
			waitConsole(t, tc, vmAInstance)
		})
	}
}

func TestConsoleLimitEvictsLongestDisconnected(t *testing.T) {
	tc := startConc(t, Config{MaxConsoles: 2})
	ha := dialHost(t, tc.addr, vmA)
	ca := waitConsole(t, tc, vmAInstance)
	hb := dialHost(t, tc.addr, vmB)
	waitConsole(t, tc, NormalizeUUID(vmB.instance))
	vmC := fakeVM{instance: "50 00 00 00 00 00 00 00-00 00 00 00 00 00 00 0c", name: "vm-c"}
	// All connected: a third VM is refused.
	if hc := dialHost(t, tc.addr, vmC); !hc.closed() {
		t.Fatal("third VM accepted past the limit")
	}
	ha.conn.Close()
	tc.waitEvent(t, EventDisconnected)
	sub := ca.Subscribe(false)
	dialHost(t, tc.addr, vmC)
	waitConsole(t, tc, NormalizeUUID(vmC.instance))
	if tc.Lookup(vmAInstance) != nil {
		t.Error("the disconnected VM's console is still kept")
	}
	if _, ok := <-sub.C; ok {
		t.Error("the evicted console's reader was not closed")
	}
	_ = hb
}

func TestSlowReaderDoesNotBlock(t *testing.T) {
	tc := startConc(t, Config{SubscriberQueue: 64, BufferSize: 1 << 10})
	h := dialHost(t, tc.addr, vmA)
	c := waitConsole(t, tc, vmAInstance)
	stuck := c.Subscribe(false) // never read
	live := c.Subscribe(false)
	const chunks = 300
	got := make(chan int)
	go func() {
		n := 0
		for chunk := range live.C {
			n += len(chunk)
			if bytes.HasSuffix(chunk, []byte("END")) {
				break
			}
		}
		got <- n
	}()
	line := bytes.Repeat([]byte("y"), 100)
	for range chunks {
		h.print(string(line))
		time.Sleep(100 * time.Microsecond)
	}
	h.print("END")
	n := <-got
	if n != chunks*len(line)+3 {
		t.Errorf("live reader got %d bytes, want %d", n, chunks*len(line)+3)
	}
	if stuck.Dropped() == 0 || c.Stats().Dropped != stuck.Dropped() {
		t.Errorf("stuck reader dropped %d, console counts %d", stuck.Dropped(), c.Stats().Dropped)
	}
	if snap := c.Snapshot(); len(snap) != 1<<10 || !bytes.HasSuffix(snap, []byte("END")) {
		t.Errorf("ring holds %d bytes ending %q, want the last 1 KiB", len(snap), snap[len(snap)-3:])
	}
}
