package bridge

import (
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// ServesConsole admits a VM only through a running BMC with a console,
// by BIOS UUID (any case) and, when the VM has one, its instance UUID
// too: a BMC without a console, an unbound one, a made-up UUID or a real
// BIOS UUID with another instance UUID get nothing.
func TestServesConsole(t *testing.T) {
	inv := newInventory("alpha", "beta", "gamma")
	setUUID(inv, "alpha", "42000000-0000-4000-8000-0000000000aa")
	setUUID(inv, "beta", "42000000-0000-4000-8000-0000000000bb")
	inv.mu.Lock()
	ref, _ := inv.findLocked("alpha")
	vm := inv.byRef[ref]
	inv.mu.Unlock()
	vm.SetIdentity(func(id *machine.Identity) { id.InstanceUUID = "50000000-0000-4000-8000-0000000000aa" })
	withConsole := spec("alpha", 2)
	withConsole.Console = true
	stopped := spec("gamma", 4)
	stopped.Console = true
	b := startFake(t, inv, []Spec{withConsole, spec("beta", 3), stopped}, Options{})
	for _, bm := range b.BMCs() {
		running(t, bm)
	}
	if err := b.Stop("gamma"); err != nil {
		t.Fatal(err)
	}
	gamma := uuidOf(t, inv, "gamma")
	for _, tc := range []struct {
		name, uuid, instance string
		want                 bool
	}{
		{"the console BMC's VM", "42000000-0000-4000-8000-0000000000aa", "50000000-0000-4000-8000-0000000000aa", true},
		{"in upper case", "42000000-0000-4000-8000-0000000000AA", "50000000-0000-4000-8000-0000000000AA", true},
		{"another instance UUID", "42000000-0000-4000-8000-0000000000aa", "50000000-0000-4000-8000-0000000000ff", false},
		{"no instance UUID", "42000000-0000-4000-8000-0000000000aa", "", false},
		{"a BMC without a console", "42000000-0000-4000-8000-0000000000bb", "", false},
		{"a stopped console BMC", strings.ToLower(gamma), "", false},
		{"made up", "42000000-0000-4000-8000-000000000bad", "", false},
		{"empty", "", "", false},
	} {
		if got := b.ServesConsole(tc.uuid, tc.instance); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
