package console

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// recorder is a telnetHandler that writes down what it gets.
type recorder struct{ got []string }

func (r *recorder) negotiate(verb, opt byte) error {
	r.got = append(r.got, fmt.Sprintf("neg %d %d", verb, opt))
	return nil
}

func (r *recorder) subnegotiate(opt byte, payload []byte) error {
	r.got = append(r.got, fmt.Sprintf("sb %d %x", opt, payload))
	return nil
}

func (r *recorder) command(cmd byte) error {
	r.got = append(r.got, fmt.Sprintf("cmd %d", cmd))
	return nil
}

func TestParser(t *testing.T) {
	tests := []struct {
		name    string
		binary  bool
		in      []byte
		data    []byte
		events  []string
		wantErr error
	}{
		{"plain data", true, []byte("hello"), []byte("hello"), nil, nil},
		{"doubled IAC is 255", true, []byte{'a', 255, 255, 'b'}, []byte{'a', 255, 'b'}, nil, nil},
		{"negotiation", true, []byte{'a', 255, 251, 232, 'b'}, []byte("ab"), []string{"neg 251 232"}, nil},
		{"subnegotiation with doubled IAC", true, []byte{255, 250, 232, 40, 1, 255, 255, 2, 255, 240, 'z'}, []byte("z"), []string{"sb 232 2801ff02"}, nil},
		{"other commands", true, []byte{255, 241, 255, 249, 255, 240}, nil, []string{"cmd 241", "cmd 249", "cmd 240"}, nil},
		{"empty subnegotiation", true, []byte{255, 250, 255, 240}, nil, []string{"cmd 240"}, nil},
		{"NVT CR NUL is CR", false, []byte{'a', '\r', 0, 'b', '\r', '\n'}, []byte("a\rb\r\n"), nil, nil},
		{"NVT CR then IAC", false, []byte{'\r', 255, 255}, []byte{'\r', 255}, nil, nil},
		{"binary keeps NUL after CR", true, []byte{'\r', 0}, []byte{'\r', 0}, nil, nil},
		{"subnegotiation over the limit", true, append([]byte{255, 250}, make([]byte, 17)...), nil, nil, errSubTooLong},
		{"IAC x inside a subnegotiation", true, []byte{255, 250, 232, 255, 'x'}, nil, nil, errSubMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, and one byte at a time: a read may end anywhere.
			for _, step := range []int{len(tt.in), 1} {
				p := parser{maxSub: 16, binary: tt.binary}
				var r recorder
				var data []byte
				var err error
				for i := 0; i < len(tt.in) && err == nil; i += max(step, 1) {
					data, err = p.feed(tt.in[i:min(i+max(step, 1), len(tt.in))], data, &r)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("step %d: err %v, want %v", step, err, tt.wantErr)
				}
				if !bytes.Equal(data, tt.data) || !slices.Equal(r.got, tt.events) {
					t.Errorf("step %d: data %q events %q, want %q %q", step, data, r.got, tt.data, tt.events)
				}
			}
		})
	}
}

func TestAppendEscaped(t *testing.T) {
	tests := []struct {
		in     string
		binary bool
		want   string
	}{
		{"abc", true, "abc"},
		{"a\xffb", true, "a\xff\xffb"},
		{"\r", true, "\r"},
		{"\r", false, "\r\x00"},
		{"\r\n", false, "\r\n"},
		{"a\rb\xff", false, "a\r\x00b\xff\xff"},
	}
	for _, tt := range tests {
		if got := string(appendEscaped(nil, []byte(tt.in), tt.binary)); got != tt.want {
			t.Errorf("appendEscaped(%q, %v) = %q, want %q", tt.in, tt.binary, got, tt.want)
		}
	}
}

func TestNormalizeUUID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8", "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"},
		{"421A2B3C-4D5E-6F70-8192-A3B4C5D6E7F8", "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"},
		{"421a2b3c4d5e6f708192a3b4c5d6e7f8", "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"},
		{"421a2b3c4d5e6f708192a3b4c5d6e7f800", ""},
		{"421a2b3c4d5e6f708192a3b4c5d6e7", ""},
		{"421a2b3c4d5e6f708192a3b4c5d6e7fg", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizeUUID(tt.in); got != tt.want {
			t.Errorf("NormalizeUUID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRing(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
	}{
		{"under", 10, []string{"abc", "de"}},
		{"exactly full", 5, []string{"abc", "de"}},
		{"wraps", 5, []string{"abc", "def", "g"}},
		{"write larger than the ring", 4, []string{"ab", "cdefghij", "k"}},
		{"many small", 7, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}},
		{"grows past the first allocation", 10000, []string{string(make([]byte, 5000)), "x", string(make([]byte, 5000))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ring{max: tt.max}
			var all []byte
			for _, w := range tt.writes {
				r.write([]byte(w))
				all = append(all, w...)
				want := all[max(0, len(all)-tt.max):]
				if got := r.bytes(); !bytes.Equal(got, want) {
					t.Fatalf("after %q: ring %q, want %q", w, got, want)
				}
				if cap(r.buf) > tt.max {
					t.Fatalf("ring capacity %d past its size %d", cap(r.buf), tt.max)
				}
			}
		})
	}
}

