package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// watched are the VM properties the inventory keeps. vSphere publishes
// reconfigurations only as a new config.changeVersion (not under
// config.bootOptions or config.firmware), so a changeVersion update makes the
// inventory re-read configProps.
var watched = []string{
	"name", "config.uuid", "config.changeVersion", "config.firmware", "config.bootOptions",
	"config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device",
	"runtime.powerState", "runtime.bootTime", "runtime.maxCpuUsage",
	"guest.toolsRunningStatus",
	"summary.quickStats.overallCpuUsage", "summary.quickStats.guestMemoryUsage",
}

var configProps = []string{
	"config.changeVersion", "config.firmware", "config.bootOptions",
	"config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device",
}

// Change is one thing the inventory saw happen to a VM.
type Change struct {
	Ref types.ManagedObjectReference
	// Added and Removed: the VM appeared in or left the inventory.
	Added, Removed bool
	// From and To differ when the power state changed.
	From, To machine.PowerState
	// Booted: the VM started a boot (a power-on, or a new runtime.bootTime
	// after a reset).
	Booted bool
	// At is when the inventory learnt of the change.
	At time.Time
}

// Inventory is the bridge's picture of every VM in vCenter, kept current by
// one property collector long-polling WaitForUpdatesEx over a container
// view. Reads are served from it without any vCenter request. When vCenter
// cannot be reached it reports itself unavailable, rather than serving stale
// state as truth, and resynchronises when vCenter is back.
type Inventory struct {
	c   *Client
	log *slog.Logger

	// MaxWait bounds each long poll, so that a silent network partition is
	// noticed; Backoff and MaxBackoff pace reconnection attempts.
	MaxWait, Backoff, MaxBackoff time.Duration

	mu  sync.RWMutex
	vms map[types.ManagedObjectReference]*mo.VirtualMachine
	// names counts the VMs that appeared, left or were renamed: what
	// names a Redfish system changes only then (see Names).
	names atomic.Uint64
	// everSynced: a full synchronisation happened once, so VMs new in a
	// resynchronisation were created while vCenter was away.
	everSynced bool
	down       error
	readyCh    chan struct{}
	subs       []func(Change)
	// perVM are the watchers of one VM each (the machines bound to them).
	perVM  map[types.ManagedObjectReference]map[int]func(Change)
	nextID int
	// confirmed holds power states the bridge's own tasks reached that
	// the watcher has not delivered yet: reads show them, so the next
	// read after a confirmed action is true however long the watcher
	// lags; the VM's next update replaces them.
	confirmed map[types.ManagedObjectReference]confirmedPower
	// stopWatch ends the running watch, when the heartbeat finds vCenter
	// hung and its long poll would otherwise wait for TCP to notice.
	stopWatch context.CancelFunc
}

// Hang detection: a heartbeat asks vCenter the time every heartbeatEvery;
// no answer (to it or to the watch) within hangTimeout marks vCenter hung,
// so a hang is known within heartbeatEvery+hangTimeout.
const (
	heartbeatEvery = time.Second
	hangTimeout    = 2 * time.Second
)

// NewInventory returns an inventory over c; Run keeps it current.
func NewInventory(c *Client, log *slog.Logger) *Inventory {
	if log == nil {
		log = slog.Default()
	}
	return &Inventory{
		c: c, log: log,
		MaxWait: 10 * time.Second, Backoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second,
		vms:       map[types.ManagedObjectReference]*mo.VirtualMachine{},
		down:      errors.New("not synchronised with vCenter yet"),
		readyCh:   make(chan struct{}),
		perVM:     map[types.ManagedObjectReference]map[int]func(Change){},
		confirmed: map[types.ManagedObjectReference]confirmedPower{},
	}
}

// confirmedPower is a power state a task of the bridge's reached.
type confirmedPower struct {
	state types.VirtualMachinePowerState
	at    time.Time
}

// confirmTTL bounds how long a confirmed power state overrides the
// watcher's: updates are delivered in order, so one showing another state
// may be older than the task; after this long the watcher is trusted.
const confirmTTL = 5 * time.Second

// confirm records a power state vCenter confirmed for ref (a task of the
// bridge's succeeded), until the watcher delivers it.
func (inv *Inventory) confirm(ref types.ManagedObjectReference, s types.VirtualMachinePowerState) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if vm, ok := inv.vms[ref]; ok && vm.Runtime.PowerState != s {
		inv.confirmed[ref] = confirmedPower{s, time.Now()}
	}
}

