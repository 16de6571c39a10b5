// Package console owns the bridge's serial consoles: a virtual serial port
// concentrator (vSPC) that vSphere's ESXi hosts connect out to, one TCP
// listener for every VM, speaking telnet (RFC 854/855, BINARY RFC 856, SGA
// RFC 858) with VMware's VMWARE-TELNET-EXT option (232) as VMware's "Using
// a Proxy with vSphere Virtual Serial Ports" describes it. It learns each
// connection's VM from the host (vCenter instance UUID, BIOS UUID, name),
// keeps one Console per VM across reconnections and vMotion, buffers what
// the VM printed in a bounded ring, fans it out to any number of readers
// that can never slow the VM down, and sends keystrokes to the host that
// runs the VM now. It does not export metrics or serve users: it exposes
// counters, events and the byte streams, and the bridge wires them to
// IPMI SOL, Redfish, files and Prometheus.
package console

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Errors a Console's Write returns.
var (
	// ErrNotConnected: the VM's serial port has no connection to the
	// concentrator (VM off, port disconnected, host unreachable). It is
	// machine.ErrConsoleNotConnected to errors.Is, which is what IPMI SOL
	// and the management API test for.
	ErrNotConnected = fmt.Errorf("console: %w (the VM is off, or its host has not connected to the concentrator)", machine.ErrConsoleNotConnected)
	// ErrMigrationBacklog: the VM is being migrated by vMotion, keystrokes
	// are held until it resumes (VMware's vSPC description requires it),
	// and the held keystrokes already fill their buffer.
	ErrMigrationBacklog = errors.New("console: the VM is migrating and its keystroke buffer is full")
	// ErrClosed: the console was removed or its concentrator stopped.
	ErrClosed = errors.New("console: closed")
)

// EventKind says what happened to a console.
type EventKind int

// Event kinds, in the order a console meets them.
const (
	// EventConnected: the VM's serial port connected (its first host
	// connection attached).
	EventConnected EventKind = iota + 1
	// EventDisconnected: the last host connection of the VM closed.
	EventDisconnected
	// EventMigrated: a vMotion completed; keystrokes now go to the
	// target host.
	EventMigrated
	// EventMigrationAborted: the source host aborted a vMotion; the VM
	// stays where it was.
	EventMigrationAborted
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventMigrated:
		return "migrated"
	case EventMigrationAborted:
		return "migration aborted"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// ConnInfo describes one host connection.
type ConnInfo struct {
	// Remote is the ESXi host's address.
	Remote string
	// Direction and ServiceURI are what the host sent in DO-PROXY: the
	// serial port's network backing ('S' server or 'C' client) and its
	// port URI.
	Direction  byte
	ServiceURI string
}

// Event is a change of a console's connection state. The concentrator
// calls Config.OnEvent with it, in order for each console.
type Event struct {
	Kind     EventKind
	Console  *Console
	Identity Identity
	Conn     ConnInfo
}

// ConsoleStats are a console's counters since it was created.
type ConsoleStats struct {
	BytesIn     uint64 // bytes the VM printed (telnet decoded)
	BytesOut    uint64 // keystroke bytes delivered to a host
	Connections uint64 // host connections attached
	Migrations  uint64 // vMotions completed
	Dropped     uint64 // bytes readers lost by not keeping up
}

// Console is one VM's serial console. Its methods are safe for
// concurrent use. It is the machine.SerialConsole the bridge gives the
// VM's BMC.
type Console struct {
	conc *Concentrator
	// evMu orders events: a transition and its event happen under it, so
	// the bridge never sees "disconnected" after a later "connected".
	evMu sync.Mutex
	// wmu orders keystrokes against vMotion: none is on the wire to the
	// source host after VMOTION-GOAHEAD, none reaches the target before
	// the held ones.
	wmu sync.Mutex
	mu  sync.Mutex
	id  Identity
	// ring holds the last bytes the VM printed.
	ring  ring
	subs  map[*Subscription]struct{}
	conns []*hostConn
	cur   *hostConn
	mig   *migration
	// pending holds keystrokes written during a vMotion.
	pending  []byte
	lastSeen time.Time
	closed   bool
	queue    int
	// persisting: Config.Persist's writer was asked for (see
	// Concentrator.persist).
	persisting bool

	bytesIn, bytesOut, connections, migrations, dropped atomic.Uint64
}

func newConsole(conc *Concentrator, id Identity) *Console {
	return &Console{
		conc:     conc,
		id:       id,
		ring:     ring{max: conc.cfg.BufferSize},
		subs:     make(map[*Subscription]struct{}),
		lastSeen: conc.now(),
		queue:    conc.cfg.SubscriberQueue,
	}
}

// Identity returns what the hosts told us about the VM.
func (c *Console) Identity() Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Connected reports whether the VM's serial port is connected.
func (c *Console) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// Conn describes the connection keystrokes go to, if any.
func (c *Console) Conn() (ConnInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ConnInfo{}, false
	}
	return c.cur.info(), true
}

