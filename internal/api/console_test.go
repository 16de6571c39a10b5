package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// consoleBackend serves one console, or err.
type consoleBackend struct {
	Backend
	c   *clienttest.Console
	err error
}

func (b consoleBackend) Console(context.Context, string) (machine.SerialConsole, error) {
	return b.c, b.err
}

func (b consoleBackend) ConsoleLog(context.Context, string) ([]byte, error) {
	return []byte(bootLog), b.err
}

// bootLog is the output a console of newBootedConsole keeps.
const bootLog = "boot log\r\n"

// newBootedConsole is a console that has printed bootLog, and does not
// echo: what the stream reads after it is only what the test prints.
func newBootedConsole() *clienttest.Console {
	c := clienttest.NewConsole()
	c.SetEcho(false)
	c.Print(bootLog)
	return c
}

// serveAPI serves h on a socket of the test's, as the daemon does: the
// requests' context ends when the server's does. It returns the client
// and the server's cancel.
func serveAPI(t *testing.T, h http.Handler) (*Client, context.CancelFunc) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "run", "api.sock")
	l, err := Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: h, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { cancel(); _ = srv.Close(); <-done })
	return NewClient(socket), cancel
}

// The console stream: the kept output then live output down, keystrokes
// up; dropped keystrokes told once; the stream ends with the client, with
// the console and with the server, logging both ends and nothing typed.
func TestConsoleStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		connected bool
		end       func(f *clienttest.Console, rwc io.ReadWriteCloser, stopServer context.CancelFunc)
	}{
		{"the client leaves", true, func(_ *clienttest.Console, rwc io.ReadWriteCloser, _ context.CancelFunc) { rwc.Close() }},
		{"the console ends", true, func(f *clienttest.Console, _ io.ReadWriteCloser, _ context.CancelFunc) { f.End() }},
		{"the server stops", true, func(_ *clienttest.Console, _ io.ReadWriteCloser, stop context.CancelFunc) { stop() }},
		{"not connected", false, func(_ *clienttest.Console, rwc io.ReadWriteCloser, _ context.CancelFunc) { rwc.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log clienttest.Buffer
			f := newBootedConsole()
			f.SetConnected(tc.connected)
			c, stop := serveAPI(t, Handler(consoleBackend{c: f}, slog.New(slog.NewTextHandler(&log, nil))))
			rwc, err := c.Console(context.Background(), "vm")
			if err != nil {
				t.Fatal(err)
			}
			defer rwc.Close()
			clienttest.ReadUntil(t, rwc, bootLog)
			f.Print("login: ")
			clienttest.ReadUntil(t, rwc, "login: ")
			if _, err := rwc.Write([]byte("root\r")); err != nil {
				t.Fatal(err)
			}
			if tc.connected {
				clienttest.Eventually(t, "keystrokes typed", func() bool { return f.Typed() == "root\r" })
			} else {
				clienttest.ReadUntil(t, rwc, "[ipmi-vmware-bridge: keystrokes dropped: the VM's serial port is not connected")
			}
			tc.end(f, rwc, stop)
			if _, err := io.Copy(io.Discard, rwc); err != nil && !errors.Is(err, net.ErrClosed) {
				t.Fatalf("the stream ended with %v", err)
			}
			clienttest.Eventually(t, "detached", func() bool { return f.Attached() == 0 && strings.Contains(log.String(), "console detached") })
			if !strings.Contains(log.String(), `msg="console attached" bmc=vm`) || strings.Contains(log.String(), "root") {
				t.Fatalf("log %q", log.String())
			}
		})
	}
}

// Console and ConsoleLog give the daemon's refusals as its messages.
func TestConsoleRefused(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("%w: no BMC vm", ErrNotFound),
		fmt.Errorf("%w: BMC vm offers no serial console", ErrConflict),
	} {
		c, _ := serveAPI(t, Handler(consoleBackend{err: err}, slog.New(slog.DiscardHandler)))
		if _, got := c.Console(context.Background(), "vm"); got == nil || got.Error() != err.Error() {
			t.Errorf("Console: %v, want %v", got, err)
		}
		if got := c.ConsoleLog(context.Background(), "vm", io.Discard); got == nil || got.Error() != err.Error() {
			t.Errorf("ConsoleLog: %v, want %v", got, err)
		}
	}
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	if _, err := c.Console(context.Background(), "vm"); err == nil || !strings.Contains(err.Error(), "no daemon at") {
		t.Errorf("no daemon: %v", err)
	}
}
