//go:build !linux || 386 || s390x

package ipmi

import (
	"net"
	"net/netip"
)

// udpConn is the portable socket: the net package's allocation-free
// AddrPort calls. Linux uses udp_linux.go, which also spares the runtime's
// syscall bookkeeping.
type udpConn struct{ *net.UDPConn }

func newUDPConn(c *net.UDPConn) (packetConn, error) { return udpConn{c}, nil }

func (c udpConn) readFrom(p []byte) (int, netip.AddrPort, error) {
	return c.ReadFromUDPAddrPort(p)
}

func (c udpConn) writeTo(p []byte, to netip.AddrPort) error {
	_, err := c.WriteToUDPAddrPort(p, to)
	return err
}