// newTestSession is a session past its opening requests, whose replies go
// to out.
func newTestSession(t *testing.T, out *bytes.Buffer) *session {
	s := New(Config{}).newSession(out, nil, "test")
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	return s
}

func TestNegotiation(t *testing.T) {
	iac := func(b ...byte) []byte { return append([]byte{cmdIAC}, b...) }
	tests := []struct {
		name    string
		in      [][]byte
		want    []byte
		wantErr error
	}{
		{"the host agrees to our BINARY and SGA: no reply", [][]byte{iac(cmdDo, optBinary), iac(cmdWill, optBinary), iac(cmdDo, optSGA), iac(cmdWill, optSGA)}, nil, nil},
		{"WILL VMWARE-TELNET-EXT is answered once", [][]byte{iac(cmdWill, optVMware), iac(cmdWill, optVMware)}, iac(cmdDo, optVMware), nil},
		{"we refuse to echo", [][]byte{iac(cmdDo, 1)}, iac(cmdWont, 1), nil},
		{"the host may not echo", [][]byte{iac(cmdWill, 1)}, iac(cmdDont, 1), nil},
		{"unknown option refused each time it is asked", [][]byte{iac(cmdWill, 99), iac(cmdWill, 99)}, append(iac(cmdDont, 99), iac(cmdDont, 99)...), nil},
		{"turning an option off is acknowledged", [][]byte{iac(cmdWill, optSGA), iac(cmdWont, optSGA)}, iac(cmdDont, optSGA), nil},
		{"DONT for an option off needs no reply", [][]byte{iac(cmdDont, 99)}, nil, nil},
		{"refusing VMWARE-TELNET-EXT ends the connection", [][]byte{iac(cmdWont, optVMware)}, nil, errUnidentified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			s := newTestSession(t, &out)
			var err error
			for _, in := range tt.in {
				if err = s.process(in); err != nil {
					break
				}
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(out.Bytes(), tt.want) {
				t.Errorf("replies % x, want % x", out.Bytes(), tt.want)
			}
		})
	}
}

func TestNegotiationSetsBinary(t *testing.T) {
	var out bytes.Buffer
	s := newTestSession(t, &out)
	if s.p.binary || s.hc.binary {
		t.Fatal("binary before the host agreed")
	}
	s.process([]byte{cmdIAC, cmdWill, optBinary, cmdIAC, cmdDo, optBinary})
	if !s.p.binary || !s.hc.binary {
		t.Errorf("binary in %v out %v after the host agreed, want both", s.p.binary, s.hc.binary)
	}
	s.process([]byte{cmdIAC, cmdWont, optBinary})
	if s.p.binary {
		t.Error("still reading binary after WONT BINARY")
	}
}

func TestVMwareSuboptions(t *testing.T) {
	ext := func(code byte, arg ...byte) []byte { return appendSubneg(nil, optVMware, []byte{code}, arg) }
	hello := []byte{cmdIAC, cmdWill, optVMware}
	tests := []struct {
		name string
		in   []byte
		want []byte // replies after DO VMWARE-TELNET-EXT
	}{
		{"DO-PROXY server", ext(doProxy, 'S', 'x'), ext(willProxy)},
		{"DO-PROXY client", ext(doProxy, 'C', 'x'), ext(willProxy)},
		{"DO-PROXY of no direction", ext(doProxy, 'Q'), ext(wontProxy)},
		{"unknown code", ext(200, 1), ext(unknownSuboptionRcvd2, 200)},
		{"a proxy-side code from the host", ext(getVMName), ext(unknownSuboptionRcvd2, getVMName)},
		{"our own answers echoed", ext(knownSuboptions2, 1), nil},
		{"KNOWN-SUBOPTIONS-1 gets our list and the questions", ext(knownSuboptions1, 0, 1), slices.Concat(
			appendSubneg(nil, optVMware, []byte{knownSuboptions2}, ourSuboptions),
			ext(getVMVCUUID), ext(getVMBIOSUUID), ext(getVMName), ext(getVMLocationUUID))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			s := newTestSession(t, &out)
			if err := s.process(append(hello, tt.in...)); err != nil {
				t.Fatal(err)
			}
			want := append([]byte{cmdIAC, cmdDo, optVMware}, tt.want...)
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("replies % x, want % x", out.Bytes(), want)
			}
		})
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"web-01", "web-01"},
		{"a\x1b[2Jb\n", "a[2Jb"},
		{"\xff\xfe", ""},
		{string(make([]byte, 300)), ""},
	}
	for _, tt := range tests {
		if got := cleanName([]byte(tt.in)); got != tt.want {
			t.Errorf("cleanName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
