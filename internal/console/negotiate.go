package console

import "errors"

// negotiate answers IAC WILL/WONT/DO/DONT after RFC 1143: a reply only to
// a request that changes an option's state, so two sides that ask at once
// never loop.
func (s *session) negotiate(verb, opt byte) error {
	if err := s.spend(); err != nil {
		return err
	}
	if verb == cmdWont && opt == optVMware {
		return errorf(errUnidentified, "the peer refuses VMWARE-TELNET-EXT: not an ESXi serial port")
	}
	var err error
	switch verb {
	case cmdWill, cmdWont:
		err = s.receive(&s.him[opt], verb == cmdWill, hostMay(opt), cmdDo, cmdDont, opt)
	default:
		err = s.receive(&s.us[opt], verb == cmdDo, weMay(opt), cmdWill, cmdWont, opt)
	}
	s.p.binary = s.him[optBinary] == optYes
	s.hc.setBinary(s.us[optBinary] == optYes)
	return err
}

// hostMay lists the options we let the host perform. ECHO is not among
// them: a host echoing our keystrokes would show each one twice, since the
// guest's tty echoes them already (RFC 857 leaves echo off by default).
func hostMay(opt byte) bool { return opt == optBinary || opt == optSGA || opt == optVMware }

// weMay lists the options we perform. Not ECHO: we would have to echo the
// VM's output back into its serial port.
func weMay(opt byte) bool { return opt == optBinary || opt == optSGA }

// receive applies one side's request to st and answers it.
func (s *session) receive(st *optState, enable, accept bool, yes, no, opt byte) error {
	switch {
	case enable && *st == optNo && accept:
		*st = optYes
		return s.hc.send([]byte{cmdIAC, yes, opt})
	case enable && *st == optNo:
		return s.hc.send([]byte{cmdIAC, no, opt})
	case enable:
		// The answer to our own request, or a repeat: no reply.
		*st = optYes
	case *st == optYes:
		*st = optNo
		return s.hc.send([]byte{cmdIAC, no, opt})
	default:
		// Our request refused, or already off.
		*st = optNo
	}
	return nil
}

// command receives any other IAC command; none needs an answer from a
// serial port proxy.
func (s *session) command(byte) error { return s.spend() }

// subnegotiate receives IAC SB ... IAC SE. Only VMWARE-TELNET-EXT is
// handled, once the host has said WILL for it (RFC 855: subnegotiation is
// for an option in effect).
func (s *session) subnegotiate(opt byte, payload []byte) error {
	if err := s.spend(); err != nil {
		return err
	}
	if opt != optVMware || s.him[optVMware] != optYes || len(payload) == 0 {
		return nil
	}
	return s.vmware(payload[0], payload[1:])
}

func (s *session) vmware(code byte, arg []byte) error {
	switch code {
	case knownSuboptions1:
		return s.onKnownSuboptions()
	case unknownSuboptionRcvd1:
		if len(arg) > 0 {
			s.answered(answerTo(arg[0]))
		}
		return nil
	case knownSuboptions2, unknownSuboptionRcvd2:
		return nil // ours; a host echoing them needs no answer
	case doProxy:
		return s.onDoProxy(arg)
	case vmVCUUID, vmBIOSUUID, vmName, vmLocationUUID:
		return s.onIdentity(code, arg)
	case vmotionBegin:
		return s.onBegin(arg)
	case vmotionPeer:
		return s.onPeer(arg)
	case vmotionComplete, vmotionAbort:
		if s.console == nil {
			return nil
		}
		s.log.Info("console: vMotion ended", "vm", s.id.Name, "complete", code == vmotionComplete)
		return s.console.finishMigration(s.hc, arg, code == vmotionComplete)
	}
	// VMware's description makes this the proxy's answer to a code it
	// does not know.
	return s.sendExt(unknownSuboptionRcvd2, []byte{code})
}

func (s *session) sendExt(code byte, arg []byte) error {
	return s.hc.send(appendSubneg(nil, optVMware, []byte{code}, arg))
}

