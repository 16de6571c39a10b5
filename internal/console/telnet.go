package console

import (
	"bytes"
	"errors"
	"fmt"
)

// Telnet command bytes (RFC 854).
const (
	cmdSE   = 240 // end of subnegotiation (RFC 855)
	cmdSB   = 250 // start of subnegotiation (RFC 855)
	cmdWill = 251
	cmdWont = 252
	cmdDo   = 253
	cmdDont = 254
	cmdIAC  = 255
)

// Telnet options the concentrator negotiates.
const (
	optBinary = 0   // RFC 856
	optSGA    = 3   // RFC 858
	optVMware = 232 // VMWARE-TELNET-EXT, VMware's vSPC description
)

var (
	// errProtocol classes the errors that close a connection for what it
	// sent.
	errProtocol     = errors.New("protocol error")
	errSubTooLong   = fmt.Errorf("%w: subnegotiation longer than the limit", errProtocol)
	errSubMalformed = fmt.Errorf("%w: IAC inside a subnegotiation followed by neither IAC nor SE", errProtocol)
)

// telnetHandler receives what the parser decodes besides data bytes. An
// error stops the parse and closes the connection.
type telnetHandler interface {
	// negotiate reports IAC WILL/WONT/DO/DONT opt.
	negotiate(verb, opt byte) error
	// subnegotiate reports IAC SB opt payload IAC SE, payload unescaped.
	subnegotiate(opt byte, payload []byte) error
	// command reports any other IAC command (NOP, GA, BRK, a stray SE...).
	command(cmd byte) error
}

type parseState uint8

const (
	stData   parseState = iota
	stCR                // after a CR in non-binary mode
	stIAC               // after IAC
	stOption            // after IAC WILL/WONT/DO/DONT
	stSub               // inside IAC SB ... IAC SE
	stSubIAC            // after IAC inside a subnegotiation
)

// parser is the receive side of a telnet connection: it keeps its state
// across reads, since a TCP read may end anywhere inside a command.
type parser struct {
	state  parseState
	verb   byte
	sub    []byte
	maxSub int
	// binary is set once the host sends in BINARY mode (RFC 856). Until
	// then the stream is NVT text, where RFC 854 makes a sender follow a
	// bare CR with NUL; that NUL is not the VM's and is removed.
	binary bool
}

// feed decodes in, appends its data bytes to out and reports everything
// else to h, in stream order: a handler may change p.binary, and the bytes
// after the command are decoded accordingly.
func (p *parser) feed(in, out []byte, h telnetHandler) ([]byte, error) {
	for i := 0; i < len(in); {
		if p.state == stData && p.binary {
			// Fast path: in BINARY mode only IAC is special.
			j := bytes.IndexByte(in[i:], cmdIAC)
			if j < 0 {
				return append(out, in[i:]...), nil
			}
			out = append(out, in[i:i+j]...)
			i += j + 1
			p.state = stIAC
			continue
		}
		var err error
		out, err = p.step(in[i], out, h)
		if err != nil {
			return out, err
		}
		i++
	}
	return out, nil
}

// step decodes one byte outside the binary fast path.
func (p *parser) step(b byte, out []byte, h telnetHandler) ([]byte, error) {
	switch p.state {
	case stCR:
		p.state = stData
		if b == 0 {
			return out, nil
		}
		return p.step(b, out, h)
	case stData:
		switch {
		case b == cmdIAC:
			p.state = stIAC
		case b == '\r' && !p.binary:
			p.state = stCR
			out = append(out, b)
		default:
			out = append(out, b)
		}
		return out, nil
	case stIAC:
		return p.afterIAC(b, out, h)
	case stOption:
		p.state = stData
		return out, h.negotiate(p.verb, b)
	case stSub:
		if b == cmdIAC {
			p.state = stSubIAC
			return out, nil
		}
		return out, p.appendSub(b)
	default: // stSubIAC
		return out, p.afterSubIAC(b, h)
	}
}

func (p *parser) afterIAC(b byte, out []byte, h telnetHandler) ([]byte, error) {
	switch b {
	case cmdIAC: // IAC IAC is a data byte 255 (RFC 854)
		p.state = stData
		return append(out, cmdIAC), nil
	case cmdWill, cmdWont, cmdDo, cmdDont:
		p.state, p.verb = stOption, b
		return out, nil
	case cmdSB:
		p.state, p.sub = stSub, p.sub[:0]
		return out, nil
	}
	p.state = stData
	return out, h.command(b)
}

func (p *parser) afterSubIAC(b byte, h telnetHandler) error {
	switch b {
	case cmdIAC: // a doubled IAC is a payload byte 255 (RFC 855)
		p.state = stSub
		return p.appendSub(cmdIAC)
	case cmdSE:
		p.state = stData
		if len(p.sub) == 0 {
			return h.command(cmdSE) // IAC SB IAC SE names no option
		}
		return h.subnegotiate(p.sub[0], p.sub[1:])
	}
	return errSubMalformed
}

// appendSub bounds a subnegotiation: an ESXi host sends a few dozen bytes
// (a UUID, a VM name, a URI), and one that never ends would otherwise grow
// without limit.
func (p *parser) appendSub(b byte) error {
	if len(p.sub) >= p.maxSub {
		return errSubTooLong
	}
	p.sub = append(p.sub, b)
	return nil
}

// appendEscaped appends data to dst as telnet data: IAC doubled (RFC 854)
// and, outside BINARY mode, a CR not followed by LF sent as CR NUL, the NVT
// rule that keeps a bare carriage return from being read as a line end.
func appendEscaped(dst, data []byte, binary bool) []byte {
	for i, b := range data {
		dst = append(dst, b)
		switch {
		case b == cmdIAC:
			dst = append(dst, cmdIAC)
		case b == '\r' && !binary && (i+1 == len(data) || data[i+1] != '\n'):
			dst = append(dst, 0)
		}
	}
	return dst
}

// appendSubneg appends IAC SB opt payload IAC SE with IAC in the payload
// doubled (RFC 855): a vMotion sequence or secret is opaque bytes and may
// hold 255.
func appendSubneg(dst []byte, opt byte, payload ...[]byte) []byte {
	dst = append(dst, cmdIAC, cmdSB, opt)
	for _, part := range payload {
		dst = appendEscaped(dst, part, true)
	}
	return append(dst, cmdIAC, cmdSE)
}
