package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/metrics"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/safedir"
)

// consoleConfig is the console section of the configuration (in
// simulator mode its defaults, with the concentrator on at
// config.SimConsoleAddress), with --console-address over its address.
func (d *Daemon) consoleConfig() config.Console {
	c := config.DefaultConsole()
	c.Address = config.SimConsoleAddress
	if d.cfg != nil {
		c = d.cfg.Console
	}
	c.Address = override(d.opts.ConsoleAddress, c.Address)
	return c
}

// startConcentrator makes the console concentrator for the listener l
// (none when nil): it gives the BMCs that ask for one their VM's serial
// console, logs connections, and writes each console's log under the
// state directory when asked to. It counts into m.
func (d *Daemon) startConcentrator(l net.Listener, bopts *bridge.Options, m *metrics.Metrics) error {
	if l == nil {
		if d.cfg != nil && anyConsole(d.cfg.BMCs) {
			d.log.Warn("the console concentrator is off (--console-address -): BMCs with console: true offer no serial console")
		}
		return nil
	}
	cc := d.consoleConfig()
	cfg := console.Config{BufferSize: int(cc.BufferSize), OnEvent: d.consoleEvent, Log: d.log,
		AllowedSources: cc.AllowedSources, Accept: d.acceptConsole}
	if cc.Log {
		dir := filepath.Join(d.stateDir(), "console")
		if err := safedir.Ensure(dir, "console log directory"); err != nil {
			return fmt.Errorf("%w (console.log)", err)
		}
		cfg.Persist = func(id console.Identity) (io.Writer, error) {
			name := id.InstanceUUID
			if name == "" {
				name = id.BIOSUUID
			}
			return console.OpenRotating(filepath.Join(dir, name+".log"), cc.LogMaxBytes, cc.LogKeep)
		}
	}
	d.conc = console.New(cfg)
	bopts.Console = func(id machine.Identity) machine.SerialConsole { return d.consoleFor(id) }
	bopts.ConsoleURI = cc.URI
	if bopts.ConsoleURI == "" {
		bopts.ConsoleURI = "telnet://" + l.Addr().String()
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil && ap.Addr().IsUnspecified() {
			// The configuration refuses this; --console-address cannot.
			d.log.Warn("the VMs' serial ports are pointed at every address, which no ESXi host can connect to: set console.uri", "uri", bopts.ConsoleURI)
		}
	}
	m.ObserveConsoles(d.consoleSample)
	return nil
}

// anyConsole reports whether a BMC of bmcs asks for a console.
func anyConsole(bmcs []config.BMC) bool {
	for _, b := range bmcs {
		if b.Console {
			return true
		}
	}
	return false
}

// consoleFor is the console of the VM id, registered by its BIOS and
// instance UUIDs: the concentrator then joins a host connection to it
// only when the connection names the VM by both, as ESXi does.
func (d *Daemon) consoleFor(id machine.Identity) *console.Console {
	return d.conc.Register(console.Identity{BIOSUUID: id.UUID, InstanceUUID: id.InstanceUUID, Name: id.Name})
}

// acceptConsole gives a console only to a VM whose BMC offers one, named
// by its BIOS UUID and its instance UUID as vCenter knows them: a
// connection naming any other VM, a made-up one, or a real VM's BIOS UUID
// with another instance UUID (to take its console over) is refused, so
// that it can neither fill the console table, evicting real consoles, nor
// create log files, nor read the keys typed at a VM.
func (d *Daemon) acceptConsole(id console.Identity) error {
	if d.bridge.ServesConsole(id.BIOSUUID, id.InstanceUUID) {
		return nil
	}
	return fmt.Errorf("no BMC with a console serves the VM %s (BIOS UUID %s)", id.Name, id.BIOSUUID)
}

// consoleEventMessages are the log messages of the console events.
var consoleEventMessages = map[console.EventKind]string{
	console.EventConnected:        "serial console connected",
	console.EventDisconnected:     "serial console disconnected",
	console.EventMigrated:         "serial console followed a vMotion",
	console.EventMigrationAborted: "serial console: vMotion aborted, the VM stays",
}