// onKnownSuboptions answers KNOWN-SUBOPTIONS-1 with our list, then asks
// who the VM is. Every question is asked whatever the host listed: a host
// that does not know one answers UNKNOWN-SUBOPTION-RCVD-1, which the
// description defines for exactly that, and hosts older than the BIOS and
// location UUID codes say so instead of leaving us waiting.
func (s *session) onKnownSuboptions() error {
	if err := s.sendExt(knownSuboptions2, ourSuboptions); err != nil {
		return err
	}
	if s.queried {
		return nil
	}
	s.queried = true
	for _, q := range identityQueries {
		s.awaiting[q.answer] = true
		s.nAwaiting++
		if err := s.sendExt(q.get, nil); err != nil {
			return err
		}
	}
	return nil
}

func answerTo(get byte) byte {
	for _, q := range identityQueries {
		if q.get == get {
			return q.answer
		}
	}
	return get
}

func (s *session) answered(code byte) {
	if s.awaiting[code] {
		s.awaiting[code] = false
		s.nAwaiting--
	}
}

// onDoProxy accepts to proxy whatever the serial port's backing says: the
// concentrator terminates the stream itself, so a server ('S') or client
// ('C') port and any port URI are served alike.
func (s *session) onDoProxy(arg []byte) error {
	if len(arg) == 0 || arg[0] != 'S' && arg[0] != 'C' {
		return s.sendExt(wontProxy, nil)
	}
	s.hc.setProxy(arg[0], cleanName(arg[1:]))
	return s.sendExt(willProxy, nil)
}

func (s *session) onIdentity(code byte, arg []byte) error {
	var id Identity
	switch code {
	case vmVCUUID:
		id.InstanceUUID = NormalizeUUID(string(arg))
	case vmBIOSUUID:
		id.BIOSUUID = NormalizeUUID(string(arg))
	case vmLocationUUID:
		id.LocationUUID = NormalizeUUID(string(arg))
	default:
		id.Name = cleanName(arg)
	}
	s.answered(code)
	if code != vmName && id == (Identity{}) {
		s.log.Warn("console: the host sent a UUID that is not one", "code", code, "len", len(arg))
	}
	if s.id.conflicts(id) {
		return errorf(errProtocol, "the host changed the VM's UUID mid-connection")
	}
	s.id.merge(id)
	if s.console == nil {
		return nil
	}
	if err := s.console.learn(s.hc, id); errors.Is(err, errIdentityConflict) {
		return errorf(errProtocol, "%v", err)
	} else if err != nil {
		return err
	}
	s.cc.reindex(s.console)
	return nil
}

// onBegin answers VMOTION-BEGIN. A connection not yet tied to a VM has no
// console to hand over, and NOTNOW is the description's answer for "not
// at this time".
func (s *session) onBegin(seq []byte) error {
	if s.console == nil {
		return s.sendExt(vmotionNotnow, seq)
	}
	s.log.Info("console: vMotion starting", "vm", s.id.Name)
	return s.console.beginMigration(s.hc, seq)
}

// onPeer ties a target host's connection to the VM whose source host got
// this sequence and secret in our GOAHEAD. A sequence and secret we did
// not issue (or no longer hold), or that a connection already presented,
// closes the connection: the secret is what keeps one VM's host from
// taking over another VM's console, a replay of it must not either, and
// the description defines no refusal message. The claim and the attach
// are one step, so a refused PEER never joins the console, not even for
// the output it sent first.
func (s *session) onPeer(arg []byte) error {
	m := s.cc.findMigration(arg)
	if m == nil {
		return errorf(errProtocol, "VMOTION-PEER with a sequence and secret we did not issue")
	}
	var err error
	switch c := m.console; {
	case s.console == nil:
		err = s.attachTo(c, m)
	case s.console != c:
		err = errorf(errProtocol, "VMOTION-PEER for another VM than the connection's")
	default:
		err = c.joinMigration(m, s.hc)
	}
	if err != nil {
		return err
	}
	return s.sendExt(vmotionPeerOK, arg[:len(arg)-secretLen])
}
