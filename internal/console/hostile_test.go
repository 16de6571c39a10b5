package console

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
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

// waitStat waits for a counter to reach want.
func waitStat(t *testing.T, tc *testConc, what string, stat func(Stats) uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for stat(tc.Stats()) != want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := stat(tc.Stats()); got != want {
		t.Fatalf("%s = %d, want %d (stats %+v)", what, got, want, tc.Stats())
	}
}

func protocolErrors(s Stats) uint64 { return s.ProtocolErrors }

// connCount is how many host connections c holds.
func connCount(c *Console) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

// waitConns waits for c to hold n host connections.
func waitConns(c *Console, n int) {
	for deadline := time.Now().Add(5 * time.Second); connCount(c) != n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// A second or replayed VMOTION-PEER, from whoever saw the secret, is
// refused: the first target keeps the vMotion, the replayer never joins
// the console, not even with the output it sent first, and gets no
// keystroke.
func TestVMotionPeerOnce(t *testing.T) {
	seq := []byte{5, 0xff, 6}
	tests := []struct {
		name string
		// replay sends the PEER the target sent, and returns the
		// connection that sent it.
		replay func(t *testing.T, m migrating) *fakeHost
		// targetGone: the first target closed before the replay, so the
		// source aborts; otherwise the first target completes.
		targetGone bool
	}{
		{"on a fresh connection", func(t *testing.T, m migrating) *fakeHost {
			return dialHost(t, m.tc.addr, fakeVM{mute: true}, appendEscaped(nil, []byte("evil login: "), true),
				appendSubneg(nil, optVMware, []byte{vmotionPeer}, m.goahead))
		}, false},
		{"on a fresh connection naming the VM", func(t *testing.T, m migrating) *fakeHost {
			return dialHost(t, m.tc.addr, vmA, appendSubneg(nil, optVMware, []byte{vmotionPeer}, m.goahead))
		}, false},
		{"on a connection of the VM already attached", func(t *testing.T, m migrating) *fakeHost {
			h := dialHost(t, m.tc.addr, vmA)
			waitConns(m.c, 3)
			h.send(vmotionPeer, m.goahead)
			return h
		}, false},
		{"after the first target's connection closed", func(t *testing.T, m migrating) *fakeHost {
			m.dst.conn.Close()
			waitConns(m.c, 1)
			return dialHost(t, m.tc.addr, fakeVM{mute: true}, appendSubneg(nil, optVMware, []byte{vmotionPeer}, m.goahead))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startVMotion(t, seq)
			r := tt.replay(t, m)
			if !r.closed() {
				t.Fatal("the replayed PEER's connection left open")
			}
			waitStat(t, m.tc, "protocol errors", protocolErrors, 1)
			// The vMotion ends as if no replay had been, and the host that
			// ends it keeps the keystrokes.
			end, code, kind := m.dst, byte(vmotionComplete), EventMigrated
			if tt.targetGone {
				end, code, kind = m.src, vmotionAbort, EventMigrationAborted
			}
			end.send(code, seq)
			m.tc.waitEvent(t, kind)
			m.c.Write([]byte("after"))
			end.waitKeys("heldafter")
			if len(r.keys) != 0 {
				t.Errorf("the replayer got keystrokes %q", <-r.keys)
			}
			if snap := m.c.Snapshot(); bytes.Contains(snap, []byte("evil")) {
				t.Errorf("the replayer's output reached the console: %q", snap)
			}
		})
	}
}

// A connection naming the VM by a weaker UUID than its console knows (the
// BIOS UUID alone, a guest can read it) cannot join the console, whether
// the VM's host is connected or not; one that joined a console knowing
// only the BIOS UUID (registered before the VM's host ever connected) is
// closed once the VM's host gives the instance UUID.
func TestIdentityTakeover(t *testing.T) {
	biosOnly := fakeVM{bios: vmA.bios, name: "vm-a", silent: []byte{getVMVCUUID}}
	junkInstance := fakeVM{instance: "not a uuid", bios: vmA.bios, name: "vm-a"}
	tests := []struct {
		name     string
		impostor fakeVM
		// hostGone: the VM's host disconnected before the impostor came.
		hostGone bool
	}{
		{"BIOS UUID only, the VM's host connected", biosOnly, false},
		{"BIOS UUID only, the VM's host gone", biosOnly, true},
		{"an instance UUID that is not one", junkInstance, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, Config{})
			h := dialHost(t, tc.addr, vmA)
			c := waitConsole(t, tc, vmAInstance)
			if tt.hostGone {
				h.conn.Close()
				tc.waitEvent(t, EventDisconnected)
			}
			imp := dialHost(t, tc.addr, tt.impostor, appendEscaped(nil, []byte("evil login: "), true))
			if !imp.closed() {
				t.Fatal("the impostor's connection left open")
			}
			waitStat(t, tc, "protocol errors", protocolErrors, 1)
			if st := tc.Stats(); st.Consoles != 1 || c.Stats().Connections != 1 || tc.Lookup(vmABIOS) != c {
				t.Errorf("stats %+v, console %+v: want the impostor nowhere", st, c.Stats())
			}
			_, err := c.Write([]byte("secret\r"))
			if tt.hostGone {
				if !errors.Is(err, ErrNotConnected) {
					t.Errorf("Write with only the impostor around: %v, want ErrNotConnected", err)
				}
			} else {
				h.waitKeys("secret\r")
			}
			if len(imp.keys) != 0 || bytes.Contains(c.Snapshot(), []byte("evil")) {
				t.Errorf("the impostor got keystrokes or showed %q", c.Snapshot())
			}
		})
	}
}