// Stats returns the console's counters.
func (c *Console) Stats() ConsoleStats {
	return ConsoleStats{
		BytesIn:     c.bytesIn.Load(),
		BytesOut:    c.bytesOut.Load(),
		Connections: c.connections.Load(),
		Migrations:  c.migrations.Load(),
		Dropped:     c.dropped.Load(),
	}
}

// Attach adds a reader of the VM's output, as Subscribe does
// (machine.SerialConsole).
func (c *Console) Attach(replay bool) machine.ConsoleReader { return c.Subscribe(replay) }

// Snapshot returns a copy of the buffered output, oldest byte first.
func (c *Console) Snapshot() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ring.bytes()
}

// Write sends keystrokes to the VM through the host that runs it. It
// fails with ErrNotConnected when the serial port is not connected; during
// a vMotion it holds them for the host the VM resumes on.
func (c *Console) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	expired := c.expireMigrationLocked()
	if c.mig != nil {
		defer c.mu.Unlock()
		if len(c.pending)+len(p) > pendingKeystrokesLimit {
			return 0, ErrMigrationBacklog
		}
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	hc, held := c.cur, c.pending
	c.pending = nil
	c.mu.Unlock()
	c.conc.dropMigration(expired)
	if hc == nil {
		return 0, ErrNotConnected
	}
	if err := c.sendKeys(hc, append(held, p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sendKeys writes keystrokes to hc; a failed write means the host is gone
// or stuck, so the connection is closed and its reader detaches it.
func (c *Console) sendKeys(hc *hostConn, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if err := hc.sendData(p); err != nil {
		hc.close()
		return fmt.Errorf("console: writing to host %s: %w", hc.remote, err)
	}
	c.bytesOut.Add(uint64(len(p)))
	return nil
}

// ingest records what the VM printed and hands it to every reader. One
// copy is shared by the ring and all readers, which must not modify it.
func (c *Console) ingest(p []byte) {
	chunk := bytes.Clone(p)
	c.bytesIn.Add(uint64(len(chunk)))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ring.write(chunk)
	for s := range c.subs {
		select {
		case s.ch <- chunk:
		default:
			s.dropped.Add(uint64(len(chunk)))
			c.dropped.Add(uint64(len(chunk)))
		}
	}
}

// emit delivers ev; the caller holds evMu.
func (c *Console) emit(kind EventKind, hc *hostConn) {
	c.conc.emit(Event{Kind: kind, Console: c, Identity: c.Identity(), Conn: hc.info()})
}

// close ends every reader and host connection; the console keeps its
// buffered output for Snapshot.
func (c *Console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for s := range c.subs {
		delete(c.subs, s)
		close(s.ch)
	}
	for _, hc := range c.conns {
		hc.close()
	}
}
