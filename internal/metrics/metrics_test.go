package metrics

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestFamilies pins every family the bridge exports, with its labels,
// type and help, once each has a series: dashboards and alerts name them, so a
// change must be deliberate (run with -update to accept one).
func TestFamilies(t *testing.T) {
	m := New(func() []VCenterSample {
		return []VCenterSample{{Name: "lab", Connected: true, Requests: map[string]uint64{"Login": 1}}}
	},
		func() (active, pending map[string]int) { return map[string]int{"b": 1}, map[string]int{"b": 0} })
	m.Request("Get Chassis Status", "0x00", time.Millisecond)
	m.Session("b", "opened")
	m.AuthFailure("b")
	m.Panic()
	m.Dropped("malformed")
	m.Replay()
	m.Lockout("b")
	m.Action("power_on", machine.ErrBusy)
	m.Redfish().Request("/redfish/v1", 200)
	m.Redfish().AuthFailure("b")
	m.MediaBytes(1)
	m.MediaUploads(1)
	m.MediaReused()
	m.MediaCollected(1)
	m.SOLActive("b", 1)
	m.SOLBytes("b", "out", 1)
	m.PoolExhausted("enroll[0]", 1)
	m.Enrolled(3)
	m.ObserveConsoles(func() ConcentratorSample {
		return ConcentratorSample{Active: 1, Closed: map[string]uint64{"limit": 1},
			Consoles: []ConsoleSample{{VM: "vm", UUID: "u", Connected: true, BytesFromVM: 1}}}
	})
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), ns+"_") {
			continue // Go's and the process's, which client_golang owns
		}
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		fmt.Fprintf(&got, "%s{%s} %s: %s\n", f.GetName(), strings.Join(labels, ","), f.GetType(), f.GetHelp())
	}
	path := filepath.Join("testdata", "families.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Fatalf("families differ from %s (run with -update to accept):\n%s", path, got.String())
	}
}

// TestResult: an action's result label is its error's class.
func TestResult(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{machine.ErrBusy, "busy"},
		{fmt.Errorf("power on: %w", machine.ErrUnavailable), "unavailable"},
		{machine.ErrInvalidState, "invalid_state"},
		{machine.ErrUnsupported, "unsupported"},
		{machine.ErrInvalidArgument, "invalid_argument"},
		{machine.ErrNotFound, "not_found"},
		{errors.New("vCenter said no"), "error"},
	} {
		if got := result(tt.err); got != tt.want {
			t.Errorf("result(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
