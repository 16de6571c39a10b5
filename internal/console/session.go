package console

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var errUnidentified = errors.New("no VM identified")

// hostConn is the write side of one host connection, shared by its
// session (replies) and its console (keystrokes).
type hostConn struct {
	mu      sync.Mutex
	w       io.Writer
	conn    net.Conn // nil when fed without a socket (the fuzz target)
	timeout time.Duration
	// binary is set once we send in BINARY mode (RFC 856).
	binary bool
	buf    []byte
	remote string
	// meta is the ConnInfo, readable without mu, which a blocked write
	// holds.
	meta atomic.Pointer[ConnInfo]
	// dropped is set, under its console's mu, when the console drops the
	// connection (Console.mergeLocked): what its session still reads
	// speaks for no VM.
	dropped atomic.Bool
}

func (h *hostConn) info() ConnInfo {
	if m := h.meta.Load(); m != nil {
		return *m
	}
	return ConnInfo{Remote: h.remote}
}

func (h *hostConn) setProxy(direction byte, uri string) {
	h.meta.Store(&ConnInfo{Remote: h.remote, Direction: direction, ServiceURI: uri})
}

func (h *hostConn) setBinary(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.binary = on
}

// send writes protocol bytes as they are.
func (h *hostConn) send(b []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.writeLocked(b)
}

// sendData writes keystrokes, escaped as telnet data.
func (h *hostConn) sendData(p []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf = appendEscaped(h.buf[:0], p, h.binary)
	return h.writeLocked(h.buf)
}

func (h *hostConn) writeLocked(b []byte) error {
	if h.conn != nil {
		h.conn.SetWriteDeadline(time.Now().Add(h.timeout))
	}
	_, err := h.w.Write(b)
	return err
}

func (h *hostConn) close() {
	if h.conn != nil {
		h.conn.Close()
	}
}

// optState is one side of one option, after RFC 1143 (without WANTNO: we
// never ask to turn an option off).
type optState uint8

const (
	optNo optState = iota
	optYes
	optWantYes
)

// session is the read side of one host connection: the telnet and
// VMWARE-TELNET-EXT conversation, and the output until and after the VM
// is known.
type session struct {
	cc  *Concentrator
	hc  *hostConn
	log *slog.Logger
	p   parser
	// us are the options we perform, him those the host performs.
	us, him [256]optState
	// awaiting marks the identity answers still due.
	awaiting  [256]bool
	nAwaiting int
	queried   bool
	id        Identity
	pre       []byte
	out       []byte
	console   *Console
	tokens    float64
	refilled  time.Time
}

func (cc *Concentrator) newSession(w io.Writer, conn net.Conn, remote string) *session {
	return &session{
		cc:       cc,
		hc:       &hostConn{w: w, conn: conn, timeout: cc.cfg.WriteTimeout, remote: remote},
		log:      cc.log.With("remote", remote),
		p:        parser{maxSub: cc.cfg.MaxSubnegotiation},
		tokens:   float64(cc.cfg.CommandBurst),
		refilled: cc.now(),
	}
}

// readBufferSize is one read from a host. A virtual serial port carries
// what a guest prints at 115200 baud or so (about 11 KB/s), and a
// concentrator holds a connection per VM, so a small buffer costs no
// throughput that matters and keeps thousands of connections cheap.
const readBufferSize = 4 << 10

// run reads conn until it closes, failing a connection that has not named
// its VM within IdentifyTimeout.
func (s *session) run(conn net.Conn) error {
	if err := s.start(); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Now().Add(s.cc.cfg.IdentifyTimeout))
	buf := make([]byte, readBufferSize)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if perr := s.process(buf[:n]); perr != nil {
				return perr
			}
		}
		switch {
		case err == nil:
		case s.console == nil && errors.Is(err, os.ErrDeadlineExceeded):
			if err := s.identifyLate(); err != nil {
				return err
			}
		default:
			return err
		}
		if s.console != nil {
			// A serial port may stay silent for days.
			conn.SetReadDeadline(time.Time{})
		}
	}
}

// start asks for BINARY both ways, since a serial line carries 8-bit
// bytes and NVT mode would stuff NULs after CRs (RFC 856), and for SGA,
// since the stream is full duplex (RFC 858). RFC 1143 makes it harmless
// that the host may ask the same at the same time.
func (s *session) start() error {
	for _, opt := range []byte{optBinary, optSGA} {
		s.us[opt], s.him[opt] = optWantYes, optWantYes
	}
	return s.hc.send([]byte{
		cmdIAC, cmdWill, optBinary, cmdIAC, cmdDo, optBinary,
		cmdIAC, cmdWill, optSGA, cmdIAC, cmdDo, optSGA,
	})
}

// process is the whole receive path of a connection: decode, answer,
// identify, deliver.
func (s *session) process(in []byte) error {
	out, err := s.p.feed(in, s.out[:0], s)
	s.out = out
	if derr := s.deliver(out); derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	if s.console == nil && s.queried && s.nAwaiting == 0 && s.id.identified() {
		return s.attach()
	}
	return nil
}

// deliver hands output to the console, or holds it until the VM is known:
// a VM prints from power-on, and the first lines of a boot matter.
func (s *session) deliver(out []byte) error {
	switch {
	case len(out) == 0:
	case s.console != nil && s.hc.dropped.Load():
		return errDropped
	case s.console != nil:
		s.console.ingest(out)
	case len(s.pre)+len(out) > s.cc.cfg.MaxUnidentifiedBytes:
		return errorf(errUnidentified, "over %d bytes of output before the VM was named", s.cc.cfg.MaxUnidentifiedBytes)
	default:
		s.pre = append(s.pre, out...)
	}
	return nil
}

// identifyLate settles for what the host said by the deadline: a host
// that answered some questions and not others still named its VM.
func (s *session) identifyLate() error {
	if !s.id.identified() {
		return errorf(errUnidentified, "no VM UUID within %v", s.cc.cfg.IdentifyTimeout)
	}
	return s.attach()
}

func (s *session) attach() error {
	c, err := s.cc.consoleFor(s.id)
	if err != nil {
		return err
	}
	return s.attachTo(c, nil)
}

// attachTo attaches the connection to c, by identity, or as the target of
// c's vMotion m.
func (s *session) attachTo(c *Console, m *migration) error {
	if err := c.attach(s.hc, s.id, m); errors.Is(err, errIdentityConflict) {
		return errorf(errProtocol, "%v", err)
	} else if err != nil {
		return err
	}
	s.console = c
	s.cc.reindex(c)
	s.cc.persist(c)
	id := c.Identity()
	s.log.Debug("console: host connection identified", "vm", id.Name, "instance_uuid", id.InstanceUUID, "bios_uuid", id.BIOSUUID)
	if len(s.pre) > 0 {
		c.ingest(s.pre)
		s.pre = nil
	}
	return nil
}

// end detaches the connection from its console.
func (s *session) end() {
	if s.console != nil {
		s.console.detach(s.hc)
	}
}

// spend takes one token for a telnet command. Every reply we send is to
// a command that changed state (RFC 1143), so a flood gains no
// amplification, but it still costs parsing and is closed.
func (s *session) spend() error {
	now := s.cc.now()
	burst := float64(s.cc.cfg.CommandBurst)
	s.tokens = min(burst, s.tokens+now.Sub(s.refilled).Seconds()*s.cc.cfg.CommandRate)
	s.refilled = now
	if s.tokens < 1 {
		return errorf(errProtocol, "telnet commands faster than %v a second", s.cc.cfg.CommandRate)
	}
	s.tokens--
	return nil
}
