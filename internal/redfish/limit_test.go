package redfish

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// Slow and numerous connections do not starve a legitimate client: a
// request body trickled a byte a second is cut at the body timeout,
// connections past an address's share are closed at once, and a client
// from another address is answered meanwhile.
func TestSlowClients(t *testing.T) {
	e := newEnv(t)
	e.srv.limits.readBody = time.Second
	e.srv.limits.readHeader = time.Second
	e.srv.limits.connsPerSource = 8
	s := serveTLS(t, e)
	defer func() { _ = s.stop() }()
	addr := s.addr

	slow := func(local string) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "POST /redfish/v1/SessionService/Sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		return c, nil
	}
	var held []*tls.Conn
	for range 8 {
		c, err := slow("127.0.0.3")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if c, err := slow("127.0.0.3"); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection past the address's share was served")
		}
		c.Close()
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}).DialContext,
	}}
	start := time.Now()
	resp, err := client.Get("https://" + addr + "/redfish/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Logf("a legitimate request beside %d slow connections: %v", len(held), time.Since(start).Round(time.Millisecond))
	// The trickled bodies are cut: the connection ends within the body
	// timeout, whatever the client sends.
	for _, c := range held {
		go func() {
			for range 20 {
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	// The client would trickle for 4 s; the server cuts it after 1 s, so
	// the connection ends (EOF or reset) long before the client's own
	// read deadline.
	waitCut(t, held[0], "a trickled body")

	// Headers trickled in are cut the same way, at the header timeout.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		fmt.Fprint(c, "GET /redfish/v1 HTTP/1.1\r\n")
		for range 20 {
			if _, err := fmt.Fprint(c, "X-Slow: 1\r\n"); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	waitCut(t, c, "trickled headers")
}

// waitCut reads c until the server ends the connection; a read that times
// out (10 s, ten times the server's limit) means it did not.
func waitCut(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s not cut", what)
		}
		if err != nil {
			return
		}
	}
}

// fakeConnListener hands out pipe ends that claim the given remote
// addresses, one per Accept.
type fakeConnListener struct {
	net.Listener
	remotes chan *net.TCPAddr
}

type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

func (l *fakeConnListener) Accept() (net.Conn, error) {
	a, ok := <-l.remotes
	if !ok {
		return nil, net.ErrClosed
	}
	c, _ := net.Pipe()
	return remoteConn{c, a}, nil
}

// The per-source connection cap groups IPv6 sources by /64, as the guard
// does: a host drawing a new address from its /64 for each connection
// gets one share, not one per address; another /64 gets its own.
func TestConnectionCapGroupsIPv6By64(t *testing.T) {
	remotes := make(chan *net.TCPAddr, 8)
	l := newLimitListener(&fakeConnListener{remotes: remotes}, 2, 100)
	accept := func(ip string) net.Conn {
		remotes <- &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := accept("2001:db8:1:2::1")
	b := accept("2001:db8:1:2::2")
	defer a.Close()
	defer b.Close()
	// The third address of the same /64 is over the share: closed at
	// once, so Accept moves on to the next connection, from another /64.
	remotes <- &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::3"), Port: 1}
	c := accept("2001:db8:1:3::1")
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "[2001:db8:1:3::1]:1" {
		t.Fatalf("accepted %s: a third connection from one /64 got through", got)
	}
	a.Close()
	d := accept("2001:db8:1:2::4") // a slot of the /64 given back
	d.Close()
}
