package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeVM is what a fake host says about its VM, in the .vmx form ESXi
// sends.
type fakeVM struct {
	instance, bios, name string
	// silent lists identity GETs the host answers with
	// UNKNOWN-SUBOPTION-RCVD-1, as a host that does not know them.
	silent []byte
	// mute: answer no GET at all.
	mute bool
}

var (
	vmA = fakeVM{instance: "50 2a 3c 4d 5e 6f 70 81-92 a3 b4 c5 d6 e7 f8 09", bios: "42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8", name: "vm-a"}
	vmB = fakeVM{instance: "50 00 00 00 00 00 00 00-00 00 00 00 00 00 00 0b", bios: "42 00 00 00 00 00 00 00-00 00 00 00 00 00 00 0b", name: "vm-b"}
)

const (
	vmAInstance = "502a3c4d-5e6f-7081-92a3-b4c5d6e7f809"
	vmABIOS     = "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"
)

// fakeHost plays an ESXi host's side of one VM serial port connection:
// telnet negotiation, VMWARE-TELNET-EXT answers, output and keystrokes.
type fakeHost struct {
	t    testing.TB
	conn net.Conn
	vm   fakeVM
	wmu  sync.Mutex
	// agreed records the options the host has answered, so it answers
	// each once (RFC 1143).
	agreed map[[2]byte]bool
	p      parser
	keys   chan []byte
	ext    chan []byte
	done   chan struct{}
}

// dialHost connects like a host whose VM has a vSPC serial port: WILL
// VMWARE-TELNET-EXT, the sub-options it knows, DO-PROXY; more (a
// VMOTION-PEER) may follow in extra.
func dialHost(t testing.TB, addr string, vm fakeVM, extra ...[]byte) *fakeHost {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{
		t: t, conn: conn, vm: vm, agreed: map[[2]byte]bool{},
		p:    parser{maxSub: 4096},
		keys: make(chan []byte, 1024), ext: make(chan []byte, 1024), done: make(chan struct{}),
	}
	t.Cleanup(func() { h.conn.Close(); <-h.done })
	go h.read()
	hello := []byte{cmdIAC, cmdWill, optVMware, cmdIAC, cmdWill, optBinary, cmdIAC, cmdDo, optBinary}
	hello = appendSubneg(hello, optVMware, []byte{knownSuboptions1}, ourSuboptions)
	hello = appendSubneg(hello, optVMware, []byte{doProxy}, []byte("SvSPC.py"))
	for _, e := range extra {
		hello = append(hello, e...)
	}
	h.raw(hello)
	return h
}

func (h *fakeHost) read() {
	defer close(h.done)
	buf := make([]byte, 4096)
	for {
		n, err := h.conn.Read(buf)
		out, perr := h.p.feed(buf[:n], nil, h)
		if len(out) > 0 {
			h.keys <- out
		}
		if err != nil || perr != nil {
			return
		}
	}
}

func (h *fakeHost) raw(b []byte) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.conn.Write(b)
}

// print sends what the VM printed, IAC doubled (the host sends BINARY).
func (h *fakeHost) print(s string) { h.raw(appendEscaped(nil, []byte(s), true)) }

// send sends a VMWARE-TELNET-EXT sub-option.
func (h *fakeHost) send(code byte, arg ...[]byte) {
	h.raw(appendSubneg(nil, optVMware, append([][]byte{{code}}, arg...)...))
}

func (h *fakeHost) negotiate(verb, opt byte) error {
	if opt != optBinary && opt != optSGA || h.agreed[[2]byte{verb, opt}] {
		return nil
	}
	h.agreed[[2]byte{verb, opt}] = true
	switch verb {
	case cmdDo:
		h.raw([]byte{cmdIAC, cmdWill, opt})
	case cmdWill:
		h.p.binary = h.p.binary || opt == optBinary
		h.raw([]byte{cmdIAC, cmdDo, opt})
	}
	return nil
}

func (h *fakeHost) command(byte) error { return nil }

func (h *fakeHost) subnegotiate(opt byte, payload []byte) error {
	if opt != optVMware || len(payload) == 0 {
		return nil
	}
	h.ext <- bytes.Clone(payload)
	answers := map[byte]struct {
		code byte
		val  string
	}{
		getVMVCUUID:       {vmVCUUID, h.vm.instance},
		getVMBIOSUUID:     {vmBIOSUUID, h.vm.bios},
		getVMName:         {vmName, h.vm.name},
		getVMLocationUUID: {vmLocationUUID, "56 4d 00 00 00 00 00 00-00 00 00 00 00 00 00 01"},
	}
	a, ok := answers[payload[0]]
	switch {
	case !ok || h.vm.mute:
	case bytes.IndexByte(h.vm.silent, payload[0]) >= 0:
		h.send(unknownSuboptionRcvd1, payload[:1])
	default:
		h.send(a.code, []byte(a.val))
	}
	return nil
}

// waitExt returns the payload of the next sub-option code the host gets.
func (h *fakeHost) waitExt(code byte) []byte {
	h.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case p := <-h.ext:
			if p[0] == code {
				return p[1:]
			}
		case <-timeout:
			h.t.Fatalf("host got no sub-option %d", code)
		}
	}
}

// waitKeys returns the keystrokes the host got once they hold want.
func (h *fakeHost) waitKeys(want string) string {
	h.t.Helper()
	var got []byte
	timeout := time.After(5 * time.Second)
	for !bytes.Contains(got, []byte(want)) {
		select {
		case k := <-h.keys:
			got = append(got, k...)
		case <-timeout:
			h.t.Fatalf("host got keystrokes %q, want %q", got, want)
		}
	}
	return string(got)
}

// noKeys checks that no keystroke arrives for a while.
func (h *fakeHost) noKeys(d time.Duration) {
	h.t.Helper()
	select {
	case k := <-h.keys:
		h.t.Fatalf("host got keystrokes %q, want none yet", k)
	case <-time.After(d):
	}
}

// closed waits for the concentrator to close the connection.
func (h *fakeHost) closed() bool {
	select {
	case <-h.done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// testConc runs a concentrator on a loopback port for one test.
type testConc struct {
	*Concentrator
	addr   string
	mu     sync.Mutex
	events []Event
	evCh   chan Event
}

func startConc(t testing.TB, cfg Config) *testConc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc := &testConc{addr: ln.Addr().String(), evCh: make(chan Event, 1024)}
	user := cfg.OnEvent
	cfg.OnEvent = func(ev Event) {
		tc.mu.Lock()
		tc.events = append(tc.events, ev)
		tc.mu.Unlock()
		tc.evCh <- ev
		if user != nil {
			user(ev)
		}
	}
	tc.Concentrator = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- tc.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return tc
}

// waitEvent returns the next event of kind.
func (tc *testConc) waitEvent(t testing.TB, kind EventKind) Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-tc.evCh:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %v event", kind)
		}
	}
}

func (tc *testConc) kinds() []EventKind {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var out []EventKind
	for _, ev := range tc.events {
		out = append(out, ev.Kind)
	}
	return out
}

// readUntil reads a subscription until the output holds want.
func readUntil(t testing.TB, sub *Subscription, want string) string {
	t.Helper()
	var got []byte
	timeout := time.After(5 * time.Second)
	for !bytes.Contains(got, []byte(want)) {
		select {
		case chunk, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription closed with %q, want %q", got, want)
			}
			got = append(got, chunk...)
		case <-timeout:
			t.Fatalf("reader got %q, want %q", got, want)
		}
	}
	return string(got)
}

// A Console is an io.Writer, so keystrokes can be io.Copy'd into it.
var _ io.Writer = (*Console)(nil)
