package clienttest

import (
	"fmt"
	"slices"
	"sync"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Console is a serial console in memory (machine.SerialConsole), for a
// BMC under test to offer without a concentrator and a host: what the
// test prints is the system's output, kept for replay and handed to each
// reader that keeps up; what is typed is kept, and echoed back (as a
// shell at a prompt does) unless echo is off. The management API's and
// IPMI SOL's tests share it; it lives here rather than in consoletest,
// which the IPMI package's tests cannot import (consoletest depends on
// vsphere, which depends on ipmi through config).
type Console struct {
	mu        sync.Mutex
	connected bool
	echo      bool
	history   []byte
	typed     []byte
	readers   map[*consoleReader]bool
	keys      chan []byte
}

// NewConsole returns a Console that is connected and echoes.
func NewConsole() *Console {
	return &Console{connected: true, echo: true, readers: map[*consoleReader]bool{}, keys: make(chan []byte, 1024)}
}

// Connected reports whether the serial port is connected (SetConnected).
func (c *Console) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// SetConnected connects or disconnects the serial port: while it is not
// connected, Write fails.
func (c *Console) SetConnected(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected = on
}

// SetEcho turns echoing what is typed on or off.
func (c *Console) SetEcho(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.echo = on
}

// Attach starts a reader, given the output kept so far first with replay.
func (c *Console) Attach(replay bool) machine.ConsoleReader {
	r := &consoleReader{c: c, ch: make(chan []byte, 4096)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if replay && len(c.history) > 0 {
		r.ch <- slices.Clone(c.history)
	}
	c.readers[r] = true
	return r
}

// Write types p: kept, sent on Keys and echoed. While not connected it
// fails with an error wrapping machine.ErrConsoleNotConnected, as the
// concentrator's does, so that only code using errors.Is recognises it.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.connected {
		c.mu.Unlock()
		return 0, fmt.Errorf("clienttest console: %w", machine.ErrConsoleNotConnected)
	}
	c.typed = append(c.typed, p...)
	echo := c.echo
	c.mu.Unlock()
	select {
	case c.keys <- slices.Clone(p):
	default:
	}
	if echo {
		c.Print(string(p))
	}
	return len(p), nil
}

// Print is output of the system: kept, and handed to every reader that
// keeps up.
func (c *Console) Print(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.history = append(c.history, s...)
	for r := range c.readers {
		select {
		case r.ch <- []byte(s):
		default:
		}
	}
}

// End closes every reader, as the concentrator does for a VM it forgets.
func (c *Console) End() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r := range c.readers {
		delete(c.readers, r)
		close(r.ch)
	}
}

// Typed is everything typed so far.
func (c *Console) Typed() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.typed)
}

// Keys receives each Write's keystrokes (while its buffer has room), for
// a test that waits on them without polling Typed, such as a benchmark.
func (c *Console) Keys() <-chan []byte { return c.keys }

// Attached counts the readers neither closed nor ended.
func (c *Console) Attached() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.readers)
}

type consoleReader struct {
	c  *Console
	ch chan []byte
}

func (r *consoleReader) Output() <-chan []byte { return r.ch }

func (r *consoleReader) Close() {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.readers[r] {
		delete(r.c.readers, r)
		close(r.ch)
	}
}
