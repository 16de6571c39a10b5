package ipmi

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/rawsock"
)

var recordCorpus = flag.Bool("record", false, "record ipmitool and FreeIPMI datagrams into the FuzzDatagram corpus")

// memConn is an in-memory PacketConn: the fuzzer hands it datagrams and
// collects the replies, without sockets.
type memConn struct {
	in     chan []byte
	out    chan []byte
	closed chan struct{}
	once   sync.Once
}

var fuzzPeer = netip.MustParseAddrPort("192.0.2.1:623")

func newMemConn() *memConn {
	return &memConn{in: make(chan []byte), out: make(chan []byte, 64), closed: make(chan struct{})}
}

// ReadFromUDPAddrPort hands the loop the next datagram. A nil one is a marker: its
// hand-over proves that the loop finished the datagram before it.
func (c *memConn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	for {
		select {
		case b := <-c.in:
			if b == nil {
				continue
			}
			return copy(p, b), fuzzPeer, nil
		case <-c.closed:
			return 0, netip.AddrPort{}, net.ErrClosed
		}
	}
}

func (c *memConn) WriteToUDPAddrPort(p []byte, _ netip.AddrPort) (int, error) {
	select {
	case c.out <- append([]byte(nil), p...):
	default:
	}
	return len(p), nil
}

func (c *memConn) Close() error        { c.once.Do(func() { close(c.closed) }); return nil }
func (c *memConn) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 623} }

// FuzzDatagram sends arbitrary datagrams through the whole path an endpoint
// serves, exactly as in production: into the endpoint's PacketConn, read by
// its loop, checked by the front door, then go-ipmi's parsing, our session
// code and the handlers. Nothing may crash the process, and no reply may be
// much larger than what asked for it, or the BMC could amplify a spoofed
// flood. The corpus holds real ipmitool and FreeIPMI traffic (go test -run
// TestRecordDatagrams -record to refresh it), the datagrams that crashed
// go-ipmi's own server, and SOL payload packets (their authenticated
// contents are FuzzSOLPayload's).
func FuzzDatagram(f *testing.F) {
	m := &machinetest.Fake{ID: machine.Identity{Name: "fuzz", UUID: testUUID}, State: machine.PowerOn}
	id, _ := m.Identity(context.Background())
	guid, _ := SMBIOSGUID(id.UUID)
	st, err := newStorage(id)
	if err != nil {
		f.Fatal(err)
	}
	cfg := Config{Username: "admin", Password: "password", Guard: guard.New(guard.Config{Failures: 5, Window: time.Minute, Lockout: time.Second})}
	b, err := newBMC(guid, st, m, cfg)
	if err != nil {
		f.Fatal(err)
	}
	conn := newMemConn()
	srv := newServer(conn, b, m, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = srv.serve(ctx) }()
	f.Cleanup(cancel)

	f.Add([]byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00})
	f.Add(openSessionRequest(1))
	f.Add(rakp1Overflow)
	f.Add(sealed(func(p []byte) { p[5] = 0xC0 | payloadSOL }))
	f.Add(sealed(func(p []byte) { p[5] = 0xC0 | payloadSOL; p[6] = 0 }))
	f.Add(rmcpPlus(0xC0|payloadSOL, 0x1234, 7, make([]byte, 16+16*17)))
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, d := range [][]byte{p, nil} {
			select {
			case conn.in <- d:
			case <-time.After(5 * time.Second):
				t.Fatal("the server stopped reading")
			}
		}
		// The loop has handled p: its replies (those not waiting on the
		// machine) are written.
		for {
			select {
			case r := <-conn.out:
				if len(r) > max(4*len(p), 64) {
					t.Fatalf("a %d-byte datagram got a %d-byte reply", len(p), len(r))
				}
				continue
			default:
			}
			break
		}
	})
}

// rakp1Overflow is the datagram that killed go-ipmi v0.9.1's server: a RAKP
// Message 1 whose user name length (FFh) overflows 28+length as a uint8 in
// RAKPMessage1.Unpack.
var rakp1Overflow = append(append([]byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0x1c, 0x00}, make([]byte, 27)...), 0xff)

// recordConn saves every datagram an endpoint receives.
type recordConn struct {
	rawsock.PacketConn
	dir string
	mu  sync.Mutex
	n   int
}

func (c *recordConn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	n, a, err := c.PacketConn.ReadFromUDPAddrPort(p)
	if err == nil {
		c.mu.Lock()
		c.n++
		name := filepath.Join(c.dir, "real-"+strconv.Itoa(c.n))
		c.mu.Unlock()
		_ = os.WriteFile(name, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(p[:n]))+")\n"), 0o644)
	}
	return n, a, err
}

// TestRecordDatagrams refreshes FuzzDatagram's corpus with the datagrams
// ipmitool (lanplus and lan) and FreeIPMI send for everyday commands, SOL
// activation included.
func TestRecordDatagrams(t *testing.T) {
	if !*recordCorpus {
		t.Skip("run with -record to refresh the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDatagram")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := listenTest(t, consoleFake("rec", clienttest.NewConsole()), Config{})
	rc := &recordConn{PacketConn: e.conn, dir: dir}
	e.srv.conn = rc
	go func() { _ = e.Serve(context.Background()) }()
	port := e.port()
	for _, args := range [][]string{
		{"ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "power", "status"},
		{"ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "chassis", "bootdev", "pxe"},
		{"ipmitool", "-I", "lan", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "sdr"},
		{"ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "sol", "info"},
		{"ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-P", "password", "sol", "looptest", "2", "10"},
		{"ipmipower", "-D", "LAN_2_0", "-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password", "--stat"},
		{"ipmipower", "-D", "LAN", "-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password", "--on"},
		{"bmc-info", "-D", "LAN_2_0", "-h", "127.0.0.1:" + port, "-u", "admin", "-p", "password"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	t.Logf("recorded %d datagrams", rc.n)
}
