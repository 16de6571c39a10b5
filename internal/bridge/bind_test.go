package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// errAway is vCenter unreachable, as the inventory reports it.
var errAway = fmt.Errorf("vcenter: connection refused: %w", machine.ErrUnavailable)

// openState opens a state file in the test's directory.
func openState(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "state", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Start gives each BMC the status its VM and address allow, and one that
// cannot start leaves the others serving.
func TestStartGivesEachBMCItsStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		down  error
		saved func(*state.Store) error
		check func(t *testing.T, first, second *BMC)
	}{
		{"every VM exists: all serve", nil, nil, func(t *testing.T, first, second *BMC) {
			running(t, first)
			running(t, second)
		}},
		{"vCenter away: node-busy served, reason kept", errAway, nil, func(t *testing.T, first, _ *BMC) {
			i := first.Info()
			if i.Status != Failed || !errors.Is(i.Err, machine.ErrUnavailable) || i.Addr == nil {
				t.Fatalf("got %s at %v, want error (unavailable) with its address served", describe(first), i.Addr)
			}
			if !pings(i.Addr) || first.Machine() != nil {
				t.Fatal("the address must answer (node-busy) with no machine bound")
			}
		}},
		{"stopped by an operator in an earlier run: stays stopped", nil, func(st *state.Store) error {
			return st.Put(bmcPrefix+spec("vm0", 2).Address, saved{Stopped: true})
		}, func(t *testing.T, first, second *BMC) {
			if i := first.Info(); i.Status != Stopped || i.Addr != nil {
				t.Fatalf("got %s at %v, want stopped", describe(first), i.Addr)
			}
			running(t, second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := newInventory("vm0", "vm1")
			inv.setDown(tc.down)
			st := openState(t)
			if tc.saved != nil {
				if err := tc.saved(st); err != nil {
					t.Fatal(err)
				}
			}
			b := startFake(t, inv, []Spec{spec("vm0", 2), spec("vm1", 3)}, Options{State: st})
			bms := b.BMCs()
			tc.check(t, bms[0], bms[1])
		})
	}
}

// A VM that does not exist leaves its BMC waiting, with no address
// served; the others serve.
func TestStartLeavesAMissingVMsBMCWaiting(t *testing.T) {
	inv := newInventory("vm0")
	b := startFake(t, inv, []Spec{spec("ghost", 2), spec("vm0", 3)}, Options{})
	ghost := b.BMCs()[0]
	if i := ghost.Info(); i.Status != Waiting || !errors.Is(i.Err, machine.ErrNotFound) || i.Addr != nil {
		t.Fatalf("got %s at %v, want waiting (not found)", describe(ghost), i.Addr)
	}
	running(t, b.BMCs()[1])
	if n := b.Running(); n != 1 {
		t.Fatalf("Running() = %d, want 1", n)
	}
}

// An address another process holds fails its BMC with an error naming the
// address, and the others serve; Add gives the same for a runtime BMC.
func TestATakenPortFailsOneBMCOnly(t *testing.T) {
	inv := newInventory("vm0", "vm1", "vm2")
	busy := taken(t)
	first := spec("vm0", 2)
	first.Address = busy
	b := startFake(t, inv, []Spec{first, spec("vm1", 3)}, Options{})
	added := spec("vm2", 4)
	added.Address = taken(t)
	bm, err := b.Add(added)
	if err != nil {
		t.Fatal(err)
	}
	for _, bm := range []*BMC{b.BMCs()[0], bm} {
		i := bm.Info()
		if i.Status != Failed || !errors.Is(i.Err, syscall.EADDRINUSE) || !contains(i.Err, i.Spec.Address) {
			t.Errorf("%s: got %s, want an error naming the address in use", i.Spec.Address, describe(bm))
		}
		if i.Addr != nil || bm.Machine() != nil {
			t.Errorf("%s: a failed BMC must hold neither address nor machine", i.Spec.Address)
		}
	}
	running(t, b.BMCs()[1])
	if n := inv.open.Load(); n != 1 {
		t.Fatalf("%d machines open, want 1: a failed start must close its machine", n)
	}
}

