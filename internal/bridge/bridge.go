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
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Spec is one BMC to run.
type Spec struct {
	// VM is a name, an inventory path or a BIOS UUID.
	VM       string `json:"vm"`
	Address  string `json:"address"` // host:port
	Username string `json:"username"`
	Password string `json:"password"`
	// Where names the spec's origin for error messages (a config line);
	// empty for BMCs added at runtime.
	Where string `json:"-"`
	// AllowDuplicate lets Add give a VM a second BMC: by default one VM
	// has one BMC, so that its name names one BMC.
	AllowDuplicate bool `json:"-"`
}

// Options tune every BMC of a bridge.
type Options struct {
	Log *slog.Logger
	// SoftOffTimeout: see vsphere.VMOptions.
	SoftOffTimeout time.Duration
	// MediaDatastore, MediaFolder and BootHold: see vsphere.VMOptions.
	MediaDatastore, MediaFolder string
	BootHold                    time.Duration
	// Media is the virtual-media policy: see vsphere.VMOptions.
	Media *vsphere.MediaService
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
}

// Status is where a BMC stands.
type Status string

// BMC states.
const (
	Running Status = "running"
	// Waiting: the VM does not exist (yet); the BMC starts when it appears.
	Waiting Status = "waiting"
	// Stopped by an operator.
	Stopped Status = "stopped"
	Failed  Status = "error"
)

// BMC is one virtual BMC.
type BMC struct {
	spec Spec
	// runtime: added through the management API, not the config file.
	runtime bool

	mu      sync.Mutex
	stopped bool
	// removed: dropped from the bridge; a late bind must not revive it.
	removed bool
	status  Status
	err     error
	name    string
	addr    net.Addr
	vm      *vsphere.VM
	m       machine.Machine // vm as the protocols see it
	ep      *ipmi.Endpoint
	served  chan struct{} // closed when the endpoint's Serve returned
	// warned and warnedAt are the last "not started" warning, repeated
	// only when the reason changes or after warnAgain.
	warned   string
	warnedAt time.Time
}

// warnAgain is how often an unchanged "bmc not started" warning is
// repeated: the bridge retries every few seconds, and a log line each
// time buries everything else.
const warnAgain = 10 * time.Minute

// Info is a snapshot of a BMC for display.
type Info struct {
	Spec    Spec
	Runtime bool
	Status  Status
	Err     error
	// Name is the VM's current name, once bound.
	Name string
	// Addr is the bound address while running.
	Addr net.Addr
	// Power is the VM's power state while bound.
	Power machine.PowerState
	// Sessions are the endpoint's sessions while running.
	Sessions []ipmi.SessionInfo
	// Pending counts the endpoint's sessions in setup while running.
	Pending int
	// Endpoint counts the endpoint's requests while running.
	Requests uint64
}

// Info returns the BMC's current state.
func (bm *BMC) Info() Info {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	i := Info{Spec: bm.spec, Runtime: bm.runtime, Status: bm.status, Err: bm.err, Name: bm.name, Addr: bm.addr}
	if bm.vm != nil {
		if id, err := bm.vm.Identity(context.Background()); err == nil {
			i.Name = id.Name
		}
		i.Power, _ = bm.vm.PowerState(context.Background())
	}
	if bm.ep != nil {
		i.Sessions = bm.ep.Sessions()
		i.Pending = bm.ep.Pending()
		i.Requests = bm.ep.Requests()
	}
	return i
}

// Machine returns the machine the BMC serves, or nil when it is not
// bound or stopped.
func (bm *BMC) Machine() machine.Machine {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if bm.vm == nil || bm.ep == nil {
		return nil
	}
	return bm.m
}

// Bridge is a set of BMCs over one inventory.
type Bridge struct {
	inv  *vsphere.Inventory
	opts Options
	// ctx ends with Close (or the caller's context); bg counts the
	// goroutines that bind BMCs in the background, which Close waits for
	// so that nothing binds after it.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	mu   sync.Mutex
	bmcs []*BMC
	kick chan struct{}
	gen  atomic.Uint64 // see Generation
	// closeVM closes a machine taken off its BMC ((*vsphere.VM).Close;
	// tests slow it down).
	closeVM func(*vsphere.VM)
}

