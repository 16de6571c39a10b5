package bridge

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
)

// Add starts and saves a runtime BMC, unless its address or (without
// AllowDuplicate) its VM already has one. The steps run in order on one
// bridge, whose configured BMC serves alpha at 127.0.0.2.
func TestAdd(t *testing.T) {
	inv := newInventory("alpha", "beta", "gamma")
	st := openState(t)
	b := startFake(t, inv, []Spec{spec("alpha", 2)}, Options{State: st})
	alpha := b.BMCs()[0].Info().Addr.String()
	dup := spec("alpha", 7)
	dup.AllowDuplicate = true
	for _, tc := range []struct {
		name string
		spec Spec
		err  error
		want Status
	}{
		{"a VM without a BMC", spec("beta", 3), nil, Running},
		{"a VM not created yet", spec("ghost", 4), nil, Waiting},
		{"a configured address", spec("gamma", 2), ErrInUse, ""},
		{"an address bound on port 0", Spec{VM: "gamma", Address: alpha}, ErrInUse, ""},
		{"a VM with a BMC", spec("alpha", 5), ErrDuplicate, ""},
		{"a VM by another of its names", spec("42000000-0000-4000-8000-000000000001", 6), ErrDuplicate, ""},
		{"a second BMC asked for", dup, nil, Running},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.BMCs())
			bm, err := b.Add(tc.spec)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				if len(b.BMCs()) != before || isSaved(t, st, tc.spec.Address) {
					t.Fatal("a refused BMC must be neither added nor saved")
				}
				return
			}
			if i := bm.Info(); i.Status != tc.want || !i.Runtime {
				t.Fatalf("got %s runtime %v, want %s runtime", describe(bm), i.Runtime, tc.want)
			}
			var s saved
			if ok, err := st.Get(bmcPrefix+tc.spec.Address, &s); !ok || err != nil || !s.Runtime || s.Spec.VM != tc.spec.VM {
				t.Fatalf("saved %+v (%v, %v), want the runtime spec", s, ok, err)
			}
		})
	}
}