// The reconciler rebinds BMCs when the inventory changes: a waiting BMC
// starts when its VM is created, a BMC follows its VM deleted and created
// again under its name (a new VM: new UUID, new endpoint), and BMCs that
// could not bind while vCenter was away bind once the inventory first
// synchronises.
func TestReconcileRebindsWhenTheInventoryChanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(inv *fakeInventory)
		change func(inv *fakeInventory)
	}{
		{"VM created", func(inv *fakeInventory) { inv.destroy("vm0") }, func(inv *fakeInventory) { inv.create("vm0") }},
		{"VM re-created", nil, func(inv *fakeInventory) {
			inv.destroy("vm0")
			inv.create("vm0")
		}},
		{"first synchronisation", func(inv *fakeInventory) {
			inv.ready = make(chan struct{})
			inv.setDown(errAway)
		}, func(inv *fakeInventory) {
			inv.setDown(nil)
			close(inv.ready)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := newInventory("vm0")
			if tc.before != nil {
				tc.before(inv)
			}
			b := startFake(t, inv, []Spec{spec("vm0", 2)}, Options{})
			bm := b.BMCs()[0]
			var oldUUID string
			if m := bm.Machine(); m != nil {
				id, _ := m.Identity(context.Background())
				oldUUID = id.UUID
			}
			tc.change(inv)
			clienttest.Eventually(t, "the BMC serves the VM now in the inventory", func() bool {
				u := servedUUID(bm)
				return u != "" && u != oldUUID && bm.currentStatus() == Running
			})
			running(t, bm)
		})
	}
}

// The machine bound to a VM gets the options and the state saved for that
// VM, and saves its state under the VM's UUID.
func TestBindPassesTheVMsSavedState(t *testing.T) {
	inv := newInventory("vm0")
	st := openState(t)
	uuid := fmt.Sprintf("42000000-0000-4000-8000-%012d", 1)
	if err := st.Put("vm/"+uuid, vsphere.Record{OneTime: true}); err != nil {
		t.Fatal(err)
	}
	startFake(t, inv, []Spec{spec("vm0", 2)}, Options{State: st, BootHold: time.Minute, SoftOffTimeout: time.Second})
	inv.mu.Lock()
	opts := inv.opts["vm0"]
	inv.mu.Unlock()
	if !opts.Saved.OneTime || opts.BootHold != time.Minute || opts.SoftOffTimeout != time.Second {
		t.Fatalf("options %+v: want the saved record and the bridge's options", opts)
	}
	if err := opts.Persist(vsphere.Record{PendingFirmware: "efi"}); err != nil {
		t.Fatal(err)
	}
	var r vsphere.Record
	if ok, err := st.Get("vm/"+uuid, &r); !ok || err != nil || r.PendingFirmware != "efi" {
		t.Fatalf("saved %+v (%v, %v), want the persisted record under the VM's UUID", r, ok, err)
	}
}

// blockedStart is a machine whose first Identity, which the endpoint reads
// as it starts, waits for release.
type blockedStart struct {
	machine.Machine
	once             sync.Once
	started, release chan struct{}
}

func (s *blockedStart) Identity(ctx context.Context) (machine.Identity, error) {
	s.once.Do(func() {
		close(s.started)
		<-s.release
	})
	return s.Machine.Identity(ctx)
}

// No lock is held while an endpoint starts: reads of the bridge and of the
// BMC being bound answer meanwhile.
func TestReadsAnswerWhileAnEndpointStarts(t *testing.T) {
	inv := newInventory("vm0", "vm1")
	slow := &blockedStart{started: make(chan struct{}), release: make(chan struct{})}
	wrap := func(m machine.Machine) machine.Machine {
		if id, _ := m.Identity(context.Background()); id.Name == "vm1" {
			slow.Machine = m
			return slow
		}
		return m
	}
	b := startFake(t, inv, []Spec{spec("vm0", 2)}, Options{Wrap: wrap})
	added := make(chan *BMC, 1)
	go func() {
		bm, err := b.Add(spec("vm1", 3))
		if err != nil {
			t.Error(err)
		}
		added <- bm
	}()
	<-slow.started
	read := make(chan struct{})
	go func() {
		defer close(read)
		for _, bm := range b.BMCs() {
			_ = bm.Info()
			_ = bm.Machine()
		}
		_ = b.Running()
		_, _ = b.Lookup("vm1")
		_ = b.Find(spec("vm1", 3).Address)
	}()
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("reads blocked while an endpoint starts")
	}
	close(slow.release)
	running(t, <-added)
}

// Many operators at once: adds, stops, resumes, removals, reloads, reads and
// reconciliations race (run with -race), and the bridge ends as the last of
// them says.
func TestConcurrentOperations(t *testing.T) {
	const workers, rounds = 4, 10
	names := []string{"cfg0", "cfg1"}
	for w := range workers {
		names = append(names, fmt.Sprintf("rt%d", w))
	}
	inv := newInventory(names...)
	config := []Spec{spec("cfg0", 2), spec("cfg1", 3)}
	b := startFake(t, inv, config, Options{State: openState(t)})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { churn(t, b, spec(fmt.Sprintf("rt%d", w), 10+w), rounds) })
	}
	changed := []Spec{spec("cfg0", 2), spec("cfg1", 3), spec("cfg0", 4)}
	changed[1].Password = "changed"
	wg.Go(func() {
		for i := range rounds {
			b.Reload([][]Spec{changed, config}[i%2])
			inv.emit(vsphere.Change{Added: true})
		}
	})
	stop := readWhile(func() {
		for _, bm := range b.BMCs() {
			_ = bm.Info()
		}
		_, _ = b.Lookup("cfg0")
		_ = b.Running()
		_ = b.Generation()
	})
	wg.Wait()
	stop()
	bms := b.BMCs()
	if len(bms) != len(config) {
		t.Fatalf("%d BMCs, want the %d configured: runtime ones were all removed", len(bms), len(config))
	}
	for _, bm := range bms {
		running(t, bm)
	}
}