// Watch registers fn for the changes of one VM, like OnChange; the returned
// function unregisters it.
func (inv *Inventory) Watch(ref types.ManagedObjectReference, fn func(Change)) (cancel func()) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.nextID++
	id := inv.nextID
	if inv.perVM[ref] == nil {
		inv.perVM[ref] = map[int]func(Change){}
	}
	inv.perVM[ref][id] = fn
	return func() {
		inv.mu.Lock()
		defer inv.mu.Unlock()
		delete(inv.perVM[ref], id)
		if len(inv.perVM[ref]) == 0 {
			delete(inv.perVM, ref)
		}
	}
}

// OnChange registers fn to be called, on the watcher's goroutine and so
// without blocking, for every change seen after the first synchronisation.
func (inv *Inventory) OnChange(fn func(Change)) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.subs = append(inv.subs, fn)
}

// Ready is closed once the inventory first holds every VM.
func (inv *Inventory) Ready() <-chan struct{} { return inv.readyCh }

// Available returns nil while the inventory is synchronised with vCenter,
// else an error wrapping machine.ErrUnavailable that says why.
func (inv *Inventory) Available() error {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.availableLocked()
}

func (inv *Inventory) availableLocked() error {
	if err := inv.c.Status(); err != nil {
		return err
	}
	if inv.down != nil {
		return fmt.Errorf("%w: vCenter: %v", machine.ErrUnavailable, inv.down)
	}
	return nil
}

// Run watches vCenter until ctx ends, reconnecting with backoff. It
// waits for the client to log in first.
func (inv *Inventory) Run(ctx context.Context) {
	select {
	case <-inv.c.Ready():
	case <-ctx.Done():
		return
	}
	go inv.heartbeat(ctx)
	backoff := inv.Backoff
	for ctx.Err() == nil {
		wctx, stop := context.WithCancel(ctx)
		inv.mu.Lock()
		inv.stopWatch = stop
		inv.mu.Unlock()
		synced, err := inv.watch(wctx)
		stopped := wctx.Err() != nil
		stop()
		if ctx.Err() != nil {
			return
		}
		if stopped {
			// The heartbeat found vCenter hung and said so.
			err = nil
		}
		if errors.Is(err, errSlowPoll) {
			// vCenter answers, only the long poll overran: watch afresh,
			// serving the inventory meanwhile.
			inv.log.Debug("long poll overran its deadline; watching afresh")
			continue
		}
		if synced {
			backoff = inv.Backoff
		}
		if err != nil && !inv.setDown(err) {
			inv.log.Debug("vCenter still unreachable", "err", mapError(err), "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, inv.MaxBackoff)
	}
}

// setDown marks the inventory unavailable, logging when it was up, and
// reports whether it was.
func (inv *Inventory) setDown(err error) (wasUp bool) {
	// explain names the likely cause: caFile and insecure for a TLS
	// failure, the user for a refused login.
	err = inv.c.explain(err, false)
	inv.mu.Lock()
	wasUp = inv.down == nil
	inv.down = err
	inv.mu.Unlock()
	if wasUp {
		inv.log.Error("vCenter unreachable: BMCs answer node-busy until it is back", "err", err)
	}
	return wasUp
}

// heartbeat asks vCenter the time every heartbeatEvery and marks it hung
// when no answer comes within hangTimeout: a vCenter that stopped
// answering (a hung process, a silent partition) keeps TCP connections
// open, and the long poll alone would not notice for MaxWait and more.
func (inv *Inventory) heartbeat(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, hangTimeout)
		_, err := methods.GetCurrentTime(hctx, inv.c.vim)
		timedOut := hctx.Err() != nil
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		if timedOut {
			err = fmt.Errorf("no answer to a keep-alive within %v (vCenter hung or unreachable): %w", hangTimeout, err)
		}
		inv.hung(err)
	}
}

