package bridge

import (
	"errors"
	"testing"
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
