//go:build linux && !386 && !s390x

package rawsock

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// op is one raw call's arguments and results beside the function
// RawConn runs, bound once: a closure made per call would be allocated per
// datagram or request.
type op struct {
	p      []byte
	sa     unix.RawSockaddrAny
	salen  uintptr
	n      int
	errno  syscall.Errno
	eof    bool
	fn     func(fd uintptr) bool
	caller func(*op, uintptr) bool
}

func newOp(caller func(*op, uintptr) bool) *op {
	o := &op{caller: caller}
	o.fn = func(fd uintptr) bool { return o.caller(o, fd) }
	return o
}

// retry reports whether the call would have blocked and must wait.
func (o *op) retry() bool { return o.errno == unix.EAGAIN || o.errno == unix.EINTR }

func recvfrom(o *op, fd uintptr) bool {
	l := uint32(unix.SizeofSockaddrAny)
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(o.p))), uintptr(len(o.p)), 0, uintptr(unsafe.Pointer(&o.sa)), uintptr(unsafe.Pointer(&l)))
	o.n, o.errno = int(n), e
	return !o.retry()
}

func sendto(o *op, fd uintptr) bool {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(o.p))), uintptr(len(o.p)), 0, uintptr(unsafe.Pointer(&o.sa)), o.salen)
	o.errno = e
	return !o.retry()
}

// read reads once; 0 bytes without an error is the end of the stream.
func read(o *op, fd uintptr) bool {
	n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(o.p))), uintptr(len(o.p)))
	if o.errno = e; e == 0 {
		o.n, o.eof = int(n), n == 0 && len(o.p) > 0
	}
	return !o.retry()
}

// write writes all of o.p, waiting for room when the socket's buffer is
// full.
func write(o *op, fd uintptr) bool {
	for o.n < len(o.p) {
		rest := o.p[o.n:]
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)))
		if o.errno = e; e != 0 {
			return !o.retry()
		}
		o.n += int(n)
	}
	return true
}

var sendOps = sync.Pool{New: func() any { return newOp(sendto) }}

// packet is a UDP socket read by one goroutine and written by any.
type packet struct {
	*net.UDPConn
	rc    syscall.RawConn
	inet6 bool // an AF_INET6 socket: IPv4 peers are written v4-mapped
	recv  *op  // the reader's: one goroutine reads
}

// UDP wraps c, which from then on is read by one goroutine only.
func UDP(c *net.UDPConn) (PacketConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) { domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return &packet{UDPConn: c, rc: rc, inet6: domain == unix.AF_INET6, recv: newOp(recvfrom)}, nil
}

func (c *packet) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	o := c.recv
	o.p = p
	err := c.rc.Read(o.fn)
	o.p = nil
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if o.errno != 0 {
		return 0, netip.AddrPort{}, o.errno
	}
	return o.n, decodeSockaddr(&o.sa), nil
}

var errAddrFamily = errors.New("rawsock: IPv6 destination on an IPv4 socket")

func (c *packet) WriteToUDPAddrPort(p []byte, to netip.AddrPort) (int, error) {
	o := sendOps.Get().(*op)
	defer sendOps.Put(o)
	o.sa = unix.RawSockaddrAny{}
	if o.salen = encodeSockaddr(&o.sa, to, c.inet6); o.salen == 0 {
		return 0, errAddrFamily
	}
	o.p = p
	err := c.rc.Write(o.fn)
	o.p = nil
	if err != nil {
		return 0, err
	}
	if o.errno != 0 {
		return 0, o.errno
	}
	return len(p), nil
}

// stream is a TCP connection; net.Conn allows concurrent calls, so each
// direction has its lock.
type stream struct {
	*net.TCPConn
	rc         syscall.RawConn
	rmu, wmu   sync.Mutex
	rdOp, wrOp *op
}

// TCP wraps c when it is a TCP connection.
func TCP(c net.Conn) net.Conn {
	t, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := t.SyscallConn()
	if err != nil {
		return c
	}
	return &stream{TCPConn: t, rc: rc, rdOp: newOp(read), wrOp: newOp(write)}
}

func (c *stream) Read(p []byte) (int, error) { return c.do(&c.rmu, c.rdOp, c.rc.Read, "read", p) }

func (c *stream) Write(p []byte) (int, error) { return c.do(&c.wmu, c.wrOp, c.rc.Write, "write", p) }

// do runs one direction's call under its lock, waiting through wait (the
// RawConn's Read or Write), and reports what was done as net.Conn does.
func (c *stream) do(mu *sync.Mutex, o *op, wait func(func(uintptr) bool) error, what string, p []byte) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	o.p, o.n, o.errno, o.eof = p, 0, 0, false
	err := wait(o.fn)
	o.p = nil
	if err == nil && o.errno != 0 {
		err = o.errno
	}
	switch {
	case err != nil:
		return o.n, opError(what, c, err)
	case o.eof:
		return 0, io.EOF
	}
	return o.n, nil
}

// opError wraps err as the net package does, so that callers' checks
// (net.Error's Timeout, errors.Is(err, net.ErrClosed)) see what they
// expect.
func opError(what string, c *stream, err error) error {
	return &net.OpError{Op: what, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
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