func TestIdentityTakeoverOfARegisteredConsole(t *testing.T) {
	tc := startConc(t, Config{})
	c := tc.Register(Identity{BIOSUUID: vmABIOS})
	imp := dialHost(t, tc.addr, fakeVM{bios: vmA.bios, silent: []byte{getVMVCUUID}})
	tc.waitEvent(t, EventConnected)
	h := dialHost(t, tc.addr, vmA)
	if !imp.closed() {
		t.Fatal("the connection without instance UUID was kept beside the VM's host's")
	}
	if c.Identity().InstanceUUID != vmAInstance || connCount(c) != 1 {
		t.Fatalf("console %+v with %d connections, want the host's alone", c.Identity(), connCount(c))
	}
	c.Write([]byte("pw\r"))
	h.waitKeys("pw\r")
	h.conn.Close()
	tc.waitEvent(t, EventDisconnected)
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Write after the host left: %v, want ErrNotConnected", err)
	}
	if len(imp.keys) != 0 {
		t.Errorf("the impostor got keystrokes %q", <-imp.keys)
	}
}

// A connection from outside AllowedSources is closed before anything is
// read or sent, and counted as refused.
func TestAllowedSources(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name    string
		allowed []netip.Prefix
		from    string
		served  bool
	}{
		{"every source when empty", nil, "127.0.0.2", true},
		{"inside the only prefix", []netip.Prefix{p("127.0.0.0/8")}, "127.0.0.3", true},
		{"inside one of several", []netip.Prefix{p("10.0.0.0/8"), p("127.0.0.4/32")}, "127.0.0.4", true},
		{"outside every prefix", []netip.Prefix{p("127.0.0.4/32"), p("127.1.0.0/16")}, "127.0.0.5", false},
		{"an unmasked prefix", []netip.Prefix{p("127.0.0.9/30")}, "127.0.0.10", true},
		{"an IPv4-mapped prefix matches IPv4", []netip.Prefix{p("::ffff:127.0.0.0/104")}, "127.0.0.6", true},
		{"an IPv6 prefix does not match IPv4", []netip.Prefix{p("::/0")}, "127.0.0.7", false},
		{"an invalid prefix matches nothing", []netip.Prefix{{}}, "127.0.0.8", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, Config{AllowedSources: tt.allowed})
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}}
			conn, err := d.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			// A served connection is sent our telnet negotiation at once.
			n, err := conn.Read(make([]byte, 64))
			if served := n > 0; served != tt.served {
				t.Fatalf("served %v (%d bytes, %v), want %v", served, n, err, tt.served)
			}
			want := Stats{Accepted: 1}
			if !tt.served {
				want = Stats{Refused: 1}
			}
			if st := tc.Stats(); st.Accepted != want.Accepted || st.Refused != want.Refused {
				t.Errorf("stats %+v, want %d accepted, %d refused", st, want.Accepted, want.Refused)
			}
		})
	}
}

// The source addresses a listener may report, dual-stack and zoned ones
// included, are matched as the address they hold.
func TestAllowedSourceForms(t *testing.T) {
	cc := New(Config{AllowedSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fe80::/10")}})
	pipe, other := net.Pipe()
	defer pipe.Close()
	defer other.Close()
	tests := []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.2"), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2).To4(), Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 1}, false},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, false},
		{&net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: 1}, true},
		{pipe.RemoteAddr(), false},
	}
	for _, tt := range tests {
		if got := cc.allowed(tt.addr); got != tt.want {
			t.Errorf("allowed(%v) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
