package redfish

import (
	"net"
	"net/netip"
	"sync"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/rawsock"
)

// limitListener accepts at most perSource connections from one source
// (an address, or an IPv6 /64: guard.Source)
// and total in all; a connection over either is closed at once, so that
// the accept loop never blocks and clients within their share keep being
// served.
type limitListener struct {
	net.Listener
	perSource, total int

	mu    sync.Mutex
	open  int
	count map[netip.Addr]int
}

func newLimitListener(l net.Listener, perSource, total int) *limitListener {
	return &limitListener{Listener: l, perSource: perSource, total: total, count: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		// Grouped as the guard groups sources (IPv6 by /64): a host
		// rotating addresses within its block gets one share, not many.
		ip := guard.Source(addrOf(c.RemoteAddr()))
		if l.take(ip) {
			// rawsock: the request path skips the scheduler's syscall
			// bookkeeping, as the IPMI loop does.
			return &limitedConn{Conn: rawsock.TCP(c), release: func() { l.give(ip) }}, nil
		}
		_ = c.Close()
	}
}

func (l *limitListener) take(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total || l.count[ip] >= l.perSource {
		return false
	}
	l.open++
	l.count[ip]++
	return true
}

func (l *limitListener) give(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.count[ip]--; l.count[ip] <= 0 {
		delete(l.count, ip)
	}
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
