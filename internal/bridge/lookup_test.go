package bridge

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Lookup and Find name a BMC by its configured or bound address, by the VM
// reference it was configured with, or by its VM's current name; a VM with
// two BMCs must be named by address. Looking a BMC up by name reads no
// machine's power state (it would for each BMC, building its Info).
func TestLookup(t *testing.T) {
	inv := newInventory("alpha", "beta", "gamma", "delta")
	inv.ready = make(chan struct{}) // no reconciliation reads power states meanwhile
	deltaUUID := "42000000-0000-4000-8000-000000000004"
	b := startFake(t, inv, []Spec{spec("alpha", 2), spec("beta", 3), spec("gamma", 4), spec(deltaUUID, 5)}, Options{})
	second := spec("beta", 6)
	second.AllowDuplicate = true
	if _, err := b.Add(second); err != nil {
		t.Fatal(err)
	}
	bms := b.BMCs()
	alpha, gamma, delta := bms[0], bms[2], bms[3]
	inv.rename("gamma", "gamma-renamed")
	for _, tc := range []struct {
		id   string
		want *BMC
		err  error
		// names are what an ambiguous error must list.
		names []string
	}{
		{id: "127.0.0.2:0", want: alpha},
		{id: alpha.Info().Addr.String(), want: alpha},
		{id: "alpha", want: alpha},
		{id: deltaUUID, want: delta},
		{id: "delta", want: delta},
		{id: "gamma", want: gamma},
		{id: "gamma-renamed", want: gamma},
		{id: "beta", err: ErrAmbiguous, names: []string{bms[1].Info().Addr.String(), bms[4].Info().Addr.String()}},
		{id: "nobody", err: ErrUnknownBMC},
	} {
		t.Run(tc.id, func(t *testing.T) {
			reads := inv.powerReads.Load()
			got, err := b.Lookup(tc.id)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("Lookup: %v, %v; want %v, %v", got, err, tc.want, tc.err)
			}
			if tc.names != nil && !contains(err, tc.names...) {
				t.Fatalf("%v: want every address of the VM's BMCs", err)
			}
			if found := b.Find(tc.id); found != tc.want {
				t.Fatalf("Find: %v, want %v", found, tc.want)
			}
			if n := inv.powerReads.Load() - reads; n != 0 {
				t.Fatalf("looking %s up read %d power states", tc.id, n)
			}
		})
	}
}

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

// ByVM names each BMC by its VM as configured and by the VM's current
// name, under its vCenter's key: a rename is followed, and a BMC whose VM
// does not exist yet is known by its configured name.
func TestByVM(t *testing.T) {
	inv := newInventory("alpha", "beta")
	b := startFake(t, inv, []Spec{spec("alpha", 2), spec("ghost", 3)}, Options{})
	alpha := b.BMCs()[0]
	running(t, alpha)
	inv.rename("alpha", "alpha-2")
	clienttest.Eventually(t, "the rename seen", func() bool { return alpha.vmName() == "alpha-2" })
	got := b.ByVM()
	want := map[string]string{"/alpha": alpha.spec.Key(), "/alpha-2": alpha.spec.Key(), "/ghost": b.BMCs()[1].spec.Key()}
	if !maps.Equal(got, want) {
		t.Fatalf("ByVM = %v, want %v", got, want)
	}
}