// Errors of the management operations.
var (
	ErrUnknownBMC = errors.New("no such BMC")
	ErrInUse      = errors.New("address already used by another BMC")
	ErrFromConfig = errors.New("the BMC is defined in the configuration file; edit the file and reload")
	ErrDuplicate  = errors.New("one BMC per VM unless a second is asked for (bmc add --allow-duplicate)")
	ErrAmbiguous  = errors.New("more than one BMC serves this VM; name one by its address")
)

// Start starts a BMC for each spec, and those added at runtime by an
// earlier run, and keeps them bound until ctx ends. A VM that does not exist
// leaves its BMC waiting for it, and a port that cannot be bound fails that
// BMC only: the others serve.
func Start(ctx context.Context, inv *vsphere.Inventory, specs []Spec, opts Options) *Bridge {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &Bridge{inv: inv, opts: opts, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), closeVM: (*vsphere.VM).Close}
	saved := b.savedBMCs()
	for _, s := range specs {
		bm := &BMC{spec: s}
		if st, ok := saved[s.Address]; ok && !st.Runtime {
			bm.stopped = st.Stopped
		}
		b.bmcs = append(b.bmcs, bm)
	}
	for _, st := range saved {
		if st.Runtime && b.byAddress(st.Spec.Address) == nil {
			b.bmcs = append(b.bmcs, &BMC{spec: st.Spec, runtime: true, stopped: st.Stopped})
		}
	}
	for _, bm := range b.bmcs {
		b.bind(bm)
	}
	inv.OnChange(func(c vsphere.Change) {
		if c.Added || c.Removed {
			select {
			case b.kick <- struct{}{}:
			default:
			}
		}
	})
	b.bg.Go(b.reconcile)
	b.bg.Go(func() {
		// BMCs that could not bind while vCenter was away bind as soon
		// as the inventory first synchronises.
		select {
		case <-inv.Ready():
			select {
			case b.kick <- struct{}{}:
			default:
			}
		case <-ctx.Done():
		}
	})
	return b
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
		s.Spec.Address = k[len(bmcPrefix):]
		out[s.Spec.Address] = s
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
	key := bmcPrefix + bm.spec.Address
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
		if bm.Info().Status == Running {
			n++
		}
	}
	return n
}

// Find returns the BMC with the address (host:port) or the VM name or
// reference id, or nil when there is none or more than one.
func (b *Bridge) Find(id string) *BMC {
	bm, _ := b.Lookup(id)
	return bm
}

// Lookup returns the BMC with the address (host:port) or the VM name or
// reference id. A VM with two BMCs is ErrAmbiguous, naming their
// addresses, so that an operator never acts on one of them by chance.
func (b *Bridge) Lookup(id string) (*BMC, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lookup(id)
}

func (b *Bridge) lookup(id string) (*BMC, error) {
	if bm := b.byAddress(id); bm != nil {
		return bm, nil
	}
	found := b.byVM(id)
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s: %w", id, ErrUnknownBMC)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%s: %w: %s", id, ErrAmbiguous, addresses(found))
}

// byAddress finds a BMC by its configured address or, for port 0, the
// address it bound. b.mu must be held.
func (b *Bridge) byAddress(addr string) *BMC {
	for _, bm := range b.bmcs {
		if bm.spec.Address == addr {
			return bm
		}
	}
	for _, bm := range b.bmcs {
		if a := bm.Info().Addr; a != nil && a.String() == addr {
			return bm
		}
	}
	return nil
}

// byVM lists the BMCs configured with the VM reference id or serving a VM
// named id. b.mu must be held.
func (b *Bridge) byVM(id string) []*BMC {
	var out []*BMC
	for _, bm := range b.bmcs {
		if bm.spec.VM == id || bm.Info().Name == id {
			out = append(out, bm)
		}
	}
	return out
}

// addresses lists the IDs that name each of bms unambiguously.
func addresses(bms []*BMC) string {
	var ids []string
	for _, bm := range bms {
		i := bm.Info()
		id := i.Spec.Address
		if i.Addr != nil {
			id = i.Addr.String()
		}
		ids = append(ids, id)
	}
	return strings.Join(ids, ", ")
}

