package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// Datagrams cross sockets of both families, an IPv4 peer of a dual-stack
// socket included, and come back to the address they came from.
func TestUDPEcho(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ listen, peer string }{
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"[::]:0", "127.0.0.1:0"},
		{"[::1]:0", "[::1]:0"},
	} {
		t.Run(tc.listen+"<-"+tc.peer, func(t *testing.T) {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.listen)))
			if err != nil {
				t.Skipf("cannot listen on %s here: %v", tc.listen, err)
			}
			srv, err := UDP(c)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = srv.Close() }()
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := srv.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					_, _ = srv.WriteToUDPAddrPort(buf[:n], from)
				}
			}()
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.peer)))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = peer.Close() }()
			to := netip.AddrPortFrom(peer.LocalAddr().(*net.UDPAddr).AddrPort().Addr(), uint16(srv.LocalAddr().(*net.UDPAddr).Port))
			for _, msg := range [][]byte{[]byte("ping"), bytes.Repeat([]byte{0xA5}, 1400), {}} {
				if _, err := peer.WriteToUDPAddrPort(msg, to); err != nil {
					t.Fatal(err)
				}
				_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 2048)
				n, _, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil || !bytes.Equal(buf[:n], msg) {
					t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), n, err)
				}
			}
		})
	}
}

// Closing the socket ends a read in progress with net.ErrClosed.
func TestUDPCloseEndsRead(t *testing.T) {
	t.Parallel()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := UDP(c)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, _, err := p.ReadFromUDPAddrPort(make([]byte, 10))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = p.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// A TCP connection keeps the net.Conn contract the HTTP server relies
// on: large writes complete however slowly the peer reads, a deadline
// ends a read with a timeout, the peer's close is io.EOF, and a closed
// connection says net.ErrClosed.
func TestTCPConn(t *testing.T) {
	t.Parallel()
	c, peer := tcpPair(t)
	if _, ok := c.(*net.TCPConn); ok && isLinux() {
		t.Fatal("TCP did not wrap the connection")
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than the socket buffers
	werr := make(chan error, 1)
	go func() {
		n, err := c.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		werr <- err
	}()
	got, err := io.ReadAll(io.LimitReader(slowReader{peer}, int64(len(big))))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(big), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}

	_ = c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(make([]byte, 10)); !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	_ = peer.Close()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	_ = c.Close()
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// tcpPair connects over loopback and returns the accepted end, wrapped by
// TCP, and the dialling end; both are closed when the test ends.
func tcpPair(t *testing.T) (c, peer net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- TCP(c)
		}
	}()
	peer, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c = <-accepted
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return c, peer
}

// slowReader reads in small pieces, so that the writer fills the socket
// buffers and has to wait for room.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	return s.r.Read(p)
}

// A peer that never reads cannot hold a writer: the write deadline ends
// the write with a timeout once the socket buffers are full, as it does
// through the net package (a slow Redfish client meets the server's write
// timeout this way).
func TestTCPWriteDeadlineWithAPeerThatNeverReads(t *testing.T) {
	t.Parallel()
	c, _ := tcpPair(t)
	_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 64<<20)) // far more than the socket buffers hold
		done <- err
	}()
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("write to a peer that never reads: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write deadline did not end the write")
	}
}
