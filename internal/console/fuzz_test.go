package console

import (
	"io"
	"slices"
	"testing"
)

// hostStream is a whole well-behaved host conversation, the fuzzer's
// main seed.
func hostStream() []byte {
	ext := func(code byte, arg string) []byte { return appendSubneg(nil, optVMware, []byte{code}, []byte(arg)) }
	return slices.Concat(
		[]byte{cmdIAC, cmdWill, optVMware, cmdIAC, cmdWill, optBinary, cmdIAC, cmdDo, optBinary},
		appendSubneg(nil, optVMware, []byte{knownSuboptions1}, ourSuboptions),
		ext(doProxy, "Stelnet://vspc.example:13370"),
		ext(vmVCUUID, vmA.instance), ext(vmBIOSUUID, vmA.bios), ext(vmName, "vm-a"),
		ext(unknownSuboptionRcvd1, string([]byte{getVMLocationUUID})),
		[]byte("boot\r\n\xff\xff"),
		ext(vmotionBegin, "\x01\x02"),
		ext(vmotionAbort, "\x01\x02"),
		ext(vmotionPeer, "\x01\x02secret!!"),
	)
}

// FuzzConcentrator feeds bytes through the receive path a host
// connection takes (decode, negotiate, identify, attach, deliver), in
// chunks whose size the input's first byte picks, as TCP may cut a
// stream anywhere.
func FuzzConcentrator(f *testing.F) {
	f.Add(append([]byte{7}, hostStream()...))
	f.Add(append([]byte{0}, hostStream()...))
	f.Add([]byte{1, cmdIAC, cmdSB, optVMware, cmdIAC, cmdIAC, cmdIAC, cmdSE})
	f.Add([]byte{3, '\r', 0, cmdIAC, cmdWont, optBinary, '\r', 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cc := New(Config{BufferSize: 256, MaxSubnegotiation: 64, MaxUnidentifiedBytes: 512, CommandBurst: 200})
		s := cc.newSession(io.Discard, nil, "fuzz")
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		chunk := max(int(data[0]), 1)
		in := data[1:]
		for len(in) > 0 {
			n := min(chunk, len(in))
			if err := s.process(in[:n]); err != nil {
				break
			}
			in = in[n:]
		}
		if s.console != nil {
			if n := len(s.console.Snapshot()); n > 256 {
				t.Fatalf("ring holds %d bytes, past its 256", n)
			}
			if !s.console.Connected() {
				t.Fatal("an attached session's console is not connected")
			}
		}
		if len(s.pre) > 512 {
			t.Fatalf("%d bytes held before identification, past the 512 limit", len(s.pre))
		}
		s.end()
		for _, c := range cc.Consoles() {
			if c.Connected() {
				t.Fatal("a console is still connected after its only session ended")
			}
		}
	})
}
