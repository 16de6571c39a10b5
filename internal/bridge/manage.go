package bridge

import (
	"fmt"
	"slices"

	"github.com/vmware/govmomi/vim25/types"
)

// Add starts a BMC at runtime and saves it, so that it is back after a
// restart. Its address must be free among the bridge's BMCs, and its VM
// without a BMC unless s.AllowDuplicate. A VM that does not exist (yet)
// leaves the BMC waiting, and an address that cannot be bound leaves it
// failed, with the reason in its Info.
func (b *Bridge) Add(s Spec) (*BMC, error) {
	if !b.enter() {
		return nil, ErrClosed
	}
	defer b.bg.Done()
	inv, err := b.inventory(s)
	if err != nil {
		return nil, err
	}
	// Resolving may ask vCenter: not under b.mu.
	ref, rerr := inv.Resolve(b.ctx, s.VM)
	bm, err := b.admit(s, ref, rerr)
	if err != nil {
		return nil, err
	}
	b.bind(bm)
	return bm, nil
}

// admit saves a runtime BMC for s and adds it to the set, unless its
// address is taken or its VM (ref, unless rerr) has a BMC.
func (b *Bridge) admit(s Spec, ref types.ManagedObjectReference, rerr error) (*BMC, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byAddress(s.Key()) != nil {
		return nil, fmt.Errorf("%s: %w", s.Key(), ErrInUse)
	}
	if other := b.sameVM(s, ref, rerr); other != nil && !s.AllowDuplicate {
		return nil, fmt.Errorf("%s has a BMC at %s: %w", s.VM, addresses([]*BMC{other}), ErrDuplicate)
	}
	bm := &BMC{spec: s, runtime: true}
	if err := b.persist(bm); err != nil {
		return nil, err
	}
	b.bmcs = append(b.bmcs, bm)
	return bm, nil
}

// Remove stops and forgets a BMC added at runtime.
func (b *Bridge) Remove(id string) error {
	if !b.enter() {
		return ErrClosed
	}
	defer b.bg.Done()
	b.mu.Lock()
	bm, err := b.lookup(id)
	switch {
	case err == nil && bm.enrolled:
		err = fmt.Errorf("%s: %w", id, ErrEnrolled)
	case err == nil && !bm.runtime:
		err = fmt.Errorf("%s: %w", id, ErrFromConfig)
	}
	var release func()
	if err == nil {
		release, err = b.drop(bm, true)
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	release()
	return nil
}

// drop stops bm's endpoint and removes bm from the set and, when forget
// or when an operator stopped it, from the state file, in one step under
// bm.mu, so that a concurrent Stop or Resume cannot save it again (nor a
// stop outlive it: a later BMC at its address would start stopped). b.mu
// must be held; release must be called once it is released (see
// stopLocked).
func (b *Bridge) drop(bm *BMC, forget bool) (release func(), err error) {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if st := b.opts.State; st != nil && (forget || bm.stopped) {
		err := st.Delete(bmcPrefix + bm.spec.Key())
		if err != nil && forget {
			return nil, err
		}
		if err != nil {
			// Only an operator's stop was kept: the BMC goes anyway,
			// and a later BMC at its address may start stopped.
			b.opts.Log.Error("a removed BMC's stop is still in the state file", "bmc", bm.spec.Key(), "err", err)
		}
	}
	release = b.stopLocked(bm, Stopped)
	bm.removed = true
	b.bmcs = slices.DeleteFunc(b.bmcs, func(x *BMC) bool { return x == bm })
	return release, nil
}

// Stop stops a BMC's endpoint and keeps it stopped across restarts.
func (b *Bridge) Stop(id string) error { return b.setStopped(id, true) }

// Resume starts a stopped BMC again.
func (b *Bridge) Resume(id string) error { return b.setStopped(id, false) }

func (b *Bridge) setStopped(id string, stop bool) error {
	if !b.enter() {
		return ErrClosed
	}
	defer b.bg.Done()
	bm, err := b.Lookup(id)
	if err != nil {
		return err
	}
	return b.setStoppedBMC(bm, stop)
}

// setStoppedBMC stops or resumes bm, which a Remove may have dropped since
// it was looked up: a removed BMC is not saved again.
func (b *Bridge) setStoppedBMC(bm *BMC, stop bool) error {
	bm.mu.Lock()
	if bm.removed {
		bm.mu.Unlock()
		return fmt.Errorf("%s: %w", bm.spec.Address, ErrUnknownBMC)
	}
	prev := bm.stopped
	bm.stopped = stop
	if err := b.persist(bm); err != nil {
		bm.stopped = prev
		bm.mu.Unlock()
		return err
	}
	release := func() {}
	if stop {
		release = b.stopLocked(bm, Stopped)
	}
	bm.mu.Unlock()
	release()
	if !stop {
		b.bind(bm)
	}
	return nil
}

// Reload makes the configured BMCs those of specs: new ones start, ones no
// longer configured stop, changed ones restart; runtime BMCs stay.
func (b *Bridge) Reload(specs []Spec) {
	if !b.enter() {
		return
	}
	defer b.bg.Done()
	want := map[string]Spec{}
	for _, s := range specs {
		want[s.Key()] = s
	}
	b.mu.Lock()
	start, releases := b.reconfigureLocked(want)
	start = append(start, b.addConfiguredLocked(specs, want)...)
	b.mu.Unlock()
	releaseAll(releases)
	for _, bm := range start {
		b.bind(bm)
	}
}

// reconfigureLocked drops the configured BMCs that want no longer lists,
// stops those it lists changed (to be started again), and deletes from
// want the addresses it handled. b.mu must be held.
func (b *Bridge) reconfigureLocked(want map[string]Spec) (restart []*BMC, releases []func()) {
	for _, bm := range slices.Clone(b.bmcs) {
		if bm.runtime || bm.enrolled {
			continue
		}
		s, ok := want[bm.spec.Key()]
		delete(want, bm.spec.Key())
		if !ok {
			b.opts.Log.Info("bmc removed from the configuration", "bmc", bm.spec.Key(), "vm", bm.spec.VM)
			release, _ := b.drop(bm, false) // nothing to forget: cannot fail
			releases = append(releases, release)
			continue
		}
		bm.mu.Lock()
		// Where moves when lines are added above the BMC: no restart.
		bm.spec.Where = s.Where
		changed := s != bm.spec
		if changed {
			releases = append(releases, b.stopLocked(bm, Waiting))
			bm.spec = s
		}
		bm.mu.Unlock()
		if changed {
			b.opts.Log.Info("bmc changed in the configuration; restarting", "bmc", s.Key(), "vm", s.VM)
			restart = append(restart, bm)
		}
	}
	return restart, releases
}

// addConfiguredLocked adds a BMC for each spec whose address want still
// holds (none had it), in the configuration's order, unless a runtime BMC
// took its address. b.mu must be held.
func (b *Bridge) addConfiguredLocked(specs []Spec, want map[string]Spec) []*BMC {
	var added []*BMC
	for _, s := range specs {
		if _, isNew := want[s.Key()]; !isNew {
			continue
		}
		if b.byAddress(s.Key()) != nil {
			b.opts.Log.Error("configured bmc's address is taken by a runtime BMC; remove that first", "bmc", s.Key(), "config", s.Where)
			continue
		}
		bm := &BMC{spec: s}
		b.bmcs = append(b.bmcs, bm)
		added = append(added, bm)
	}
	return added
}