// sameVM returns the BMC configured for vm or serving ref (vm resolved,
// unless err), or nil. b.mu must be held.
func (b *Bridge) sameVM(vm string, ref types.ManagedObjectReference, err error) *BMC {
	for _, bm := range b.bmcs {
		if bm.spec.VM == vm {
			return bm
		}
		if err != nil {
			continue
		}
		bm.mu.Lock()
		same := bm.vm != nil && bm.vm.Reference() == ref
		bm.mu.Unlock()
		if same {
			return bm
		}
	}
	return nil
}

// Add starts a BMC at runtime and saves it, so that it is back after a
// restart. Its address must be free among the bridge's BMCs, and its VM
// without a BMC unless s.AllowDuplicate.
func (b *Bridge) Add(s Spec) (*BMC, error) {
	// Resolving may ask vCenter: not under b.mu.
	ref, rerr := b.inv.Resolve(b.ctx, s.VM)
	b.mu.Lock()
	if b.byAddress(s.Address) != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", s.Address, ErrInUse)
	}
	if other := b.sameVM(s.VM, ref, rerr); other != nil && !s.AllowDuplicate {
		b.mu.Unlock()
		return nil, fmt.Errorf("%s has a BMC at %s: %w", s.VM, addresses([]*BMC{other}), ErrDuplicate)
	}
	bm := &BMC{spec: s, runtime: true}
	if err := b.persist(bm); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	b.bmcs = append(b.bmcs, bm)
	b.mu.Unlock()
	b.bind(bm)
	return bm, nil
}

// Remove stops and forgets a BMC added at runtime.
func (b *Bridge) Remove(id string) error {
	b.mu.Lock()
	bm, err := b.lookup(id)
	switch {
	case err != nil:
		b.mu.Unlock()
		return err
	case !bm.runtime:
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", id, ErrFromConfig)
	}
	if st := b.opts.State; st != nil {
		if err := st.Delete(bmcPrefix + bm.spec.Address); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	closeVM := b.drop(bm)
	b.mu.Unlock()
	closeVM()
	return nil
}

// drop stops bm's endpoint and removes bm from the set. b.mu must be
// held; the returned function closes bm's machine and must be called
// once b.mu is released (see stopLocked).
func (b *Bridge) drop(bm *BMC) (closeVM func()) {
	bm.mu.Lock()
	closeVM = b.stopLocked(bm)
	bm.removed = true
	bm.mu.Unlock()
	for i, x := range b.bmcs {
		if x == bm {
			b.bmcs = append(b.bmcs[:i], b.bmcs[i+1:]...)
			break
		}
	}
	return closeVM
}

// Stop stops a BMC's endpoint and keeps it stopped across restarts.
func (b *Bridge) Stop(id string) error { return b.setStopped(id, true) }

// Resume starts a stopped BMC again.
func (b *Bridge) Resume(id string) error { return b.setStopped(id, false) }

func (b *Bridge) setStopped(id string, stop bool) error {
	bm, err := b.Lookup(id)
	if err != nil {
		return err
	}
	bm.mu.Lock()
	prev := bm.stopped
	bm.stopped = stop
	if err := b.persist(bm); err != nil {
		bm.stopped = prev
		bm.mu.Unlock()
		return err
	}
	closeVM := func() {}
	if stop {
		closeVM = b.stopLocked(bm)
		bm.status, bm.err = Stopped, nil
	}
	bm.mu.Unlock()
	closeVM()
	if !stop {
		b.bind(bm)
	}
	return nil
}

// Reload makes the configured BMCs those of specs: new ones start, ones no
// longer configured stop, changed ones restart; runtime BMCs stay.
func (b *Bridge) Reload(specs []Spec) {
	want := map[string]Spec{}
	for _, s := range specs {
		want[s.Address] = s
	}
	b.mu.Lock()
	var start []*BMC
	var closers []func()
	for _, bm := range append([]*BMC(nil), b.bmcs...) {
		if bm.runtime {
			continue
		}
		s, ok := want[bm.spec.Address]
		delete(want, bm.spec.Address)
		bm.mu.Lock()
		old := bm.spec
		// Where moves when lines are added above the BMC: no restart.
		bm.spec.Where = s.Where
		bm.mu.Unlock()
		old.Where = s.Where
		switch {
		case !ok:
			b.opts.Log.Info("bmc removed from the configuration", "bmc", old.Address, "vm", old.VM)
			closers = append(closers, b.drop(bm))
		case s != old:
			b.opts.Log.Info("bmc changed in the configuration; restarting", "bmc", s.Address, "vm", s.VM)
			bm.mu.Lock()
			closers = append(closers, b.stopLocked(bm))
			bm.spec = s
			bm.mu.Unlock()
			start = append(start, bm)
		}
	}
	for _, s := range specs {
		if _, new := want[s.Address]; !new {
			continue
		}
		if x := b.byAddress(s.Address); x != nil {
			b.opts.Log.Error("configured bmc's address is taken by a runtime BMC; remove that first", "bmc", s.Address, "config", s.Where)
			continue
		}
		bm := &BMC{spec: s}
		b.bmcs = append(b.bmcs, bm)
		start = append(start, bm)
	}
	b.mu.Unlock()
	closeAll(closers)
	for _, bm := range start {
		b.bind(bm)
	}
}

// closeAll runs the machine closers stopLocked returned, at once: each
// waits a moment for its VM's background work.
func closeAll(closers []func()) {
	var wg sync.WaitGroup
	for _, c := range closers {
		wg.Go(c)
	}
	wg.Wait()
}

// retryEvery paces retries of BMCs that could not start while vCenter was
// away, or whose VM appeared while the inventory was resynchronising.
const retryEvery = 10 * time.Second

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
			bm.mu.Lock()
			stale := bm.status == Waiting || (bm.status == Failed && errors.Is(bm.err, machine.ErrUnavailable))
			if bm.vm != nil {
				_, err := bm.vm.PowerState(b.ctx)
				stale = errors.Is(err, machine.ErrNotFound)
			}
			bm.mu.Unlock()
			if stale {
				b.bind(bm)
			}
		}
	}
}

