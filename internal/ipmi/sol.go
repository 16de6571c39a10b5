package ipmi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Serial-over-LAN (IPMI v2.0 §15, §24, §26) carries the VM's serial
// console (machine.SerialConsole) to ipmitool `sol activate`, FreeIPMI's
// ipmiconsole, pyghmi's Console and Ironic's ipmitool-socat console.
// go-ipmi keeps the SOL state machine (bmc.SOLStore: ACKs, retries,
// accumulation, and a pump goroutine per active payload that pushes
// output) and answers the payload commands; this file feeds it our
// sessions' SOL packets, sends what it pushes in those sessions, and
// attaches it to the machine's console.

// The SOL configuration (Table 26-5), fixed by the bridge: Set SOL
// Configuration Parameters is refused (setSOLConfig).
const (
	// solPrivilege is the least session privilege that activates SOL, or
	// takes it over from another session (#2 bits 3:0). The serial
	// console can reset the system (a login, SysRq) as Chassis Control
	// can, which needs Operator; Ironic (-L ADMINISTRATOR), ipmitool,
	// FreeIPMI and pyghmi (Administrator by default) and `-L OPERATOR`
	// all reach it, while a User session, a monitor's, cannot take the
	// console from an operator.
	solPrivilege = bmc.PrivilegeLevelOperator
	// solForce forces encryption and authentication (#2 bits 7, 6): the
	// sealer encrypts and authenticates every packet, the front door
	// drops SOL packets that are not both (wire.go), and all three
	// clients ask for both.
	solForce = 0x80 | 0x40
	// solAccumulate is how long output waits for more before it is sent
	// (#3, 5 ms units) unless a packet's worth is waiting: 20 ms, so that
	// a keystroke's echo is back within about 30 ms (go-ipmi's 50 ms made
	// it 64 ms, which typing feels).
	solAccumulate = 4
	// solRetries and solRetryInterval (#4: count, 10 ms units): 7 resends
	// 200 ms apart, 1.4 s in all. go-ipmi's 3 at 50 ms give up on a
	// packet within 200 ms, shorter than a burst of loss: behind a relay
	// losing 40 % of SOL packets a console lost 12 lines of 200 that way,
	// and none with 7 at 200 ms.
	solRetries       = 7
	solRetryInterval = 20
	// solMaxChars is the most character data a console's SOL packet may
	// carry: Activate Payload offers 255-byte payloads, the 4-byte SOL
	// header included (go-ipmi's response; ipmitool reads and sends that
	// much less 4).
	solMaxChars = bmc.SOLMaxPayloadChars
	// solStatusDeactivating is status bit 4 of a BMC's SOL packet, "SOL
	// deactivated/deactivating" (Table 15-2).
	solStatusDeactivating = 0x10
	// solReplay is how much of the output kept from before an activation
	// it is shown: about a screen, so that the console opens on the
	// prompt the system last printed, without the whole buffer crossing
	// the network one 251-byte packet per round trip.
	solReplay = 4 << 10
	// solKeyQueue bounds the keystroke packets waiting for the serial
	// port; more are dropped, as a serial line drops what overruns it.
	solKeyQueue = 64
)

// SOLObserver is an Observer that also follows Serial-over-LAN. An
// endpoint whose Config.Observer implements it reports SOL payloads
// activated and deactivated, and the bytes that cross them.
type SOLObserver interface {
	// SOLActive: a SOL payload was activated (delta +1) or deactivated
	// (-1) on endpoint; their sum is the payloads active, at most one an
	// endpoint.
	SOLActive(endpoint string, delta int)
	// SOLBytes: n bytes crossed a payload of endpoint, direction "out"
	// (the system's output, taken for the console) or "in" (keystrokes
	// accepted for the system).
	SOLBytes(endpoint, direction string, n int)
}

var errSOLSessionGone = errors.New("the SOL payload's session has ended")

