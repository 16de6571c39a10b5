//go:build linux && !386 && !s390x

package ipmi

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpConn reads and answers datagrams with raw recvfrom and sendto on the
// non-blocking socket, waiting for it through the runtime's poller as the
// net package does. Why not the net package's calls: they enter the
// syscall through the scheduler (entersyscall), and when the process is
// idle, which a BMC between two requests of a console always is, that
// wakes the runtime's monitor thread, which then polls every 20 µs for a
// while. Measured with an ipmitool-paced stream (a request every 250 µs)
// on two cores: 3.3 context switches and about 90 µs of CPU per request
// through the net package, 1 and about 38 µs this way; the rest is the
// kernel's own cost of a wake-up. Neither call can block (the socket is
// non-blocking), which is what makes skipping the scheduler safe.
type udpConn struct {
	*net.UDPConn
	rc    syscall.RawConn
	inet6 bool    // an AF_INET6 socket: IPv4 peers are written v4-mapped
	recv  *recvOp // the read loop's: it alone reads
}

// recvOp and sendOp hold a call's arguments and results beside the
// function RawConn runs, bound once: a closure made per call would be
// allocated per datagram.
type recvOp struct {
	p     []byte
	sa    unix.RawSockaddrAny
	n     uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func (op *recvOp) do(fd uintptr) bool {
	l := uint32(unix.SizeofSockaddrAny)
	op.n, _, op.errno = unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(op.p))), uintptr(len(op.p)), 0, uintptr(unsafe.Pointer(&op.sa)), uintptr(unsafe.Pointer(&l)))
	return op.errno != unix.EAGAIN && op.errno != unix.EINTR
}

type sendOp struct {
	p     []byte
	sa    unix.RawSockaddrAny
	l     uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func (op *sendOp) do(fd uintptr) bool {
	_, _, op.errno = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(op.p))), uintptr(len(op.p)), 0, uintptr(unsafe.Pointer(&op.sa)), op.l)
	return op.errno != unix.EAGAIN && op.errno != unix.EINTR
}

// sendOps are shared by every socket: replies are written by the read
// loops and by the requests that wait on vCenter.
var sendOps = sync.Pool{New: func() any {
	op := &sendOp{}
	op.fn = op.do
	return op
}}

func newUDPConn(c *net.UDPConn) (packetConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	u := &udpConn{UDPConn: c, rc: rc, recv: &recvOp{}}
	u.recv.fn = u.recv.do
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) { domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil || serr != nil {
		_ = c.Close()
		return nil, firstErr(err, serr)
	}
	u.inet6 = domain == unix.AF_INET6
	return u, nil
}

var errAddrFamily = errors.New("ipv6 destination on an ipv4 socket")

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (c *udpConn) readFrom(p []byte) (int, netip.AddrPort, error) {
	op := c.recv
	op.p = p
	err := c.rc.Read(op.fn)
	op.p = nil
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if op.errno != 0 {
		return 0, netip.AddrPort{}, op.errno
	}
	return int(op.n), decodeSockaddr(&op.sa), nil
}

func (c *udpConn) writeTo(p []byte, to netip.AddrPort) error {
	op := sendOps.Get().(*sendOp)
	defer sendOps.Put(op)
	op.sa = unix.RawSockaddrAny{}
	if op.l = encodeSockaddr(&op.sa, to, c.inet6); op.l == 0 {
		return errAddrFamily
	}
	op.p = p
	err := c.rc.Write(op.fn)
	op.p = nil
	if err != nil {
		return err
	}
	if op.errno != 0 {
		return op.errno
	}
	return nil
}

// port reads or writes a sockaddr's port, which is in network byte order.
func port(p *uint16) *[2]byte { return (*[2]byte)(unsafe.Pointer(p)) }

func decodeSockaddr(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		b := port(&s.Port)
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), uint16(b[0])<<8|uint16(b[1]))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		b := port(&s.Port)
		a := netip.AddrFrom16(s.Addr)
		if s.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(s.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, uint16(b[0])<<8|uint16(b[1]))
	}
	return netip.AddrPort{}
}

// encodeSockaddr writes to in the socket's family and returns its length,
// 0 for an IPv6 address on an IPv4 socket.
func encodeSockaddr(sa *unix.RawSockaddrAny, to netip.AddrPort, inet6 bool) uintptr {
	a := to.Addr()
	if !inet6 {
		if !a.Unmap().Is4() {
			return 0
		}
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		s.Family = unix.AF_INET
		s.Addr = a.Unmap().As4()
		*port(&s.Port) = [2]byte{byte(to.Port() >> 8), byte(to.Port())}
		return unix.SizeofSockaddrInet4
	}
	s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
	s.Family = unix.AF_INET6
	s.Addr = a.As16() // an IPv4 address comes out v4-mapped
	if z := a.Zone(); z != "" {
		id, _ := strconv.ParseUint(z, 10, 32)
		s.Scope_id = uint32(id)
	}
	*port(&s.Port) = [2]byte{byte(to.Port() >> 8), byte(to.Port())}
	return unix.SizeofSockaddrInet6
}
