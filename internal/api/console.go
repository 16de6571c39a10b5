package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// ConsoleProtocol is the Upgrade token of GET /v1/bmcs/{id}/console: the
// request asks to switch the connection (RFC 9110 §7.8) to a raw
// bidirectional stream of the BMC's serial console, the VM's output down
// (what is kept of it first), keystrokes up.
const ConsoleProtocol = "ipmi-vmware-bridge-console"

// ConsoleState is a BMC's serial console as the API shows it.
type ConsoleState struct {
	// Connected: the VM's serial port is connected to the concentrator.
	Connected bool `json:"connected"`
	// Remote is the ESXi host the serial port connects from.
	Remote string `json:"remote,omitempty"`
}

// consoleLog answers GET /v1/bmcs/{id}/console/log: the output kept, as
// it came (bytes, not text: a serial line carries any).
func (s *server) consoleLog(w http.ResponseWriter, r *http.Request) {
	out, err := s.b.ConsoleLog(r.Context(), r.PathValue("id"))
	if err != nil {
		reply(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(out)
}

// upgradeRequested reports whether r asks to switch to ConsoleProtocol.
func upgradeRequested(r *http.Request) bool {
	hasToken := func(values []string, token string) bool {
		for _, v := range values {
			for t := range strings.SplitSeq(v, ",") {
				if strings.EqualFold(strings.TrimSpace(t), token) {
					return true
				}
			}
		}
		return false
	}
	return hasToken(r.Header.Values("Connection"), "upgrade") && hasToken(r.Header.Values("Upgrade"), ConsoleProtocol)
}

// console answers GET /v1/bmcs/{id}/console: 101 Switching Protocols,
// then the stream, until the client or the console ends or the server
// shuts down (the request's context).
func (s *server) console(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sc, err := s.b.Console(r.Context(), id)
	if err != nil {
		reply(w, nil, err)
		return
	}
	if !upgradeRequested(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", ConsoleProtocol)
		replyStatus(w, http.StatusUpgradeRequired, nil, nil)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		reply(w, nil, err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{}) // a console stays open for hours
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + ConsoleProtocol + "\r\n\r\n"); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	s.log.Info("console attached", "bmc", id)
	stream(r.Context(), conn, brw.Reader, sc)
	s.log.Info("console detached", "bmc", id)
}

// stream copies the console's output to conn and what up delivers (the
// keystrokes read from conn) to the console, until either side ends or
// ctx does. A keystroke the console cannot take is dropped, as a serial
// line drops it, and the user told once, in the stream.
func stream(ctx context.Context, conn net.Conn, up io.Reader, sc machine.SerialConsole) {
	reader := sc.Attach(true)
	defer reader.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wmu sync.Mutex // output and notices share conn
	send := func(p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := conn.Write(p)
		return err
	}
	down := make(chan struct{})
	go func() {
		defer close(down)
		defer conn.Close() // the console ended: so does the stream
		for chunk := range reader.Output() {
			if send(chunk) != nil {
				return
			}
		}
	}()
	keystrokes(up, sc, send)
	conn.Close()
	reader.Close()
	<-down
}

// keystrokes writes what up delivers to sc until up fails. A failed
// write is told once, until a write succeeds again.
func keystrokes(up io.Reader, sc machine.SerialConsole, notice func([]byte) error) {
	buf := make([]byte, 4096)
	told := ""
	for {
		n, err := up.Read(buf)
		if n > 0 {
			_, werr := sc.Write(buf[:n])
			switch {
			case werr == nil:
				told = ""
			case werr.Error() != told:
				told = werr.Error()
				_ = notice([]byte("\r\n[ipmi-vmware-bridge: keystrokes dropped: " + consoleTrouble(werr) + "]\r\n"))
			}
		}
		if err != nil {
			return
		}
	}
}

// consoleTrouble says why keystrokes were dropped, in a user's words.
func consoleTrouble(err error) string {
	if errors.Is(err, machine.ErrConsoleNotConnected) {
		return "the VM's serial port is not connected (VM off, or its host not connected to the bridge)"
	}
	return err.Error()
}

// ConsoleLog writes the output kept of a BMC's serial console to w.
func (c *Client) ConsoleLog(ctx context.Context, id string, w io.Writer) error {
	return c.do(ctx, http.MethodGet, "/v1/bmcs/"+url.PathEscape(id)+"/console/log", nil, w)
}

// Console attaches to a BMC's serial console: reading the stream gives
// what is kept of the VM's output, then its output as it comes; writing
// types at the VM. Closing it detaches.
func (c *Client) Console(ctx context.Context, id string) (io.ReadWriteCloser, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://daemon/v1/bmcs/"+url.PathEscape(id)+"/console", nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", ConsoleProtocol)
	// The answer's head is bounded in time; the stream after it is not.
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(conn)
	resp, err := roundTrip(conn, br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, responseError(resp)
	}
	return &upgraded{Conn: conn, r: br}, nil
}

// roundTrip sends req on conn and reads its response's head.
func roundTrip(conn net.Conn, br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("the daemon's answer: %w", err)
	}
	return resp, nil
}

// upgraded is a switched connection: what the daemon sent right after
// its 101 may already sit in r.
type upgraded struct {
	net.Conn
	r *bufio.Reader
}

func (u *upgraded) Read(p []byte) (int, error) { return u.r.Read(p) }