// bind (re)binds bm to its VM and (re)starts its endpoint.
func (b *Bridge) bind(bm *BMC) {
	bm.mu.Lock()
	spec := bm.spec
	bm.mu.Unlock()
	log := b.opts.Log.With("bmc", spec.Address)
	ref, err := b.inv.Resolve(b.ctx, spec.VM)
	// The old machine, if replaced, is closed once bm.mu is released
	// (deferred before the unlock, so run after it).
	closeVM := func() {}
	defer func() { closeVM() }()
	bm.mu.Lock()
	defer bm.mu.Unlock()
	switch {
	case bm.removed || bm.spec != spec:
		return // removed or changed meanwhile: whoever did it binds
	case bm.stopped:
		bm.status = Stopped
		return
	}
	if err != nil {
		if bm.vm != nil {
			return // the old VM is gone and no new one yet: keep answering errors
		}
		bm.err = err
		bm.status = Failed
		if errors.Is(err, machine.ErrNotFound) {
			bm.status = Waiting
		}
		if errors.Is(err, machine.ErrUnavailable) && bm.ep == nil {
			b.serveUnboundLocked(bm, log)
		}
		level := slog.LevelDebug
		if now := time.Now(); err.Error() != bm.warned || now.Sub(bm.warnedAt) >= warnAgain {
			level, bm.warned, bm.warnedAt = slog.LevelWarn, err.Error(), now
		}
		log.Log(b.ctx, level, "bmc not started", "vm", bm.spec.VM, "config", bm.spec.Where, "status", bm.status, "err", err)
		return
	}
	if bm.vm != nil && bm.vm.Reference() == ref && bm.ep != nil {
		return
	}
	closeVM = b.stopLocked(bm)

	id, err := b.inv.Identity(ref)
	if err != nil {
		bm.status, bm.err = Failed, err
		return
	}
	opts := vsphere.VMOptions{
		Log: b.opts.Log, SoftOffTimeout: b.opts.SoftOffTimeout,
		MediaDatastore: b.opts.MediaDatastore, MediaFolder: b.opts.MediaFolder,
		BootHold: b.opts.BootHold, FollowEFIBit: b.opts.FollowEFIBit,
		Media: b.opts.Media,
	}
	if st := b.opts.State; st != nil {
		key := "vm/" + id.UUID
		if _, err := st.Get(key, &opts.Saved); err != nil {
			log.Error("saved VM state unreadable; starting without it", "vm", id.Name, "err", err)
		}
		opts.Persist = func(r vsphere.Record) error { return st.Put(key, r) }
	}
	vm := b.inv.NewVM(ref, opts)
	var m machine.Machine = vm
	if b.opts.Wrap != nil {
		m = b.opts.Wrap(vm)
	}
	cfg := b.opts.Endpoint
	cfg.Address, cfg.Username, cfg.Password = bm.spec.Address, bm.spec.Username, bm.spec.Password
	cfg.Log = b.opts.Log.With("vm", id.Name)
	ep, err := ipmi.Listen(b.ctx, m, cfg)
	if err != nil {
		vm.Close()
		bm.status, bm.err, bm.name = Failed, err, id.Name
		log.Error("bmc not started", "vm", id.Name, "config", bm.spec.Where, "err", err)
		return
	}
	bm.vm, bm.m, bm.ep, bm.name, bm.addr = vm, m, ep, id.Name, ep.Addr()
	bm.status, bm.err = Running, nil
	b.gen.Add(1)
	bm.served = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		if err := ep.Serve(b.ctx); err != nil {
			log.Error("bmc stopped", "vm", id.Name, "err", err)
		}
	}(bm.served)
	log.Info("bmc serving", "vm", id.Name, "uuid", id.UUID, "address", bm.addr.String())
}