// isSaved reports whether the state file holds a BMC at addr.
func isSaved(t *testing.T, st *state.Store, addr string) bool {
	t.Helper()
	ok, err := st.Get(bmcPrefix+addr, new(saved))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// Remove stops and forgets a runtime BMC: its machine closed, its address
// free, its saved spec deleted. Configured BMCs, unknown ones and names
// that are ambiguous are refused.
func TestRemove(t *testing.T) {
	inv := newInventory("alpha", "beta")
	st := openState(t)
	b := startFake(t, inv, []Spec{spec("alpha", 2)}, Options{State: st})
	beta, err := b.Add(spec("beta", 3))
	if err != nil {
		t.Fatal(err)
	}
	second := spec("alpha", 4)
	second.AllowDuplicate = true
	if _, err := b.Add(second); err != nil {
		t.Fatal(err)
	}
	betaAddr := running(t, beta)
	for _, tc := range []struct {
		id  string
		err error
	}{
		{"alpha", ErrAmbiguous},
		{spec("alpha", 2).Address, ErrFromConfig},
		{"nobody", ErrUnknownBMC},
		{"beta", nil},
		{"beta", ErrUnknownBMC},
	} {
		if err := b.Remove(tc.id); !errors.Is(err, tc.err) {
			t.Fatalf("Remove(%s): %v, want %v", tc.id, err, tc.err)
		}
	}
	if slices.Contains(b.BMCs(), beta) || isSaved(t, st, spec("beta", 3).Address) {
		t.Fatal("removed BMC still listed or saved")
	}
	if i := beta.Info(); i.Addr != nil || beta.Machine() != nil {
		t.Fatalf("removed BMC still serves at %v", i.Addr)
	}
	c, err := net.ListenPacket("udp", betaAddr.String())
	if err != nil {
		t.Fatalf("the removed BMC's address is still taken: %v", err)
	}
	c.Close()
	if err := b.Remove(second.Address); err != nil {
		t.Fatal(err)
	}
	if n := inv.open.Load(); n != 1 {
		t.Fatalf("%d machines open, want alpha's only", n)
	}
}

// Stop and Resume: a stopped BMC serves nothing and says so, stays stopped
// across a restart of the bridge, and serves again when resumed; each
// changes the bridge's generation.
func TestStopAndResumeOutliveARestart(t *testing.T) {
	inv := newInventory("alpha", "beta")
	st := openState(t)
	b := start(t.Context(), map[string]inventory{"": inv}, []Spec{spec("alpha", 2)}, Options{Log: quiet, State: st})
	if _, err := b.Add(spec("beta", 3)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"alpha", "beta"} {
		gen := b.Generation()
		if err := b.Stop(id); err != nil {
			t.Fatal(err)
		}
		bm := b.Find(id)
		if i := bm.Info(); i.Status != Stopped || i.Addr != nil || bm.Machine() != nil || b.Generation() == gen {
			t.Fatalf("%s: got %s at %v, want stopped, unbound, a new generation", id, describe(bm), i.Addr)
		}
	}
	if err := b.Stop("nobody"); !errors.Is(err, ErrUnknownBMC) {
		t.Fatalf("Stop(nobody): %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = startFake(t, inv, []Spec{spec("alpha", 2)}, Options{State: st})
	bms := b.BMCs()
	if len(bms) != 2 || !bms[1].Info().Runtime {
		t.Fatalf("%d BMCs after the restart, want alpha and the runtime beta", len(bms))
	}
	for _, bm := range bms {
		if s := bm.currentStatus(); s != Stopped {
			t.Fatalf("%s after the restart: %s, want stopped", bm.spec.VM, s)
		}
		gen := b.Generation()
		if err := b.Resume(bm.spec.Address); err != nil {
			t.Fatal(err)
		}
		running(t, bm)
		if b.Generation() == gen {
			t.Fatal("resuming a BMC must change the generation")
		}
	}
	if keys := st.Keys(bmcPrefix); len(keys) != 1 || keys[0] != bmcPrefix+spec("beta", 3).Address {
		t.Fatalf("saved %v: want the runtime BMC only, the configured one running again", keys)
	}
}

// Reload makes the configured BMCs those of the new configuration: only
// what changed restarts, and runtime BMCs stay.
func TestReload(t *testing.T) {
	config := []Spec{spec("alpha", 2), spec("beta", 3)}
	changed := func(i int, change func(*Spec)) []Spec {
		out := slices.Clone(config)
		change(&out[i])
		return out
	}
	for _, tc := range []struct {
		name  string
		specs []Spec
		// restarted and want are the VMs whose BMC restarted and those
		// served once reloaded.
		restarted, want []string
	}{
		{"unchanged", config, nil, []string{"alpha", "beta", "rt"}},
		{"a line added above", changed(0, func(s *Spec) { s.Where = "bridge.yaml:9" }), nil, []string{"alpha", "beta", "rt"}},
		{"a password changed", changed(1, func(s *Spec) { s.Password = "changed" }), []string{"beta"}, []string{"alpha", "beta", "rt"}},
		{"a console turned on", changed(1, func(s *Spec) { s.Console = true }), []string{"beta"}, []string{"alpha", "beta", "rt"}},
		{"a VM changed", changed(1, func(s *Spec) { s.VM = "gamma" }), []string{"gamma"}, []string{"alpha", "gamma", "rt"}},
		{"a BMC gone", config[:1], nil, []string{"alpha", "rt"}},
		{"a BMC new", append(slices.Clone(config), spec("gamma", 4)), []string{"gamma"}, []string{"alpha", "beta", "rt", "gamma"}},
		{"a runtime BMC's address", append(slices.Clone(config), spec("gamma", 9)), nil, []string{"alpha", "beta", "rt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := newInventory("alpha", "beta", "gamma", "rt")
			b := startFake(t, inv, config, Options{})
			if _, err := b.Add(spec("rt", 9)); err != nil {
				t.Fatal(err)
			}
			addrs := map[string]string{}
			for _, bm := range b.BMCs() {
				addrs[bm.spec.VM] = running(t, bm).String()
			}
			bound := inv.newVMs.Load()
			b.Reload(tc.specs)
			var got []string
			for _, bm := range b.BMCs() {
				i := bm.Info()
				running(t, bm)
				got = append(got, i.Name)
				if old, ok := addrs[i.Name]; ok && old != i.Addr.String() && !slices.Contains(tc.restarted, i.Name) {
					t.Errorf("%s restarted (%s, now %s)", i.Name, old, i.Addr)
				}
				if where := tc.specs[0].Where; i.Name == "alpha" && i.Spec.Where != where {
					t.Errorf("alpha's origin %q, want %q", i.Spec.Where, where)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("serving %v, want %v", got, tc.want)
			}
			if n := inv.newVMs.Load() - bound; n != int64(len(tc.restarted)) {
				t.Fatalf("%d machines bound by the reload, want %d (%v)", n, len(tc.restarted), tc.restarted)
			}
			if n := inv.open.Load(); n != int64(len(tc.want)) {
				t.Fatalf("%d machines open, want %d: a dropped or restarted BMC's machine must be closed", n, len(tc.want))
			}
		})
	}
}

// A BMC an operator stopped stays stopped when its configuration changes.
func TestReloadKeepsAStoppedBMCStopped(t *testing.T) {
	inv := newInventory("alpha")
	b := startFake(t, inv, []Spec{spec("alpha", 2)}, Options{State: openState(t)})
	if err := b.Stop("alpha"); err != nil {
		t.Fatal(err)
	}
	s := spec("alpha", 2)
	s.Password = "changed"
	b.Reload([]Spec{s})
	if bm := b.BMCs()[0]; bm.currentStatus() != Stopped || bm.Machine() != nil {
		t.Fatalf("got %s, want stopped", describe(bm))
	}
}

// Info and Machine describe a BMC as its VM is now: its current name and
// power state, the machine as Options.Wrap decorates it; a BMC with no
// bound VM has no machine.
func TestInfoAndMachine(t *testing.T) {
	inv := newInventory("alpha")
	type wrapped struct{ machine.Machine }
	b := startFake(t, inv, []Spec{spec("alpha", 2), spec("ghost", 3)}, Options{
		Wrap: func(m machine.Machine) machine.Machine { return wrapped{m} },
	})
	alpha, ghost := b.BMCs()[0], b.BMCs()[1]
	if err := alpha.Machine().Power(t.Context(), machine.On); err != nil {
		t.Fatal(err)
	}
	inv.rename("alpha", "alpha-2")
	i := alpha.Info()
	if i.Name != "alpha-2" || i.Power != machine.PowerOn || i.Spec != spec("alpha", 2) || i.Runtime || i.Requests != 0 || len(i.Sessions) != 0 {
		t.Fatalf("Info %+v: want the current name and power, no requests yet", i)
	}
	if _, ok := alpha.Machine().(wrapped); !ok {
		t.Fatalf("Machine() is %T, want the wrapped machine", alpha.Machine())
	}
	if ghost.Machine() != nil {
		t.Fatal("a waiting BMC has no machine")
	}
}

// After Close nothing binds: management operations are refused, a reload
// or an inventory change starts nothing, and every BMC is stopped with its
// address free.
func TestNoBindAfterClose(t *testing.T) {
	inv := newInventory("alpha", "beta")
	b := startFake(t, inv, []Spec{spec("alpha", 2), spec("ghost", 3)}, Options{})
	addr := running(t, b.BMCs()[0])
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	bound := inv.newVMs.Load()
	for name, op := range map[string]func() error{
		"add":    func() error { _, err := b.Add(spec("beta", 4)); return err },
		"remove": func() error { return b.Remove("alpha") },
		"stop":   func() error { return b.Stop("alpha") },
		"resume": func() error { return b.Resume("alpha") },
	} {
		if err := op(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	b.Reload([]Spec{spec("beta", 5)})
	inv.create("ghost")
	time.Sleep(50 * time.Millisecond) // a reconciliation would have begun
	if n := inv.newVMs.Load(); n != bound {
		t.Fatalf("%d machines bound after Close", n-bound)
	}
	for _, bm := range b.BMCs() {
		if i := bm.Info(); i.Status != Stopped || i.Addr != nil {
			t.Fatalf("%s after Close: %s at %v, want stopped", i.Spec.VM, i.Status, i.Addr)
		}
	}
	if len(b.BMCs()) != 2 {
		t.Fatal("Reload after Close changed the BMCs")
	}
	if pings(addr) {
		t.Fatal("an endpoint still answers after Close")
	}
}

// Close racing adds: whatever it does not refuse, it waits for and stops;
// no machine stays open and no endpoint answers once it returns.
func TestCloseWaitsForBindsInFlight(t *testing.T) {
	inv := newInventory()
	var names []string
	for i := range 8 {
		names = append(names, string(rune('a'+i)))
		inv.create(names[i])
	}
	b := start(t.Context(), map[string]inventory{"": inv}, nil, Options{Log: quiet})
	added := make(chan *BMC, len(names))
	for i, name := range names {
		go func() {
			bm, err := b.Add(spec(name, 10+i))
			if err != nil && !errors.Is(err, ErrClosed) {
				t.Error(err)
			}
			added <- bm
		}()
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := inv.open.Load(); n != 0 {
		t.Fatalf("%d machines open after Close", n)
	}
	for range names {
		if bm := <-added; bm != nil {
			if i := bm.Info(); i.Addr != nil || bm.Machine() != nil {
				t.Fatalf("%s serves after Close: %s", i.Spec.VM, describe(bm))
			}
		}
	}
}

// A saved BMC that cannot be read is skipped, and the others start.
func TestUnreadableSavedBMCIsSkipped(t *testing.T) {
	inv := newInventory("alpha", "beta")
	st := openState(t)
	for key, v := range map[string]any{
		bmcPrefix + "127.0.0.5:0": "not a BMC",
		bmcPrefix + "127.0.0.6:0": saved{Runtime: true, Spec: spec("beta", 6)},
	} {
		if err := st.Put(key, v); err != nil {
			t.Fatal(err)
		}
	}
	b := startFake(t, inv, []Spec{spec("alpha", 2)}, Options{State: st})
	bms := b.BMCs()
	if len(bms) != 2 {
		t.Fatalf("%d BMCs, want the configured and the readable saved one", len(bms))
	}
	for _, bm := range bms {
		running(t, bm)
	}
}

// Once the bridge's context ends nothing binds either: an operation begun
// after is refused, and a bind under way when it ends does not serve.
func TestNoBindAfterTheContextEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		during bool
	}{{"ended before", false}, {"ends during a bind", true}} {
		t.Run(tc.name, func(t *testing.T) {
			inv := newInventory("alpha")
			slow := &blockedStart{started: make(chan struct{}), release: make(chan struct{})}
			wrap := func(m machine.Machine) machine.Machine {
				slow.Machine = m
				return slow
			}
			ctx, cancel := context.WithCancel(t.Context())
			b := start(ctx, map[string]inventory{"": inv}, nil, Options{Log: quiet, Wrap: wrap})
			t.Cleanup(func() { _ = b.Close() })
			if !tc.during {
				cancel()
				if _, err := b.Add(spec("alpha", 2)); !errors.Is(err, ErrClosed) {
					t.Fatalf("Add after the context ended: %v, want ErrClosed", err)
				}
				return
			}
			added := make(chan *BMC, 1)
			go func() {
				bm, _ := b.Add(spec("alpha", 2))
				added <- bm
			}()
			<-slow.started
			cancel()
			close(slow.release)
			bm := <-added
			if i := bm.Info(); i.Status == Running || i.Addr != nil || bm.Machine() != nil {
				t.Fatalf("a bind finished after the context ended serves: %s at %v", describe(bm), i.Addr)
			}
			if n := inv.open.Load(); n != 0 {
				t.Fatalf("%d machines open, want the late bind's closed", n)
			}
		})
	}
}

// A Stop or Resume of a BMC that a Remove dropped after it was looked up
// does not save it again: it would come back after a restart.
func TestStopAfterRemoveDoesNotSaveTheBMCAgain(t *testing.T) {
	inv := newInventory("alpha")
	st := openState(t)
	b := startFake(t, inv, nil, Options{State: st})
	s := spec("alpha", 2)
	bm, err := b.Add(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(s.Address); err != nil {
		t.Fatal(err)
	}
	for _, stop := range []bool{true, false} {
		if err := b.setStoppedBMC(bm, stop); !errors.Is(err, ErrUnknownBMC) {
			t.Fatalf("stop %v of a removed BMC: %v, want ErrUnknownBMC", stop, err)
		}
		if isSaved(t, st, s.Address) || bm.Machine() != nil {
			t.Fatal("the removed BMC is saved or bound again")
		}
	}
}
