package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ConsoleSample is one VM's serial console as a scrape reads it.
type ConsoleSample struct {
	// VM is the VM's name; UUID its instance UUID, or its BIOS UUID when
	// the host reported none: what tells two VMs of one name apart.
	VM, UUID string
	// Connected: the VM's serial port is connected to the concentrator.
	Connected bool
	// BytesFromVM are what the VM printed, BytesToVM the keystrokes sent
	// to it, Connections its host connections (one per power-on or
	// reconnection, and one per vMotion's target), Migrations the
	// vMotions it made.
	BytesFromVM, BytesToVM, Connections, Migrations uint64
}

// ConcentratorSample is the console concentrator as a scrape reads it.
type ConcentratorSample struct {
	// Active counts the host connections open.
	Active int64
	// Closed counts the host connections closed by the concentrator, by
	// reason: "limit" (over a connection limit), "unidentified" (named no
	// VM in time), "protocol" (malformed or flooding telnet), "rejected"
	// (the VM was refused).
	Closed   map[string]uint64
	Consoles []ConsoleSample
}

// ObserveConsoles exports the serial consoles read reports, read at each
// scrape: the concentrator keeps the counts, so nothing is counted twice.
func (m *Metrics) ObserveConsoles(read func() ConcentratorSample) {
	m.Registry.MustRegister(&consoleCollector{read: read})
}

// SOLActive moves the IPMI Serial-over-LAN sessions active on the BMC at
// endpoint by delta: +1 when a payload is activated, -1 when it is
// deactivated or its session ends. The IPMI endpoint calls it through its
// Observer (which *Metrics is).
func (m *Metrics) SOLActive(endpoint string, delta int) {
	m.sol.WithLabelValues(endpoint).Add(float64(delta))
}

// SOLBytes counts n bytes of a BMC's Serial-over-LAN: direction "out" is
// console output sent to the client, "in" keystrokes accepted from it.
func (m *Metrics) SOLBytes(endpoint, direction string, n int) {
	m.solBytes.WithLabelValues(endpoint, direction).Add(float64(n))
}

func newSOLBytes() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "ipmi_sol_bytes_total",
		Help: "IPMI Serial-over-LAN bytes by BMC and direction: out (console output to the client), in (keystrokes from it).",
	}, []string{"bmc", "direction"})
}

func newSOLGauge() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "ipmi_sol_sessions_active",
		Help: "IPMI Serial-over-LAN payloads active, by BMC (at most one each, as on a real BMC).",
	}, []string{"bmc"})
}

var (
	consoleLabels    = []string{"vm", "uuid"}
	consoleConnected = prometheus.NewDesc(ns+"_console_connected",
		"1 while the VM's serial port is connected to the bridge's console concentrator (vSPC), by VM.", consoleLabels, nil)
	consoleFromVM = prometheus.NewDesc(ns+"_console_bytes_from_vm_total",
		"Bytes the VM printed on its serial console, by VM.", consoleLabels, nil)
	consoleToVM = prometheus.NewDesc(ns+"_console_bytes_to_vm_total",
		"Keystroke bytes sent to the VM's serial console, by VM.", consoleLabels, nil)
	consoleConnections = prometheus.NewDesc(ns+"_console_connections_total",
		"ESXi host connections of the VM's serial port (each power-on or reconnection, and each vMotion's target), by VM.", consoleLabels, nil)
	consoleMigrations = prometheus.NewDesc(ns+"_console_migrations_total",
		"vMotions the VM's serial console followed, by VM.", consoleLabels, nil)
	consoleActive = prometheus.NewDesc(ns+"_console_host_connections_active",
		"ESXi host connections open to the console concentrator.", nil, nil)
	consoleClosed = prometheus.NewDesc(ns+"_console_host_connections_closed_total",
		"Host connections the console concentrator closed, by reason: limit (over a connection limit), unidentified (named no VM in time), protocol (malformed or flooding telnet), rejected (VM refused).",
		[]string{"reason"}, nil)
)

// consoleCollector exposes a ConcentratorSample.
type consoleCollector struct {
	read func() ConcentratorSample
}

func (c *consoleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{consoleConnected, consoleFromVM, consoleToVM, consoleConnections, consoleMigrations, consoleActive, consoleClosed} {
		ch <- d
	}
}

func (c *consoleCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	ch <- prometheus.MustNewConstMetric(consoleActive, prometheus.GaugeValue, float64(s.Active))
	for reason, n := range s.Closed {
		ch <- prometheus.MustNewConstMetric(consoleClosed, prometheus.CounterValue, float64(n), reason)
	}
	seen := make(map[string]bool, len(s.Consoles))
	for _, v := range s.Consoles {
		// Two consoles under one UUID would fail the whole scrape
		// (duplicate series); the first one stands.
		if seen[v.UUID] {
			continue
		}
		seen[v.UUID] = true
		connected := 0.0
		if v.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(consoleConnected, prometheus.GaugeValue, connected, v.VM, v.UUID)
		for _, k := range []struct {
			d *prometheus.Desc
			v uint64
		}{{consoleFromVM, v.BytesFromVM}, {consoleToVM, v.BytesToVM}, {consoleConnections, v.Connections}, {consoleMigrations, v.Migrations}} {
			ch <- prometheus.MustNewConstMetric(k.d, prometheus.CounterValue, float64(k.v), v.VM, v.UUID)
		}
	}
}
