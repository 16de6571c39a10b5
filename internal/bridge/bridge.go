// Package bridge owns the running set of virtual BMCs: it binds each BMC to
// its VM through the inventory, starts and stops its IPMI endpoint, keeps
// its state (boot overrides, media, BMCs added at runtime, stopped BMCs) in
// the state file, rebinds it when its VM is re-created, and reconciles the
// set with a reloaded configuration.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Spec is one BMC to run.
type Spec struct {
	// VM is a name, an inventory path or a BIOS UUID.
	VM string `json:"vm"`
	// VCenter names the inventory holding VM when the bridge has several
	// ("" for the only one).
	VCenter  string `json:"vcenter,omitempty"`
	Address  string `json:"address"` // host:port
	Username string `json:"username"`
	Password string `json:"password"`
	// Where names the spec's origin for error messages (a config line);
	// empty for BMCs added at runtime.
	Where string `json:"-"`
	// AllowDuplicate lets Add give a VM a second BMC: by default one VM
	// has one BMC, so that its name names one BMC.
	AllowDuplicate bool `json:"-"`
	// Console: the BMC offers its VM's serial console (Options.Console),
	// and the VM's serial port is pointed at Options.ConsoleURI.
	Console bool `json:"console,omitempty"`
	// SOLPort is the port Serial-over-LAN clients reach the BMC at, when
	// not its own (NAT, a container's port mapping); 0: its own.
	SOLPort int `json:"solPort,omitempty"`
	// NoIPMI makes a Redfish-only BMC: no endpoint, and Address is "".
	NoIPMI bool `json:"noIpmi,omitempty"`
	// NoRedfish makes an IPMI-only BMC: its VM is no Redfish system.
	NoRedfish bool `json:"noRedfish,omitempty"`
}

// redfishOnlyKey prefixes a Redfish-only BMC's key.
const redfishOnlyKey = "redfish:"

// Key identifies the BMC in the set and in the state file: its address, or
// for a Redfish-only BMC, which has none, "redfish:" and its VM (a VM has
// at most one Redfish-only BMC: it would be one Redfish system twice).
func (s Spec) Key() string {
	switch {
	case s.NoIPMI && s.VCenter != "":
		return redfishOnlyKey + s.VCenter + "/" + s.VM
	case s.NoIPMI:
		return redfishOnlyKey + s.VM
	}
	return s.Address
}

// Options tune every BMC of a bridge.
type Options struct {
	Log *slog.Logger
	// SoftOffTimeout: see vsphere.VMOptions.
	SoftOffTimeout time.Duration
	// BootHold: see vsphere.VMOptions.
	BootHold time.Duration
	// Media is each vCenter's virtual-media service, by Spec.VCenter: see
	// vsphere.VMOptions.
	Media map[string]*vsphere.MediaService
	// FollowEFIBit: see vsphere.VMOptions.
	FollowEFIBit vsphere.FirmwarePolicy
	// State keeps boot overrides, media and runtime BMCs across restarts;
	// nil keeps them in memory.
	State *state.Store
	// Endpoint sets the IPMI endpoint options every BMC shares (sessions,
	// metrics); Address, Username and Password come from the Spec.
	Endpoint ipmi.Config
	// Wrap, when set, decorates every machine the protocols see (metrics).
	Wrap func(machine.Machine) machine.Machine
	// Console, when set, is the serial console of the VM with an
	// identity (the console concentrator's, by BIOS UUID): the machines
	// of BMCs whose Spec.Console is set return it from SerialConsole,
	// and their VMs' serial ports are pointed at ConsoleURI, the
	// concentrator's vSPC URI. Nil: no BMC offers a console.
	Console    func(machine.Identity) machine.SerialConsole
	ConsoleURI string
}