// hung marks vCenter unavailable at once and ends the watch, which
// resynchronises once vCenter answers again.
func (inv *Inventory) hung(err error) {
	inv.setDown(err)
	inv.mu.Lock()
	stop := inv.stopWatch
	inv.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// errSlowPoll: a long poll outlived its deadline but vCenter still answers
// (a loaded vCenter, or the simulator recomputing a large filter).
var errSlowPoll = errors.New("long poll overran its deadline")

// watch runs one property-collector session: a private collector and a
// container view, a full initial update, then changes until an error. It
// reports whether it got as far as a full synchronisation.
func (inv *Inventory) watch(ctx context.Context) (synced bool, err error) {
	vc := inv.c.vim
	// Cleaning up must not hang on a vCenter that stopped answering: the
	// calls get a deadline, and the inventory is marked down before them.
	cleanup := func(destroy func(context.Context) error) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		defer cancel()
		_ = destroy(dctx)
	}
	// Setting up gets a deadline too.
	sctx, scancel := context.WithTimeout(ctx, callTimeout)
	defer scancel()
	pc, err := property.DefaultCollector(vc).Create(sctx)
	if err != nil {
		return false, err
	}
	defer cleanup(pc.Destroy)
	v, err := view.NewManager(vc).CreateContainerView(sctx, vc.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return false, err
	}
	defer cleanup(v.Destroy)
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{
			Obj:  v.Reference(),
			Skip: types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{
				Type: "ContainerView", Path: "view",
			}},
		}},
		PropSet: []types.PropertySpec{{Type: "VirtualMachine", PathSet: watched}},
	}
	if _, err := pc.CreateFilter(sctx, types.CreateFilter{Spec: spec}); err != nil {
		return false, err
	}
	scancel()

	req := types.WaitForUpdatesEx{
		This:    pc.Reference(),
		Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(int32(inv.MaxWait / time.Second))},
	}
	seen := map[types.ManagedObjectReference]bool{}
	for {
		// The long poll returns after MaxWait at the latest; a call that
		// outlives it by far is a partition that TCP has not noticed.
		pctx, cancel := context.WithTimeout(ctx, inv.MaxWait+20*time.Second)
		res, err := methods.WaitForUpdatesEx(pctx, vc, &req)
		overran := pctx.Err() == context.DeadlineExceeded
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return synced, err
			}
			// A poll past its deadline may be a partition that TCP has not
			// noticed, or a slow vCenter: ask something quick to tell.
			if overran && inv.alive(ctx) {
				return synced, errSlowPoll
			}
			inv.setDown(err)
			return synced, err
		}
		set := res.Returnval
		if set == nil {
			continue // MaxWait passed without a change
		}
		req.Version = set.Version
		var changes []Change
		var stale []types.ManagedObjectReference
		now := time.Now()
		inv.mu.Lock()
		for _, fs := range set.FilterSet {
			for _, u := range fs.ObjectSet {
				c, refresh := inv.applyLocked(u, synced)
				if !synced {
					seen[u.Obj] = true
				}
				if c != nil {
					c.At = now
					changes = append(changes, *c)
				}
				if refresh {
					stale = append(stale, u.Obj)
				}
			}
		}
		truncated := set.Truncated != nil && *set.Truncated
		if !synced && !truncated {
			// The first full update after a (re)connection: VMs that were
			// deleted meanwhile leave, and the inventory is ready.
			for ref := range inv.vms {
				if !seen[ref] {
					inv.names.Add(1)
					delete(inv.vms, ref)
					changes = append(changes, Change{Ref: ref, Removed: true, At: now})
				}
			}
			synced, inv.down, inv.everSynced = true, nil, true
			select {
			case <-inv.readyCh:
				inv.log.Info("vCenter reachable again; inventory resynchronised", "vms", len(inv.vms))
			default:
				close(inv.readyCh)
				inv.log.Info("inventory synchronised", "vms", len(inv.vms))
			}
		}
		subs := inv.subs
		var calls []func()
		for _, c := range changes {
			for _, fn := range inv.perVM[c.Ref] {
				calls = append(calls, func() { fn(c) })
			}
		}
		inv.mu.Unlock()
		for _, call := range calls {
			call()
		}
		for _, c := range changes {
			for _, fn := range subs {
				fn(c)
			}
		}
		for _, ref := range stale {
			rctx, cancel := context.WithTimeout(ctx, callTimeout)
			err := inv.Refresh(rctx, ref)
			cancel()
			switch {
			case err == nil, errors.Is(mapError(err), machine.ErrNotFound):
				// Deleted meanwhile: its leave update follows.
			case errors.Is(mapError(err), machine.ErrUnavailable):
				return synced, err
			default:
				inv.log.Warn("VM configuration not re-read", "vm", ref.Value, "err", mapError(err))
			}
		}
	}
}

