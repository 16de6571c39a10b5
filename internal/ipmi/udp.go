package ipmi

import (
	"net"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/rawsock"
)

// listenUDP binds address for the read loop (see rawsock for why its
// calls bypass the net package's on Linux).
func listenUDP(address string) (rawsock.PacketConn, error) {
	a, err := net.ResolveUDPAddr("udp", address)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", a)
	if err != nil {
		return nil, err
	}
	p, err := rawsock.UDP(c)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return p, nil
}
