package ipmi

import (
	"net"
	"net/netip"
)

// packetConn is an endpoint's socket as the read loop uses it: addresses
// as netip.AddrPort, so that reading and answering a datagram allocate
// nothing. listenUDP gives the production one (udp_linux.go, udp_other.go);
// the fuzz test gives one in memory.
type packetConn interface {
	readFrom(p []byte) (int, netip.AddrPort, error)
	writeTo(p []byte, to netip.AddrPort) error
	Close() error
	LocalAddr() net.Addr
}

// listenUDP binds address and wraps the socket for the read loop.
func listenUDP(address string) (packetConn, error) {
	a, err := net.ResolveUDPAddr("udp", address)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", a)
	if err != nil {
		return nil, err
	}
	return newUDPConn(c)
}
