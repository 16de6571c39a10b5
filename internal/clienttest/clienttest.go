// Package clienttest holds what tests that drive real client programs
// (ipmitool, FreeIPMI, pyghmi, sushy) and running daemons share: finding a
// client, which in CI must exist, a free loopback port, a buffer that
// concurrent writers may share, waits for a condition or for output to
// come, a clock that moves only when the test says, a serial console in
// memory for a BMC under test to offer, and (on Linux) a pseudo-terminal
// for the console clients that need one (ipmitool's sol activate,
// ipmiconsole).
package clienttest

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Python is Debian's interpreter, where python3-pyghmi and python3-sushy
// live (the python3 first on PATH may be another).
const Python = "/usr/bin/python3"

// Tool finds a client program. In CI (CI set) a missing client fails the
// test, since a skipped interoperability test proves nothing; elsewhere the
// test is skipped.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	missing(t, name+" is not installed (.ci/run installs it)")
	return ""
}

// PythonModule returns Python after checking that it imports module.
func PythonModule(t testing.TB, module string) string {
	t.Helper()
	if out, err := exec.Command(Tool(t, Python), "-c", "import "+module).CombinedOutput(); err != nil {
		missing(t, "python module "+module+" is not importable (.ci/run installs it): "+string(out))
	}
	return Python
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// FreeUDPPort returns a UDP port free on 127.0.0.1 a moment ago, and
// never one it returned before in this process: the kernel may hand the
// same ephemeral port to two calls in a row, and two BMCs of one test (or
// of parallel tests) given the same port fail to bind.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	for {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		handedMu.Lock()
		seen := handed[port]
		handed[port] = true
		handedMu.Unlock()
		if !seen {
			return port
		}
	}
}

// handed are the ports FreeUDPPort returned.
var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

// FreeTCPPort returns a TCP port free on 127.0.0.1 a moment ago, for a
// server the test starts only later (a vCenter that comes up after the
// daemon that waits for it).
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Buffer is a bytes.Buffer safe for concurrent writers and readers, such
// as a daemon's log and the test that reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Await waits up to Patience for the buffer to hold want and reports
// whether it does, so that the caller can fail in its own words, showing
// what was written instead.
func (s *Buffer) Await(want string) bool {
	return within(Patience, func() bool { return strings.Contains(s.String(), want) })
}

// ReadUntil reads r until what it has read holds want, and returns that;
// it fails the test, showing what came, if r ends or fails first. How long
// it may wait is r's own affair (a read deadline, a peer that hangs up).
func ReadUntil(t testing.TB, r io.Reader, want string) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(got, []byte(want)) {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read %q (%v), want %q", got, err, want)
		}
	}
	return string(got)
}

// Patience is how long Eventually and Await wait: long enough for a
// daemon or a client program on a loaded, shared machine, so that a
// failure means the condition did not come, not that the machine was busy.
const Patience = 10 * time.Second

// Eventually fails the test unless cond holds within Patience, checking
// every few milliseconds; what names the condition in the failure.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, Patience, what, cond)
}

// EventuallyWithin is Eventually for a condition that may take longer
// than Patience by design (a backoff, a timeout of the code under test
// running out on the real clock).
func EventuallyWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !within(d, cond) {
		t.Fatalf("%s: not within %s", what, d)
	}
}

// within reports whether cond holds within d, checked every 5 ms.
func within(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// Clock is a clock for the code under test that moves only when the test
// advances it, so that timeouts and lockouts pass without being waited
// out, while real clients talk to that code from other goroutines.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock that reads the real time now, until advanced.
func NewClock() *Clock { return ClockAt(time.Now()) }

// ClockAt returns a Clock that reads t until advanced (a fixed date makes
// rendered times comparable).
func ClockAt(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time, for a func() time.Time field.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