// Bridge is a set of BMCs over the inventories of one or more vCenters.
//
// Lock order: mu before a BMC's mu. Neither is held while an endpoint
// starts or a machine closes, which take a moment: every reader (`bmc
// list`, Redfish, the reconciler) would wait.
type Bridge struct {
	// invs are the inventories by vCenter name (Spec.VCenter); with one
	// vCenter, under "".
	invs map[string]inventory
	opts Options
	// ctx ends with Close (or the caller's context); bg counts the
	// goroutines and operations that may bind a BMC (the reconciler, the
	// first-synchronisation wait, Add, Resume, Reload, every bind), which
	// Close waits for so that nothing binds after it.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	mu sync.Mutex
	// closed: Close began; no bind starts any more.
	closed bool
	bmcs   []*BMC
	kick   chan struct{}
	gen    atomic.Uint64 // see Generation
}

// Errors of the management operations.
var (
	ErrUnknownBMC = errors.New("no such BMC")
	ErrInUse      = errors.New("address already used by another BMC")
	ErrFromConfig = errors.New("the BMC is defined in the configuration file; edit the file and reload")
	ErrDuplicate  = errors.New("one BMC per VM unless a second is asked for (bmc add --allow-duplicate)")
	ErrAmbiguous  = errors.New("more than one BMC serves this VM; name one by its address")
	ErrEnrolled   = errors.New("the BMC was given by an enrolment rule; it leaves when its VM stops matching the rule (see enroll in the configuration)")
	// ErrUnknownVCenter: a Spec names a vCenter the bridge does not have.
	ErrUnknownVCenter = errors.New("no such vCenter")
	// ErrClosed: the bridge was closed, or its context ended.
	ErrClosed = errors.New("the bridge is closed")
)

// Start starts a BMC for each spec, and those added at runtime by an
// earlier run, and keeps them bound until ctx ends. invs are the vCenters'
// inventories by name (Spec.VCenter); one vCenter's is under "". A VM that
// does not exist leaves its BMC waiting for it, and a port that cannot be
// bound fails that BMC only: the others serve. A vCenter that is away
// holds up its own BMCs only.
func Start(ctx context.Context, invs map[string]*vsphere.Inventory, specs []Spec, opts Options) *Bridge {
	adapted := map[string]inventory{}
	for name, inv := range invs {
		adapted[name] = vsphereInventory{inv}
	}
	return start(ctx, adapted, specs, opts)
}

func start(ctx context.Context, invs map[string]inventory, specs []Spec, opts Options) *Bridge {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &Bridge{invs: invs, opts: opts, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
	b.bmcs = b.initialBMCs(specs)
	for _, bm := range b.bmcs {
		b.bind(bm)
	}
	for _, inv := range invs {
		inv.OnChange(func(c vsphere.Change) {
			if c.Added || c.Removed {
				b.reconcileSoon()
			}
		})
		b.bg.Go(func() {
			// BMCs that could not bind while vCenter was away bind as
			// soon as its inventory first synchronises.
			select {
			case <-inv.Ready():
				b.reconcileSoon()
			case <-ctx.Done():
			}
		})
	}
	b.bg.Go(b.reconcile)
	return b
}

// inventory is the inventory of spec's vCenter.
func (b *Bridge) inventory(spec Spec) (inventory, error) {
	if inv, ok := b.invs[spec.VCenter]; ok {
		return inv, nil
	}
	return nil, fmt.Errorf("%w: %q (BMC %s)", ErrUnknownVCenter, spec.VCenter, spec.Key())
}

// initialBMCs are the configured BMCs, stopped if an operator stopped them
// in an earlier run, then the BMCs added at runtime by an earlier run.
func (b *Bridge) initialBMCs(specs []Spec) []*BMC {
	saved := b.savedBMCs()
	var out []*BMC
	taken := map[string]bool{}
	for _, s := range specs {
		bm := &BMC{spec: s}
		if st, ok := saved[s.Key()]; ok && !st.Runtime && st.Stopped {
			bm.stopped, bm.status = true, Stopped
		}
		out = append(out, bm)
		taken[s.Key()] = true
	}
	for _, key := range slices.Sorted(maps.Keys(saved)) {
		if st := saved[key]; st.Runtime && !taken[key] {
			bm := &BMC{spec: st.Spec, runtime: true, stopped: st.Stopped}
			if st.Stopped {
				bm.status = Stopped
			}
			out = append(out, bm)
		}
	}
	return out
}

// saved is what the state file keeps of a BMC.
type saved struct {
	Spec    Spec `json:"spec,omitzero"`
	Runtime bool `json:"runtime,omitempty"`
	Stopped bool `json:"stopped,omitempty"`
}

const bmcPrefix = "bmc/"

func (b *Bridge) savedBMCs() map[string]saved {
	out := map[string]saved{}
	st := b.opts.State
	if st == nil {
		return out
	}
	for _, k := range st.Keys(bmcPrefix) {
		var s saved
		if _, err := st.Get(k, &s); err != nil {
			b.opts.Log.Error("saved BMC unreadable; ignored", "key", k, "err", err)
			continue
		}
		key := k[len(bmcPrefix):]
		if !strings.HasPrefix(key, redfishOnlyKey) {
			s.Spec.Address = key
		}
		out[key] = s
	}
	return out
}

// persist saves what must outlive a restart of bm: a runtime BMC's spec
// (with its password, which is why the state file is private) and whether
// an operator stopped it.
func (b *Bridge) persist(bm *BMC) error {
	st := b.opts.State
	if st == nil {
		return nil
	}
	key := bmcPrefix + bm.spec.Key()
	if !bm.runtime && !bm.stopped {
		return st.Delete(key)
	}
	s := saved{Runtime: bm.runtime, Stopped: bm.stopped}
	if bm.runtime {
		s.Spec = bm.spec
	}
	return st.Put(key, s)
}

// BMCs returns the bridge's BMCs in the order they were added.
func (b *Bridge) BMCs() []*BMC {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*BMC(nil), b.bmcs...)
}