// alive reports whether vCenter answers a cheap call within a few seconds.
func (inv *Inventory) alive(ctx context.Context) bool {
	actx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := methods.GetCurrentTime(actx, inv.c.vim)
	return err == nil
}

// applyLocked applies one object update and reports the change worth
// telling subscribers (after the first synchronisation, or on a resync when
// the VM was known before) and whether its configuration must be re-read.
func (inv *Inventory) applyLocked(u types.ObjectUpdate, synced bool) (*Change, bool) {
	ref := u.Obj
	for _, p := range u.ChangeSet {
		if p.Name == "runtime.powerState" && p.Val == inv.confirmed[ref].state {
			delete(inv.confirmed, ref)
		}
	}
	if u.Kind != types.ObjectUpdateKindModify {
		delete(inv.confirmed, ref)
	}
	old, known := inv.vms[ref]
	if u.Kind == types.ObjectUpdateKindLeave {
		inv.names.Add(1)
		delete(inv.vms, ref)
		if known {
			return &Change{Ref: ref, Removed: true}, false
		}
		return nil, false
	}
	vm := &mo.VirtualMachine{}
	vm.Self = ref
	refresh := false
	if known && u.Kind == types.ObjectUpdateKindModify {
		// Copy the top-level structs so readers holding the previous
		// snapshot's pointers never see a write.
		cp := *old
		vm = &cp
		if old.Config != nil {
			cfg := *old.Config
			vm.Config = &cfg
		}
		if old.Guest != nil {
			g := *old.Guest
			vm.Guest = &g
		}
		refresh = changeVersionOnly(u.ChangeSet, old)
	}
	mo.ApplyPropertyChange(vm, u.ChangeSet)
	inv.vms[ref] = vm
	if !known || vm.Name != old.Name {
		inv.names.Add(1)
	}
	if !known {
		if synced || inv.everSynced {
			return &Change{Ref: ref, Added: true, From: machine.PowerUnknown, To: powerState(vm.Runtime.PowerState)}, false
		}
		return nil, false
	}
	c := Change{Ref: ref, From: powerState(old.Runtime.PowerState), To: powerState(vm.Runtime.PowerState)}
	c.Booted = (c.From != machine.PowerOn && c.To == machine.PowerOn) ||
		(vm.Runtime.BootTime != nil && (old.Runtime.BootTime == nil || !vm.Runtime.BootTime.Equal(*old.Runtime.BootTime)))
	if c.From == c.To && !c.Booted {
		return nil, refresh
	}
	return &c, refresh
}

// changeVersionOnly reports an update that moves config.changeVersion on
// without carrying the configuration itself: a reconfiguration to re-read.
func changeVersionOnly(cs []types.PropertyChange, old *mo.VirtualMachine) bool {
	cv := ""
	for _, p := range cs {
		if p.Name == "config.changeVersion" {
			cv, _ = p.Val.(string)
		}
	}
	if cv == "" || (old.Config != nil && old.Config.ChangeVersion == cv) {
		return false
	}
	return true
}

// Refresh re-reads a VM's configuration into the inventory: after the
// bridge's own reconfiguration, so that the next read sees it, and when
// the watcher saw only a new changeVersion.
func (inv *Inventory) Refresh(ctx context.Context, ref types.ManagedObjectReference) error {
	var fresh mo.VirtualMachine
	if err := property.DefaultCollector(inv.c.vim).RetrieveOne(ctx, ref, configProps, &fresh); err != nil {
		return err
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	old, ok := inv.vms[ref]
	if !ok || fresh.Config == nil {
		return nil
	}
	if old.Config != nil && old.Config.ChangeVersion > fresh.Config.ChangeVersion {
		return nil // a newer update already arrived
	}
	vm := *old
	cfg := types.VirtualMachineConfigInfo{}
	if old.Config != nil {
		cfg = *old.Config
	}
	cfg.ChangeVersion, cfg.Firmware, cfg.BootOptions = fresh.Config.ChangeVersion, fresh.Config.Firmware, fresh.Config.BootOptions
	cfg.Hardware = fresh.Config.Hardware
	vm.Config = &cfg
	inv.vms[ref] = &vm
	return nil
}

// Names changes whenever a VM appears, leaves or is renamed, so that
// readers indexing VMs by name (Redfish's systems) rebuild their index then
// and only then: rebuilding every few seconds cost 10,000 systems' index
// on the request path.
func (inv *Inventory) Names() uint64 { return inv.names.Load() }

// get returns the current snapshot of a VM. The snapshot is never written
// again (updates replace it), so it may be read without the lock.
func (inv *Inventory) get(ref types.ManagedObjectReference) (*mo.VirtualMachine, error) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	if err := inv.availableLocked(); err != nil {
		return nil, err
	}
	vm, ok := inv.vms[ref]
	if !ok || vm.Config == nil {
		return nil, fmt.Errorf("vm %s: %w (deleted?)", ref.Value, machine.ErrNotFound)
	}
	if c, ok := inv.confirmed[ref]; ok && time.Since(c.at) < confirmTTL {
		cp := *vm
		cp.Runtime.PowerState = c.state
		return &cp, nil
	}
	return vm, nil
}