// consoleEvent logs a console's connection events: who connected, from
// where; never what the console shows.
func (d *Daemon) consoleEvent(ev console.Event) {
	msg := consoleEventMessages[ev.Kind]
	uuid := ev.Identity.InstanceUUID
	if uuid == "" {
		uuid = ev.Identity.BIOSUUID
	}
	d.log.Info(msg, "vm", ev.Identity.Name, "uuid", uuid, "remote", ev.Conn.Remote)
}

// consoleSample is the concentrator as metrics read it.
func (d *Daemon) consoleSample() metrics.ConcentratorSample {
	st := d.conc.Stats()
	s := metrics.ConcentratorSample{Active: st.Active, Closed: map[string]uint64{
		"limit": st.Refused, "unidentified": st.Unidentified, "protocol": st.ProtocolErrors, "rejected": st.Rejected,
	}}
	for _, c := range d.conc.Consoles() {
		id, cs := c.Identity(), c.Stats()
		uuid := id.InstanceUUID
		if uuid == "" {
			uuid = id.BIOSUUID
		}
		s.Consoles = append(s.Consoles, metrics.ConsoleSample{VM: id.Name, UUID: uuid, Connected: c.Connected(),
			BytesFromVM: cs.BytesIn, BytesToVM: cs.BytesOut, Connections: cs.Connections, Migrations: cs.Migrations})
	}
	return s
}

// consoleOf is the serial console of the BMC id names, for the
// management API: not found for an unknown BMC, a conflict for one that
// offers none or does not serve.
func (d *Daemon) consoleOf(id string) (*console.Console, error) {
	i, err := d.consoleBMC(id)
	if err != nil {
		return nil, err
	}
	return d.consoleFor(machine.Identity{UUID: i.UUID, InstanceUUID: i.InstanceUUID, Name: i.Name}), nil
}

// consoleBMC is the BMC id names, if it serves a serial console.
func (d *Daemon) consoleBMC(id string) (bridge.Info, error) {
	bm, err := d.bridge.Lookup(id)
	if err != nil {
		return bridge.Info{}, apiError(err)
	}
	i := bm.Info()
	switch {
	case !i.Spec.Console:
		return i, fmt.Errorf("%w: BMC %s offers no serial console: set console: true on it in the configuration (or add it with bmc add --console)", api.ErrConflict, id)
	case d.conc == nil:
		return i, fmt.Errorf("%w: the console concentrator is off: set console.address in the configuration (or serve --console-address)", api.ErrConflict)
	case i.Status != bridge.Running || i.UUID == "":
		return i, fmt.Errorf("%w: BMC %s is not serving (%s): its VM's console is there once it does", api.ErrConflict, id, i.Status)
	}
	return i, nil
}

// ConsoleLog implements api.Backend. Reading never creates a console:
// a VM whose host has not connected yet has an empty log.
func (d *Daemon) ConsoleLog(_ context.Context, id string) ([]byte, error) {
	i, err := d.consoleBMC(id)
	if err != nil {
		return nil, err
	}
	if c := d.conc.Find(console.Identity{BIOSUUID: i.UUID, InstanceUUID: i.InstanceUUID, Name: i.Name}); c != nil {
		return c.Snapshot(), nil
	}
	return []byte{}, nil
}

// Console implements api.Backend.
func (d *Daemon) Console(_ context.Context, id string) (machine.SerialConsole, error) {
	c, err := d.consoleOf(id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// consoleState is what `bmc show` and `bmc list --json` say of i's
// console: nil for a BMC that offers none.
func (d *Daemon) consoleState(i bridge.Info) *api.ConsoleState {
	if !i.Spec.Console || d.conc == nil {
		return nil
	}
	s := &api.ConsoleState{}
	if c := d.conc.Find(console.Identity{BIOSUUID: i.UUID, InstanceUUID: i.InstanceUUID}); c != nil && i.UUID != "" {
		if conn, ok := c.Conn(); ok {
			s.Connected, s.Remote = true, conn.Remote
		}
	}
	return s
}