// readWhile calls read over and over in a goroutine until the returned
// stop is called, which waits for it to return. It exists so that the
// race tests read a bridge while it changes in one way: without a pause,
// for the race detector to see every read against the changes.
func readWhile(read func()) (stop func()) {
	done := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			read()
		}
	})
	return func() {
		close(done)
		readers.Wait()
	}
}

// churn adds, stops, resumes and removes a runtime BMC for s, rounds times.
func churn(t *testing.T, b *Bridge, s Spec, rounds int) {
	for range rounds {
		for _, op := range []func() error{
			func() error { _, err := b.Add(s); return err },
			func() error { return b.Stop(s.Address) },
			func() error { return b.Resume(s.Address) },
			func() error { return b.Remove(s.Address) },
		} {
			if err := op(); err != nil {
				t.Error(err)
				return
			}
		}
	}
}

// A BMC whose VM was deleted keeps its endpoint and machine, which answers
// that the VM is gone, until a VM is created under its name.
func TestADeletedVMsBMCKeepsAnswering(t *testing.T) {
	inv := newInventory("vm0")
	b := startFake(t, inv, []Spec{spec("vm0", 2)}, Options{})
	bm := b.BMCs()[0]
	addr := running(t, bm)
	inv.destroy("vm0")
	b.bind(bm) // what the reconciler does when the VM leaves
	if got := running(t, bm); got.String() != addr.String() {
		t.Fatalf("endpoint moved from %s to %s", addr, got)
	}
	if _, err := bm.Machine().PowerState(t.Context()); !errors.Is(err, machine.ErrNotFound) {
		t.Fatalf("the machine answers %v, want not found", err)
	}
}

// Rebinding to a re-created VM serves the new VM at once: closing the old
// machine, which may wait for vCenter actions it answered, comes after.
func TestARebindServesBeforeTheOldMachineCloses(t *testing.T) {
	inv := newInventory("vm0")
	b := startFake(t, inv, []Spec{spec("vm0", 2)}, Options{})
	bm := b.BMCs()[0]
	release := make(chan struct{})
	hook := func() { <-release }
	inv.closing.Store(&hook)
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before Close, should the test fail
	inv.destroy("vm0")
	inv.create("vm0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.bind(bm)
	}()
	clienttest.Eventually(t, "the new VM served while the old machine closes", func() bool {
		return servedUUID(bm) == "42000000-0000-4000-8000-000000000002"
	})
	running(t, bm)
	unblock()
	<-done
}

// TestEndpointConfig: what a spec says of its endpoint reaches it, the
// SOL port a NAT'd BMC advertises included.
func TestEndpointConfig(t *testing.T) {
	b := &Bridge{opts: Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	cfg := b.endpointConfig(Spec{Address: "127.0.0.1:6230", Username: "u", Password: "p", SOLPort: 16230}, "vm")
	if cfg.Address != "127.0.0.1:6230" || cfg.Username != "u" || cfg.Password != "p" || cfg.SOLPort != 16230 {
		t.Fatalf("endpoint config %+v", cfg)
	}
}

// A Redfish-only BMC is bound and running with its machine, opens no
// endpoint, and is known by its key ("redfish:" and its VM), in the set
// and in the state file; it stays stopped across a restart like any.
func TestRedfishOnlyBMC(t *testing.T) {
	inv := newInventory("vm0", "vm1")
	st, err := state.Open(filepath.Join(t.TempDir(), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	only := Spec{VM: "vm1", Username: "admin", Password: "password", NoIPMI: true}
	b := startFake(t, inv, []Spec{spec("vm0", 2), only}, Options{State: st})
	bm := b.BMCs()[1]
	running(t, b.BMCs()[0])
	if i := bm.Info(); i.Status != Running || i.Addr != nil || bm.Machine() == nil || i.Spec.Key() != "redfish:vm1" {
		t.Fatalf("Redfish-only BMC: address %v, machine %v, key %q", i.Addr, bm.Machine(), i.Spec.Key())
	}
	if got := b.Find("redfish:vm1"); got != bm {
		t.Fatalf("Find by key = %v", got)
	}
	if err := b.Stop("redfish:vm1"); err != nil {
		t.Fatal(err)
	}
	if bm.Machine() != nil {
		t.Fatal("a stopped Redfish-only BMC still serves its machine")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startFake(t, inv, []Spec{only}, Options{State: st})
	if s := b2.BMCs()[0].Info().Status; s != Stopped {
		t.Fatalf("after a restart: %s, want stopped", s)
	}
}
