package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"

	"go.yaml.in/yaml/v3"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console"
)

// Serial console defaults. The concentrator's own tunables (timeouts,
// connection limits) are the console package's, in console.DefaultConfig,
// which also owns the buffer size default: the configuration takes it
// from there rather than repeat it.
const (
	DefaultConsoleLogSize = 16 << 20
	DefaultConsoleLogKeep = 3
	// Bounds of console.bufferSize: a screenful at least, and no more
	// than a host's memory can afford for each of a thousand VMs.
	minConsoleBuffer = 4 << 10
	maxConsoleBuffer = 64 << 20
	// minConsoleLogSize bounds console.logMaxBytes from below: a smaller
	// file rotates every few lines of a boot.
	minConsoleLogSize = 64 << 10
	maxConsoleLogKeep = 100
)

// Console is the serial console concentrator (vSPC) that VMs' serial
// ports connect to.
type Console struct {
	// Address is host:port the concentrator listens on; "" turns it off.
	Address string
	// URI is the vSPC URI the serial ports of the BMCs with a console are
	// pointed at; "" means telnet://Address (as bound). A bridge behind
	// NAT, or listening on every address, gives the one ESXi hosts reach.
	URI string
	// BufferSize is how many bytes of each VM's output are kept.
	BufferSize int64
	// Log writes each console to STATEDIR/console/UUID.log, rotated at
	// LogMaxBytes with LogKeep older files kept.
	Log         bool
	LogMaxBytes int64
	LogKeep     int
	// AllowedSources, when set, are the only networks hosts may connect
	// from (the ESXi hosts' management networks): a console shows what is
	// typed at the VM, and a connection from elsewhere is closed before a
	// byte is read.
	AllowedSources []netip.Prefix
}

// DefaultConsole is the console section of a configuration without one
// (the concentrator off) and, with SimConsoleAddress, of simulator mode.
func DefaultConsole() Console {
	return Console{BufferSize: int64(console.DefaultConfig.BufferSize), LogMaxBytes: DefaultConsoleLogSize, LogKeep: DefaultConsoleLogKeep}
}

// console reads the optional console section, with its defaults.
func (p *parser) console(fields map[string]*yaml.Node, c *Console) error {
	const pre = "console."
	*c = DefaultConsole()
	n, ok := fields["console"]
	if !ok {
		return nil
	}
	f, err := p.mapping(n, pre, "address", "uri", "bufferSize", "log", "logMaxBytes", "logKeep", "allowedSources")
	if err != nil {
		return err
	}
	if l, ok := f["allowedSources"]; ok {
		if c.AllowedSources, err = p.networks(l, pre+"allowedSources"); err != nil { // media.go
			return err
		}
	}
	if c.Address, err = p.listenAddress(f, pre, "address", "", "the console concentrator"); err != nil {
		return err
	}
	if err := p.consoleURI(n, f, c); err != nil {
		return err
	}
	if err := p.consoleSizes(f, c); err != nil {
		return err
	}
	if l, ok := f["log"]; ok {
		if err := l.Decode(&c.Log); err != nil || l.Tag != "!!bool" {
			return p.err(l, pre+"log", "must be true or false")
		}
	}
	if k, ok := f["logKeep"]; ok {
		if err := k.Decode(&c.LogKeep); err != nil || k.Tag != "!!int" || c.LogKeep < 0 || c.LogKeep > maxConsoleLogKeep {
			return p.err(k, pre+"logKeep", fmt.Sprintf("must be a whole number from 0 to %d (rotated files kept)", maxConsoleLogKeep))
		}
	}
	return nil
}

// consoleURI reads console.uri, which must be a telnet URI with a host
// and port: ESXi connects a serial port's vSPC to it as given. Without
// it the bound address serves, unless it is every address, which no
// host can connect to.
func (p *parser) consoleURI(n *yaml.Node, f map[string]*yaml.Node, c *Console) error {
	const key = "console.uri"
	var err error
	if c.URI, err = p.str(f, "console.", "uri"); err != nil {
		return err
	}
	if c.URI == "" {
		host, port, _ := net.SplitHostPort(c.Address)
		if a, err := netip.ParseAddr(host); c.Address != "" && (host == "" || err == nil && a.IsUnspecified()) {
			return p.err(n, key, "missing: console.address "+c.Address+" listens on every address, so say which one the ESXi hosts connect to, e.g. telnet://bridge.example.com:"+port)
		}
		return nil
	}
	u, perr := url.Parse(c.URI)
	if perr != nil || (u.Scheme != "telnet" && u.Scheme != "telnets") || u.Port() == "" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return p.err(f["uri"], key, "must be telnet://HOST:PORT (or telnets:// for TLS in front of the bridge), the address ESXi hosts connect the serial ports to")
	}
	return nil
}

// consoleSizes reads console.bufferSize and console.logMaxBytes.
func (p *parser) consoleSizes(f map[string]*yaml.Node, c *Console) error {
	const pre = "console."
	var err error
	if s, ok := f["bufferSize"]; ok {
		if c.BufferSize, err = p.size(s, pre+"bufferSize"); err != nil {
			return err
		}
		if c.BufferSize < minConsoleBuffer || c.BufferSize > maxConsoleBuffer {
			return p.err(s, pre+"bufferSize", "must be from 4KiB to 64MiB")
		}
	}
	if s, ok := f["logMaxBytes"]; ok {
		if c.LogMaxBytes, err = p.size(s, pre+"logMaxBytes"); err != nil {
			return err
		}
		if c.LogMaxBytes < minConsoleLogSize {
			return p.err(s, pre+"logMaxBytes", "must be at least 64KiB")
		}
	}
	return nil
}

// consoleBMCs checks that the BMCs that offer a console have a
// concentrator to reach it through; list is the bmcs node.
func (p *parser) consoleBMCs(list *yaml.Node, cfg *Config) error {
	if cfg.Console.Address != "" {
		return nil
	}
	for i, b := range cfg.BMCs {
		if !b.Console {
			continue
		}
		return p.err(valueOf(list.Content[i], "console"), fmt.Sprintf("bmcs[%d].console", i), "needs console.address: the concentrator the VM's serial port connects to")
	}
	return nil
}