// wireSOL points go-ipmi's SOL store at this server: the SOL
// configuration, the sender of pushed packets, and the Deactivate
// Payload and Set SOL Configuration Parameters handlers. Without a
// console only the configuration changes: it says SOL is disabled, and
// Activate Payload answers 81h as before.
func (s *server) wireSOL(cfg Config) {
	c := s.bmc.SOL.Config()
	c.PayloadPort = advertisedPort(s.conn.LocalAddr(), cfg.SOLPort)
	s.sol, _ = s.bmc.HAL().Console().(*solConsole)
	enabled := byte(0)
	if s.sol != nil {
		enabled = 1
	}
	c.SetParam(1, []byte{enabled})
	c.SetParam(2, []byte{solForce | byte(solPrivilege)})
	c.SetParam(3, []byte{solAccumulate, solMaxChars})
	c.SetParam(4, []byte{solRetries, solRetryInterval})
	s.reg.RegisterFunc(types.CommandSetSOLConfigParam, setSOLConfig)
	if s.sol == nil {
		return
	}
	s.sol.srv = s
	s.sol.obs, _ = cfg.Observer.(SOLObserver)
	s.bmc.SOL.SetSenderFactory(s.solSender)
	s.reg.RegisterFunc(types.CommandDeactivatePayload, s.deactivatePayload)
}

// advertisedPort is the UDP port Activate Payload names for the SOL
// payload (Table 24-2) and SOL parameter #8 reports: override, or the
// port the endpoint is bound to. go-ipmi would say 623, and ipmitool
// ("BMC requests SOL session on different port"), pyghmi ("Non-standard
// SOL Port Number") and FreeIPMI all refuse a payload on a port other
// than the one they logged in to (§15.10 would have them open a second
// session there).
func advertisedPort(bound net.Addr, override int) uint16 {
	if override != 0 {
		return uint16(override)
	}
	ap, _ := netip.ParseAddrPort(bound.String())
	return ap.Port()
}

// setSOLConfig answers Set SOL Configuration Parameters (§26.2) with 82h
// (read-only parameter) for every parameter: each is the bridge's, and
// one changed over IPMI would hold until the next restart only, unknown
// to the configuration. Encryption or authentication turned off would
// not even work (see solForce). ipmitool `sol set` reports "Attempt to
// write read-only parameter".
func setSOLConfig(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	switch {
	case len(req) < 3:
		return nil, types.CodeRequestDataLengthInvalid, nil
	case req[1] > 8:
		return nil, types.CodeParameterNotSupported, nil
	}
	return nil, types.CodeParamConfigSetReadOnly, nil
}

// solSender is go-ipmi's SOLSenderFactory: it is asked, right after the
// console was opened for an activation (both within Activate Payload, in
// the read loop), for the function that sends the packets the payload
// pushes (output, retries, the deactivating notice) in sess. That is
// where the attachment learns its session.
func (s *server) solSender(sess *bmc.Session, _ *bmc.SOLInstance) bmc.SOLSendFunc {
	id := sess.BMCID
	a := s.sol.bind(id)
	return func(pkt *types.SOLPayloadPacket) error {
		// The pump that calls this is go-ipmi's goroutine, which has no
		// recover of its own.
		defer s.recoverAsync()
		if pkt.ControlByte&solStatusDeactivating != 0 && a != nil && a.quiet.Load() {
			return nil
		}
		st := s.session(id)
		if st == nil {
			return errSOLSessionGone
		}
		// A pushed packet acknowledges nothing: go-ipmi repeats the ACK
		// of the console's last packet on it, which pyghmi, waiting for
		// the ACK of a newer one, takes as a reason to resend that one
		// at once.
		push := *pkt
		push.AckedSequenceNumber, push.AcceptedCharacterCount = 0, 0
		st.sendPayload(s, payloadSOL, push.Pack())
		return nil
	}
}

// solPacket serves a SOL payload packet (Table 15-2) in an RMCP+ session.
// It passes the checks an IPMI request in the session does (admit): SOL
// shares the session's sequence numbers and integrity (§15.4). A packet
// of a session that has no payload active (never activated, deactivated,
// or taken over by another session) gets silence: go-ipmi has no
// instance for it.
func (s *server) solPacket(d datagram, from netip.AddrPort) {
	st := s.admit(d, from)
	if st == nil {
		return
	}
	var in types.SOLPayloadPacket
	st.seal.mu.Lock()
	plain, ok := st.seal.open(d.payload)
	ok = ok && len(plain) >= 4 && len(plain)-4 <= solMaxChars && in.Unpack(plain) == nil
	st.seal.mu.Unlock()
	if !ok {
		s.dropped(dropMessage)
		return
	}
	out := s.bmc.SOL.ProcessPacket(context.Background(), st.s.BMCID, &in)
	if out == nil {
		s.dropped(dropSOLInactive)
		return
	}
	if in.SequenceNumber == 0 {
		// An ACK-only packet is not acknowledged (§15.11), yet go-ipmi
		// answers it, repeating the ACK of the console's last data:
		// pyghmi resends that data on an ACK it does not expect. The
		// answer goes only when it carries output or status, and then
		// acknowledges nothing.
		if out.SequenceNumber == 0 && out.ControlByte == 0 && !out.NACK {
			return
		}
		out.AckedSequenceNumber, out.AcceptedCharacterCount = 0, 0
	}
	st.sendPayload(s, payloadSOL, out.Pack())
}