// Identity returns what a BMC reports about the VM ref.
func (inv *Inventory) Identity(ref types.ManagedObjectReference) (machine.Identity, error) {
	vm, err := inv.get(ref)
	if err != nil {
		return machine.Identity{}, err
	}
	return identity(vm), nil
}

// find resolves a VM by BIOS UUID or exact name from the inventory. It
// returns ErrNotFound when none matches and ErrInvalidArgument when a name
// is shared: the bridge must never power the wrong machine.
func (inv *Inventory) find(ref string) (types.ManagedObjectReference, error) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	var none types.ManagedObjectReference
	if err := inv.availableLocked(); err != nil {
		return none, err
	}
	isUUID := uuidPattern.MatchString(ref)
	var found []types.ManagedObjectReference
	for r, vm := range inv.vms {
		switch {
		case isUUID && vm.Config != nil && strings.EqualFold(vm.Config.Uuid, ref):
			found = append(found, r)
		case !isUUID && vm.Name == ref:
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return none, fmt.Errorf("vm %q: %w", ref, machine.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return none, fmt.Errorf("vm %q matches %d VMs; use its inventory path or BIOS UUID: %w", ref, len(found), machine.ErrInvalidArgument)
}

// VMInfo describes a VM for discovery.
type VMInfo struct {
	Name     string   `json:"name"`
	Power    string   `json:"power"`
	UUID     string   `json:"uuid"`
	Firmware string   `json:"firmware"`
	MACs     []string `json:"macs"`
}

// List returns the inventory's VMs whose name matches the glob pattern
// (path.Match syntax; empty matches all) and, when folder is set, that lie
// below that inventory folder (looked up in vCenter), sorted by name.
func (inv *Inventory) List(ctx context.Context, pattern, folder string) ([]VMInfo, error) {
	var in map[types.ManagedObjectReference]bool
	if folder != "" {
		if err := inv.Available(); err != nil {
			return nil, err
		}
		finder := find.NewFinder(inv.c.vim)
		if _, err := finder.Folder(ctx, folder); errors.As(err, new(*find.NotFoundError)) {
			// An empty table for a mistyped folder reads as "no VMs there".
			return nil, fmt.Errorf("folder %s not found: give an inventory path such as /DC0/vm/FOLDER: %w", folder, machine.ErrInvalidArgument)
		}
		vms, err := finder.VirtualMachineList(ctx, strings.TrimSuffix(folder, "/")+"/...")
		if err != nil && !errors.As(err, new(*find.NotFoundError)) {
			return nil, fmt.Errorf("folder %s: %w", folder, mapError(err))
		}
		in = map[types.ManagedObjectReference]bool{}
		for _, vm := range vms {
			in[vm.Reference()] = true
		}
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("filter %q: %v: %w", pattern, err, machine.ErrInvalidArgument)
	}
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	if err := inv.availableLocked(); err != nil {
		return nil, err
	}
	var out []VMInfo
	for ref, vm := range inv.vms {
		if vm.Config == nil || (in != nil && !in[ref]) {
			continue
		}
		if ok, _ := path.Match(pattern, vm.Name); pattern != "" && !ok {
			continue
		}
		id := identity(vm)
		out = append(out, VMInfo{Name: vm.Name, Power: powerState(vm.Runtime.PowerState).String(), UUID: id.UUID, Firmware: vm.Config.Firmware, MACs: id.MACs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
