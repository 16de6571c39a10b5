//go:build linux

package clienttest

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// PTY is a client program on a pseudo-terminal, as an operator runs
// `ipmitool sol activate` or ipmiconsole: both put their terminal in raw
// mode and read keystrokes from it.
type PTY struct {
	t    *testing.T
	name string
	tty  *os.File // the terminal's master side
	out  Buffer
	done chan struct{}
	err  error // the program's exit, once done is closed
}

// StartPTY runs name with args on a new pseudo-terminal until it exits or
// the test ends.
func StartPTY(t *testing.T, name string, args ...string) *PTY {
	t.Helper()
	master, slave := openPTY(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, Tool(t, name), args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = slave.Close()
	p := &PTY{t: t, name: name, tty: master, done: make(chan struct{})}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = io.Copy(&p.out, master) // until the program and its terminal are gone
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		_ = master.Close()
		<-readDone
	})
	return p
}

// openPTY opens a pseudo-terminal pair (pty(7)): the master from
// /dev/ptmx, unlocked, and the slave it names.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	raw, err := master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ioctlErr error
	if err := raw.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr == nil {
			n, ioctlErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ioctlErr != nil {
		t.Fatal(errors.Join(err, ioctlErr))
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, slave
}

// Type sends keystrokes to the program.
func (p *PTY) Type(s string) {
	p.t.Helper()
	if _, err := p.tty.Write([]byte(s)); err != nil {
		p.t.Fatalf("typing at %s: %v", p.name, err)
	}
}

// Expect waits up to Patience for the program's terminal to show s.
func (p *PTY) Expect(s string) {
	p.t.Helper()
	if !p.out.Await(s) {
		p.t.Fatalf("%s did not show %q; it showed:\n%s", p.name, s, p.out.String())
	}
}

// Exit waits up to 10 s for the program to exit and returns its status.
func (p *PTY) Exit() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s did not exit; it showed:\n%s", p.name, p.out.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// Output is what the program has shown so far.
func (p *PTY) Output() string { return p.out.String() }