// deactivatePayload is Deactivate Payload (§24.2, Table 24-3) for SOL.
// go-ipmi sends the payload's console "SOL deactivating" (status 10h)
// first, also when that console is the one deactivating: ipmitool then
// reads the notice as the reply to Deactivate Payload and the reply as
// its next command's (`sol looptest` fails with "Unexpected data length
// (0) received in payload activation response"). The notice is for a
// console whose payload another session takes over (FreeIPMI prints
// "[SOL session stolen]" and closes its session), so only that one gets
// it. Taking over needs solPrivilege (go-ipmi's rule), else D4h.
func (s *server) deactivatePayload(_ context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	switch {
	case len(req) < 2:
		return nil, types.CodeRequestDataLengthInvalid, nil
	case req[0]&0x3F != payloadSOL:
		return nil, types.CodeRequestDataFieldInvalid, nil
	case req[1]&0x0F != 1:
		return nil, types.CodeParameterOutOfRange, nil // one instance (Table 24-6)
	case hctx.Session == nil:
		return nil, types.CodeNotSupported, nil // IPMI 1.5 has no payloads
	}
	if a := s.sol.owned(hctx.Session.BMCID); a != nil {
		a.quiet.Store(true)
	}
	switch err := s.bmc.SOL.Deactivate(hctx.Session); {
	case err == nil:
		return nil, types.CodeOK, nil
	case errors.Is(err, bmc.ErrSOLNotActive):
		return nil, types.CodeDeactivatePayloadAlreadyDeactivated, nil
	case errors.Is(err, bmc.ErrSOLNotOwner):
		return nil, types.CodeInsufficientPrivilege, nil
	default:
		return nil, types.CodeUnspecifiedError, err
	}
}

// solConsole is the SOL payload's console, go-ipmi's hal.ConsoleHAL: the
// machine's serial console, asked for at each activation, as the bridge
// may have replaced it since.
type solConsole struct {
	m   machine.Machine
	srv *server     // set by wireSOL, before serving
	obs SOLObserver // nil: not reported

	mu      sync.Mutex
	opening *solConn // opened by Activate Payload, not yet bound (solSender)
	active  *solConn // bound to the session that activated it
}

// newSOLConsole is m's console for SOL, or nil when m's BMC offers none.
func newSOLConsole(m machine.Machine) *solConsole {
	if m.SerialConsole() == nil {
		return nil
	}
	return &solConsole{m: m}
}

// Open attaches to the machine's console for an activation. A machine
// that no longer offers one, or whose console ended, answers 81h
// ("payload type disabled").
func (c *solConsole) Open(context.Context) (hal.ConsoleConn, error) {
	sc := c.m.SerialConsole()
	if sc == nil {
		return nil, hal.ErrNotSupported
	}
	r := sc.Attach(true)
	history, ended := recent(r, solReplay)
	if ended {
		return nil, hal.ErrNotSupported
	}
	a := &solConn{c: c, sc: sc, r: r, rest: history, keys: make(chan []byte, solKeyQueue), done: make(chan struct{})}
	c.mu.Lock()
	c.opening = a
	c.mu.Unlock()
	go a.typeKeys()
	if c.obs != nil {
		c.obs.SOLActive(c.srv.endpoint, 1)
	}
	return a, nil
}

// bind gives the attachment just opened to session and makes it the
// active one.
func (c *solConsole) bind(session uint32) *solConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.opening
	c.opening = nil
	if a != nil {
		a.session, c.active = session, a
	}
	return a
}

// owned is the active attachment if session owns it.
func (c *solConsole) owned(session uint32) *solConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active != nil && c.active.session == session {
		return c.active
	}
	return nil
}

func (c *solConsole) detach(a *solConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active == a {
		c.active = nil
	}
}

