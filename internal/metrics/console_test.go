package metrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The console series are read at scrape time: a VM per series, one UUID
// reported twice kept once (a duplicate would fail the scrape), and SOL
// sessions moved by their deltas.
func TestConsoleSeries(t *testing.T) {
	for _, tt := range []struct {
		name   string
		sample ConcentratorSample
		sol    []int
		want   string
	}{
		{"two VMs", ConcentratorSample{Active: 2, Closed: map[string]uint64{"protocol": 3}, Consoles: []ConsoleSample{
			{VM: "a", UUID: "1", Connected: true, BytesFromVM: 10, BytesToVM: 2, Connections: 1},
			{VM: "b", UUID: "2", Migrations: 1},
		}}, []int{1}, `
ipmi_vmware_bridge_console_bytes_from_vm_total{uuid="1",vm="a"} 10
ipmi_vmware_bridge_console_bytes_from_vm_total{uuid="2",vm="b"} 0
ipmi_vmware_bridge_console_bytes_to_vm_total{uuid="1",vm="a"} 2
ipmi_vmware_bridge_console_bytes_to_vm_total{uuid="2",vm="b"} 0
ipmi_vmware_bridge_console_connected{uuid="1",vm="a"} 1
ipmi_vmware_bridge_console_connected{uuid="2",vm="b"} 0
ipmi_vmware_bridge_console_connections_total{uuid="1",vm="a"} 1
ipmi_vmware_bridge_console_connections_total{uuid="2",vm="b"} 0
ipmi_vmware_bridge_console_host_connections_active 2
ipmi_vmware_bridge_console_host_connections_closed_total{reason="protocol"} 3
ipmi_vmware_bridge_console_migrations_total{uuid="1",vm="a"} 0
ipmi_vmware_bridge_console_migrations_total{uuid="2",vm="b"} 1
ipmi_vmware_bridge_ipmi_sol_sessions_active{bmc="b"} 1
`},
		{"one UUID twice", ConcentratorSample{Consoles: []ConsoleSample{{VM: "a", UUID: "1", Connected: true}, {VM: "a-clone", UUID: "1"}}}, []int{1, -1}, `
ipmi_vmware_bridge_console_bytes_from_vm_total{uuid="1",vm="a"} 0
ipmi_vmware_bridge_console_bytes_to_vm_total{uuid="1",vm="a"} 0
ipmi_vmware_bridge_console_connected{uuid="1",vm="a"} 1
ipmi_vmware_bridge_console_connections_total{uuid="1",vm="a"} 0
ipmi_vmware_bridge_console_host_connections_active 0
ipmi_vmware_bridge_console_migrations_total{uuid="1",vm="a"} 0
ipmi_vmware_bridge_ipmi_sol_sessions_active{bmc="b"} 0
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := New(nil, nil)
			m.ObserveConsoles(func() ConcentratorSample { return tt.sample })
			for _, d := range tt.sol {
				m.SOLActive("b", d)
			}
			if got := seriesOf(t, m, "console", "sol"); got != strings.TrimPrefix(tt.want, "\n") {
				t.Fatalf("series:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// seriesOf writes the series of the families whose name holds one of
// parts, one "name{label="value",...} value" line each, sorted.
func seriesOf(t *testing.T, m *Metrics, parts ...string) string {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range families {
		if !slices.ContainsFunc(parts, func(p string) bool { return strings.Contains(f.GetName(), p) }) {
			continue
		}
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := s.GetCounter().GetValue() + s.GetGauge().GetValue()
			name := f.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			lines = append(lines, fmt.Sprintf("%s %g\n", name, v))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}
