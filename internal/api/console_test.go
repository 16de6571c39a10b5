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
	"sync"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// fakeConsole is a serial console in memory: its kept output is
// "boot log\r\n", print adds live output, Write records keystrokes (or
// fails while not connected).
type fakeConsole struct {
	connected bool
	mu        sync.Mutex
	typed     []byte
	readers   []*fakeReader
}

func newFakeConsole(connected bool) *fakeConsole { return &fakeConsole{connected: connected} }

func (f *fakeConsole) Connected() bool { return f.connected }

func (f *fakeConsole) Attach(replay bool) machine.ConsoleReader {
	r := &fakeReader{ch: make(chan []byte, 16)}
	if replay {
		r.ch <- []byte("boot log\r\n")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readers = append(f.readers, r)
	return r
}

func (f *fakeConsole) Write(p []byte) (int, error) {
	if !f.connected {
		return 0, fmt.Errorf("fake: %w", machine.ErrConsoleNotConnected)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.typed = append(f.typed, p...)
	return len(p), nil
}

// print sends live output to every reader.
func (f *fakeConsole) print(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.readers {
		r.send([]byte(s))
	}
}

// end closes every reader, as a console that is removed.
func (f *fakeConsole) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.readers {
		r.Close()
	}
}

func (f *fakeConsole) keys() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.typed)
}

// attached counts the readers not closed.
func (f *fakeConsole) attached() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.readers {
		if !r.isClosed() {
			n++
		}
	}
	return n
}

type fakeReader struct {
	mu     sync.Mutex
	ch     chan []byte
	closed bool
}

func (r *fakeReader) Output() <-chan []byte { return r.ch }

func (r *fakeReader) send(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.ch <- p
	}
}

func (r *fakeReader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.ch)
	}
}

func (r *fakeReader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// consoleBackend serves one console, or err.
type consoleBackend struct {
	Backend
	c   *fakeConsole
	err error
}

func (b consoleBackend) Console(context.Context, string) (machine.SerialConsole, error) {
	return b.c, b.err
}

func (b consoleBackend) ConsoleLog(context.Context, string) ([]byte, error) {
	return []byte("boot log\r\n"), b.err
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
		end       func(f *fakeConsole, rwc io.ReadWriteCloser, stopServer context.CancelFunc)
	}{
		{"the client leaves", true, func(_ *fakeConsole, rwc io.ReadWriteCloser, _ context.CancelFunc) { rwc.Close() }},
		{"the console ends", true, func(f *fakeConsole, _ io.ReadWriteCloser, _ context.CancelFunc) { f.end() }},
		{"the server stops", true, func(_ *fakeConsole, _ io.ReadWriteCloser, stop context.CancelFunc) { stop() }},
		{"not connected", false, func(_ *fakeConsole, rwc io.ReadWriteCloser, _ context.CancelFunc) { rwc.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log clienttest.Buffer
			f := newFakeConsole(tc.connected)
			c, stop := serveAPI(t, Handler(consoleBackend{c: f}, slog.New(slog.NewTextHandler(&log, nil))))
			rwc, err := c.Console(context.Background(), "vm")
			if err != nil {
				t.Fatal(err)
			}
			defer rwc.Close()
			clienttest.ReadUntil(t, rwc, "boot log\r\n")
			f.print("login: ")
			clienttest.ReadUntil(t, rwc, "login: ")
			if _, err := rwc.Write([]byte("root\r")); err != nil {
				t.Fatal(err)
			}
			if tc.connected {
				clienttest.Eventually(t, "keystrokes typed", func() bool { return f.keys() == "root\r" })
			} else {
				clienttest.ReadUntil(t, rwc, "[ipmi-vmware-bridge: keystrokes dropped: the VM's serial port is not connected")
			}
			tc.end(f, rwc, stop)
			if _, err := io.Copy(io.Discard, rwc); err != nil && !errors.Is(err, net.ErrClosed) {
				t.Fatalf("the stream ended with %v", err)
			}
			clienttest.Eventually(t, "detached", func() bool { return f.attached() == 0 && strings.Contains(log.String(), "console detached") })
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