// recent takes what r holds at once, the output kept from before the
// attachment, and keeps its last n bytes from a line's start if one
// begins there. ended reports that the console ended meanwhile.
func recent(r machine.ConsoleReader, n int) (tail []byte, ended bool) {
	var b []byte
	for {
		select {
		case p, ok := <-r.Output():
			if !ok {
				return nil, true
			}
			if b == nil {
				// The first chunk (the whole replay, up to the buffer's
				// size) is kept without a copy; capped, so that an append
				// copies instead of writing into a chunk readers share.
				b = p[:len(p):len(p)]
			} else {
				b = append(b, p...)
			}
			continue
		default:
		}
		break
	}
	if len(b) <= n {
		return b, false
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return b, false
}

// solConn is one activation's attachment to the console (go-ipmi's
// hal.ConsoleConn). go-ipmi calls its methods holding the payload's lock,
// from the read loop (keystrokes) or the payload's pump (output), never
// both at once.
type solConn struct {
	c      *solConsole
	sc     machine.SerialConsole
	r      machine.ConsoleReader
	rest   []byte // the part of an output chunk not yet taken
	keys   chan []byte
	done   chan struct{}
	closed sync.Once
	ended  sync.Once

	session uint32      // the owner, set by bind under c.mu
	quiet   atomic.Bool // the owner deactivates it itself: no notice
}

// ReadAvailable takes the output waiting, without blocking (the pump
// calls it every 10 ms). The console's end deactivates the payload, from
// another goroutine: the deactivation waits for the pump, which is here.
func (a *solConn) ReadAvailable(p []byte) (int, error) {
	n := copy(p, a.rest)
	a.rest = a.rest[n:]
	for n < len(p) {
		var chunk []byte
		select {
		case b, ok := <-a.r.Output():
			if !ok {
				a.ended.Do(func() { go a.c.srv.solEnded(a) })
				return a.took(n), nil
			}
			chunk = b
		default:
			return a.took(n), nil
		}
		k := copy(p[n:], chunk)
		a.rest = chunk[k:]
		n += k
	}
	return a.took(n), nil
}

func (a *solConn) took(n int) int {
	if n > 0 && a.c.obs != nil {
		a.c.obs.SOLBytes(a.c.srv.endpoint, "out", n)
	}
	return n
}

// Write accepts keystrokes for the system and always reports them
// accepted: a full queue, or a serial port not connected (the VM off,
// its host away), drops them, as a real BMC does with a powered-off
// host. An error would mark the payload broken for good in go-ipmi, and a
// NACK makes FreeIPMI and pyghmi resend at once, in a loop for as long
// as the VM is off; ipmitool drops NACKed data anyway.
func (a *solConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	select {
	case a.keys <- slices.Clone(p):
		if a.c.obs != nil {
			a.c.obs.SOLBytes(a.c.srv.endpoint, "in", len(p))
		}
	default:
	}
	return len(p), nil
}

// typeKeys writes the keystrokes to the console in order. It is apart
// from the read loop because a console's write waits on the VM's host
// (up to the concentrator's write timeout), which would hold up every
// request of the endpoint.
func (a *solConn) typeKeys() {
	defer a.c.srv.recoverAsync()
	for {
		select {
		case <-a.done:
			return
		case p := <-a.keys:
			if _, err := a.sc.Write(p); err != nil {
				a.c.srv.log.Debug("SOL keystrokes dropped", "bytes", len(p), "err", err)
			}
		}
	}
}

// SendBreak: machine.SerialConsole has no BREAK; go-ipmi takes the
// operation as advisory and goes on.
func (a *solConn) SendBreak(context.Context) error { return hal.ErrNotSupported }

// Close ends the attachment, when the payload is deactivated.
func (a *solConn) Close() error {
	a.closed.Do(func() {
		close(a.done)
		a.r.Close()
		a.c.detach(a)
		if a.c.obs != nil {
			a.c.obs.SOLActive(a.c.srv.endpoint, -1)
		}
	})
	return nil
}

// solEnded deactivates the payload of an attachment whose console ended
// (the VM forgotten, the concentrator stopped), with the notice, unless
// it was deactivated meanwhile.
func (s *server) solEnded(a *solConn) {
	defer s.recoverAsync()
	if s.sol.owned(a.session) == a {
		s.bmc.SOL.DeactivateBySession(a.session)
	}
}