// serveUnboundLocked serves bm's address while vCenter is unavailable, so
// that clients get node-busy (C0h, which Ironic retries) with the reason
// rather than silence; binding replaces it once the VM can be looked up.
// bm.mu must be held.
func (b *Bridge) serveUnboundLocked(bm *BMC, log *slog.Logger) {
	var m machine.Machine = b.inv.Unbound(bm.spec.VM)
	if b.opts.Wrap != nil {
		m = b.opts.Wrap(m)
	}
	cfg := b.opts.Endpoint
	cfg.Address, cfg.Username, cfg.Password = bm.spec.Address, bm.spec.Username, bm.spec.Password
	cfg.Log = b.opts.Log.With("vm", bm.spec.VM)
	ep, err := ipmi.Listen(b.ctx, m, cfg)
	if err != nil {
		log.Error("bmc address not served while vCenter is unavailable", "vm", bm.spec.VM, "config", bm.spec.Where, "err", err)
		return
	}
	bm.ep, bm.addr = ep, ep.Addr()
	bm.served = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		if err := ep.Serve(b.ctx); err != nil {
			log.Error("bmc stopped", "vm", bm.spec.VM, "err", err)
		}
	}(bm.served)
}

// Generation changes whenever a BMC starts or stops serving, so that the
// Redfish service re-reads the served systems only then.
func (b *Bridge) Generation() uint64 { return b.gen.Load() }

// stopLocked stops bm's endpoint (its socket is free when it returns) and
// detaches its machine, which the returned function closes. bm.mu must be
// held, and the function called once bm.mu (and b.mu) are released:
// closing a machine waits a moment for its vCenter actions, and bm.Info,
// which `bmc list`, the reconciler and Redfish need, takes bm.mu.
func (b *Bridge) stopLocked(bm *BMC) (closeVM func()) {
	b.gen.Add(1)
	if bm.ep != nil {
		_ = bm.ep.Close()
		<-bm.served
		bm.ep = nil
		bm.addr = nil
	}
	vm := bm.vm
	bm.vm, bm.m = nil, nil
	if vm == nil {
		return func() {}
	}
	closer := b.closeVM
	return func() { closer(vm) }
}

// Close stops every BMC. The background binding ends first, so that no
// BMC is bound again behind Close.
func (b *Bridge) Close() error {
	b.cancel()
	b.bg.Wait()
	var closers []func()
	for _, bm := range b.BMCs() {
		bm.mu.Lock()
		closers = append(closers, b.stopLocked(bm))
		bm.mu.Unlock()
	}
	closeAll(closers)
	return nil
}
