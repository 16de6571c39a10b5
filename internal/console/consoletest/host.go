// Package consoletest plays an ESXi host's side of a VM's serial port
// connection to a virtual serial port concentrator, for the tests of the
// packages that wire the concentrator (the daemon, the management API,
// the CLI): the host connects, names its VM when asked, prints what the
// VM prints and receives what is typed at it. It speaks the minimum of
// telnet (RFC 854/855/856/858) and of VMware's VMWARE-TELNET-EXT option
// (232) that an ESXi host does, as VMware's "Using a Proxy with vSphere
// Virtual Serial Ports" describes it.
package consoletest

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Telnet bytes (RFC 854, 855) and the options a host negotiates.
const (
	iac, sb, se, will, wont, do, dont = 255, 250, 240, 251, 252, 253, 254
	optBinary, optSGA, optVMware      = 0, 3, 232
)

// VMWARE-TELNET-EXT sub-options a host sends or answers.
const (
	knownSuboptions1      = 0
	unknownSuboptionRcvd1 = 2
	doProxy               = 70
	vmVCUUID              = 80
	getVMVCUUID           = 81
	vmName                = 82
	getVMName             = 83
	vmBIOSUUID            = 84
	getVMBIOSUUID         = 85
)

// VM is what the host says about its VM; UUIDs in the API's form
// (config.instanceUuid, config.uuid). An empty one is not answered.
type VM struct {
	InstanceUUID, BIOSUUID, Name string
}

// Host is one serial port connection of a fake ESXi host.
type Host struct {
	t    testing.TB
	conn net.Conn
	vm   VM
	wmu  sync.Mutex
	done chan struct{}

	mu   sync.Mutex
	keys []byte
	// answered records the options answered, so that each is answered
	// once (RFC 1143).
	answered map[[2]byte]bool
}

// Dial connects to the concentrator at addr as a host whose VM has a
// serial port pointed at it: WILL VMWARE-TELNET-EXT, the sub-options it
// knows, DO-PROXY as a server port. The connection closes with the test.
func Dial(t testing.TB, addr string, vm VM) *Host {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// What the host asks for itself, the concentrator's answers
	// acknowledge: they get no reply (RFC 1143).
	h := &Host{t: t, conn: conn, vm: vm, done: make(chan struct{}), answered: map[[2]byte]bool{
		{do, optVMware}: true, {do, optBinary}: true, {will, optBinary}: true,
	}}
	t.Cleanup(h.Close)
	go h.read()
	hello := []byte{iac, will, optVMware, iac, will, optBinary, iac, do, optBinary}
	hello = appendSub(hello, knownSuboptions1, []byte{knownSuboptions1, doProxy, vmVCUUID, getVMVCUUID, vmName, getVMName, vmBIOSUUID, getVMBIOSUUID})
	hello = appendSub(hello, doProxy, []byte("Sipmi-vmware-bridge"))
	h.write(hello)
	return h
}

// Print sends what the VM printed.
func (h *Host) Print(s string) {
	h.write(bytes.ReplaceAll([]byte(s), []byte{iac}, []byte{iac, iac}))
}

// WaitKeys waits until the keystrokes the host received hold want and
// returns them all.
func (h *Host) WaitKeys(want string) string {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		got := string(h.keys)
		h.mu.Unlock()
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the host received %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close closes the connection, as a host does when the VM powers off.
func (h *Host) Close() {
	h.conn.Close()
	<-h.done
}

func (h *Host) write(b []byte) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_, _ = h.conn.Write(b)
}

// appendSub appends IAC SB 232 code arg IAC SE, IAC doubled in arg.
func appendSub(dst []byte, code byte, arg []byte) []byte {
	dst = append(dst, iac, sb, optVMware, code)
	dst = append(dst, bytes.ReplaceAll(arg, []byte{iac}, []byte{iac, iac})...)
	return append(dst, iac, se)
}

// read decodes what the concentrator sends: data bytes are keystrokes,
// commands are answered.
func (h *Host) read() {
	defer close(h.done)
	var d decoder
	buf := make([]byte, 4096)
	for {
		n, err := h.conn.Read(buf)
		for _, b := range buf[:n] {
			d.step(b, h)
		}
		if err != nil {
			return
		}
	}
}

// negotiate agrees to BINARY and SGA both ways, once, and refuses the
// rest, as a host does.
func (h *Host) negotiate(verb, opt byte) {
	h.mu.Lock()
	seen := h.answered[[2]byte{verb, opt}]
	h.answered[[2]byte{verb, opt}] = true
	h.mu.Unlock()
	if seen || (verb != do && verb != will) {
		return
	}
	ok := opt == optBinary || opt == optSGA
	switch {
	case verb == do && ok:
		h.write([]byte{iac, will, opt})
	case verb == do:
		h.write([]byte{iac, wont, opt})
	case ok:
		h.write([]byte{iac, do, opt})
	default:
		h.write([]byte{iac, dont, opt})
	}
}

// subnegotiate answers the concentrator's questions about the VM; one it
// has no answer to gets UNKNOWN-SUBOPTION-RCVD-1, as a host that does not
// know it.
func (h *Host) subnegotiate(payload []byte) {
	if len(payload) < 2 || payload[0] != optVMware {
		return
	}
	answers := map[byte]struct {
		code byte
		val  string
	}{
		getVMVCUUID:   {vmVCUUID, vsphere.VMXUUID(h.vm.InstanceUUID)},
		getVMBIOSUUID: {vmBIOSUUID, vsphere.VMXUUID(h.vm.BIOSUUID)},
		getVMName:     {vmName, h.vm.Name},
	}
	a, ok := answers[payload[1]]
	switch {
	case ok && a.val != "":
		h.write(appendSub(nil, a.code, []byte(a.val)))
	case payload[1]%2 == 1 && payload[1] > doProxy:
		// The GETs are the odd codes above DO-PROXY (81, 83, 85, 87).
		h.write(appendSub(nil, unknownSuboptionRcvd1, payload[1:2]))
	}
}

func (h *Host) data(b byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = append(h.keys, b)
}

// decoder is a telnet receive state machine (RFC 854, 855).
type decoder struct {
	state int
	verb  byte
	sub   []byte
}

const (
	stData = iota
	stIAC
	stOption
	stSub
	stSubIAC
)

func (d *decoder) step(b byte, h *Host) {
	switch d.state {
	case stData:
		if b == iac {
			d.state = stIAC
			return
		}
		h.data(b)
	case stIAC:
		d.state = stData
		switch {
		case b == iac:
			h.data(b)
		case b == sb:
			d.state, d.sub = stSub, d.sub[:0]
		case b >= will:
			d.state, d.verb = stOption, b
		}
	case stOption:
		d.state = stData
		h.negotiate(d.verb, b)
	case stSub:
		if b == iac {
			d.state = stSubIAC
			return
		}
		d.sub = append(d.sub, b)
	case stSubIAC:
		d.state = stSub
		switch b {
		case iac:
			d.sub = append(d.sub, b)
		case se:
			d.state = stData
			h.subnegotiate(d.sub)
		}
	}
}