// Running counts the BMCs that serve.
func (b *Bridge) Running() int {
	n := 0
	for _, bm := range b.BMCs() {
		if bm.currentStatus() == Running {
			n++
		}
	}
	return n
}

// Generation changes whenever a BMC starts or stops serving, so that the
// Redfish service re-reads the served systems only then.
func (b *Bridge) Generation() uint64 { return b.gen.Load() }

// retryEvery paces retries of BMCs that could not start while vCenter was
// away, or whose VM appeared while the inventory was resynchronising.
const retryEvery = 10 * time.Second

// reconcileSoon wakes the reconciler, unless it is already woken.
func (b *Bridge) reconcileSoon() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// reconcile rebinds BMCs when VMs appear or leave: a waiting BMC starts
// when its VM is created, and a BMC whose VM was deleted follows a VM
// re-created under the configured name (its BIOS UUID, and so the BMC's
// GUID, are new: the endpoint restarts). A BMC that failed because vCenter
// was unreachable is retried.
func (b *Bridge) reconcile() {
	tick := time.NewTicker(retryEvery)
	defer tick.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.kick:
		case <-tick.C:
		}
		for _, bm := range b.BMCs() {
			if b.stale(bm) {
				b.bind(bm)
			}
		}
	}
}

// stale reports whether bm should be bound again: it waits for its VM,
// vCenter was away when it last tried, or its VM was deleted.
func (b *Bridge) stale(bm *BMC) bool {
	bm.mu.Lock()
	status, err, vm := bm.status, bm.err, bm.vm
	bm.mu.Unlock()
	if vm != nil {
		_, err := vm.PowerState(b.ctx)
		return errors.Is(err, machine.ErrNotFound)
	}
	return status == Waiting || (status == Failed && errors.Is(err, machine.ErrUnavailable))
}

// Close stops every BMC. The background binding ends first, so that no
// BMC is bound again behind Close; every goroutine the bridge started has
// ended when it returns.
func (b *Bridge) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.bg.Wait()
	var releases []func()
	for _, bm := range b.BMCs() {
		bm.mu.Lock()
		releases = append(releases, b.stopLocked(bm, Stopped))
		bm.mu.Unlock()
	}
	releaseAll(releases)
	return nil
}

// releaseAll runs the releases stopLocked returned, at once: each may wait
// a moment for its VM's background work.
func releaseAll(releases []func()) {
	var wg sync.WaitGroup
	for _, r := range releases {
		wg.Go(r)
	}
	wg.Wait()
}
