// Package rawsock owns how the bridge's servers read and write their
// sockets: on Linux with raw read, write, recvfrom and sendto on the
// non-blocking socket, waiting for readiness through the runtime's poller
// as the net package does. The net package enters every such call through
// the scheduler (entersyscall), and when the process was idle, as a BMC
// between two requests of a console always is, that wakes the runtime's
// monitor thread, which then polls every 20 µs until the process is idle
// again: several wake-ups, each tens of µs of CPU on a virtual machine,
// per request. Measured with an ipmitool stream (a request every 250 µs)
// on two cores: 3.3 context switches and about 90 µs of CPU per request
// through the net package, 1 and 21-25 µs this way, less than OpenIPMI's
// simulator in the same run. None of these calls can block (the socket is
// non-blocking), which is what makes skipping the scheduler safe.
// Elsewhere the net package's own calls are used.
package rawsock

import (
	"net"
	"net/netip"
)

// PacketConn is a UDP socket with allocation-free addresses; *net.UDPConn
// has the same methods.
type PacketConn interface {
	ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(p []byte, to netip.AddrPort) (int, error)
	Close() error
	LocalAddr() net.Addr
}
