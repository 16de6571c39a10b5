package vsphere

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

	"github.com/vmware/govmomi/fault"
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
	"name", "parent", "parentVApp", "config.uuid", "config.instanceUuid", "config.changeVersion", "config.firmware", "config.bootOptions",
	"config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device",
	"runtime.powerState", "runtime.bootTime", "runtime.maxCpuUsage",
	"guest.toolsRunningStatus",
	"summary.quickStats.overallCpuUsage", "summary.quickStats.guestMemoryUsage",
}

// entityProps are what the inventory keeps of folders and datacenters,
// and vAppProps of vApps (which sit in a folder or another vApp, and hold
// VMs whose parent is unset): enough to know each VM's inventory path
// (Filter.Folder) without asking vCenter, and to see a folder renamed or
// moved at once.
var (
	entityProps = []string{"name", "parent"}
	vAppProps   = []string{"name", "parentFolder", "parentVApp"}
)

// configProps are re-read after a reconfiguration (see watched).
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
	// Moved: the VM was renamed or moved to another folder, which changes
	// what an enrolment rule makes of it.
	Moved bool
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
	// entities are the folders and datacenters, and paths their inventory
	// paths (/DC0/vm/ocp), computed again whenever one changes.
	entities map[types.ManagedObjectReference]entity
	paths    map[types.ManagedObjectReference]string
	// stale are the VMs whose config.changeVersion moved on since their
	// configuration was read: vSphere publishes a reconfiguration only as
	// a new changeVersion (see watched), so the watcher reads them again.
	stale map[types.ManagedObjectReference]bool
	// updated holds, for each VM awaited (await, next), a channel the
	// watcher closes when it applies an update of the VM.
	updated map[types.ManagedObjectReference]chan struct{}
	// sent is each VM's config.changeVersion when the bridge last sent it
	// an action (sending): Refresh waits for another.
	sent map[types.ManagedObjectReference]string
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
	// consoleLocks holds each VM's console lock (lockConsole), a
	// channel of capacity one, by managed object reference.
	consoleLocks sync.Map
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
		entities:  map[types.ManagedObjectReference]entity{},
		stale:     map[types.ManagedObjectReference]bool{},
		updated:   map[types.ManagedObjectReference]chan struct{}{},
		sent:      map[types.ManagedObjectReference]string{},
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
// bridge's succeeded), until the watcher delivers it. It replaces the one
// an earlier task confirmed: when the watcher shows s already (it has not
// delivered that earlier state yet, or never will), reads show s.
func (inv *Inventory) confirm(ref types.ManagedObjectReference, s types.VirtualMachinePowerState) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	vm, ok := inv.vms[ref]
	switch {
	case !ok:
	case vm.Runtime.PowerState == s:
		delete(inv.confirmed, ref)
	default:
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
	pc, fpc, closeSession, err := inv.open(ctx)
	if err != nil {
		return false, err
	}
	defer closeSession()
	req := types.WaitForUpdatesEx{
		This:    pc.Reference(),
		Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(int32(inv.MaxWait / time.Second))},
	}
	freq := types.WaitForUpdatesEx{This: fpc.Reference(), Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(0)}}
	s := &syncState{seen: map[types.ManagedObjectReference]bool{}}
	for {
		set, err := inv.poll(ctx, &req)
		if err != nil {
			return s.synced, err
		}
		if !s.synced || set == nil || inv.newPlaces(set) {
			if err := inv.pollFolders(ctx, &freq, s); err != nil {
				inv.setDown(err)
				return s.synced, err
			}
		}
		if set != nil {
			req.Version = set.Version
			inv.notify(inv.apply(set, s))
		}
		if err := inv.reread(ctx); err != nil {
			return s.synced, err
		}
	}
}

// watchSpec is what one collector of a watch session watches.
type watchSpec struct {
	types []string
	props []types.PropertySpec
}

// The watch's two collectors: VMs, and what their inventory paths are
// made of. Folders have a collector of their own, polled without waiting
// while the VMs' is idle (so a folder renamed is seen within MaxWait),
// and before VM updates that name a place not known yet are applied (so
// that a VM moved into a new folder finds it known), because govmomi's simulator re-reads every
// filter of a collector for each update it sends (one collector over
// both doubled its work, and the whole vsphere test suite's time), and
// one filter over both deadlocks it (creating a folder changes the view,
// and the next poll re-reads the filter under its lock while a move into
// that folder holds the folder and the VM and waits for that lock).
var (
	vmWatch     = watchSpec{[]string{"VirtualMachine"}, []types.PropertySpec{{Type: "VirtualMachine", PathSet: watched}}}
	folderWatch = watchSpec{[]string{"Folder", "Datacenter", "VirtualApp"}, []types.PropertySpec{{Type: "Folder", PathSet: entityProps},
		{Type: "Datacenter", PathSet: entityProps}, {Type: "VirtualApp", PathSet: vAppProps}}}
)

// open creates the session's collectors, each with its container view
// and filter (vmWatch, folderWatch), and returns them and what destroys
// them.
func (inv *Inventory) open(ctx context.Context) (vms, folders *property.Collector, cleanup func(), err error) {
	// Cleaning up must not hang on a vCenter that stopped answering: the
	// calls get a deadline, and the inventory is marked down before them.
	var destroy []func(context.Context) error
	cleanup = func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		defer cancel()
		for _, d := range slices.Backward(destroy) {
			if err := d(dctx); err != nil {
				inv.log.Debug("watch session not cleaned up; vCenter drops it with the session", "err", mapError(err))
			}
		}
	}
	// Setting up gets a deadline too.
	sctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if vms, err = inv.collector(sctx, vmWatch, &destroy); err == nil {
		folders, err = inv.collector(sctx, folderWatch, &destroy)
	}
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	return vms, folders, cleanup, nil
}

// collector creates a collector with a container view of w.types and a
// filter of w.props over it, adding what destroys them to destroy.
func (inv *Inventory) collector(ctx context.Context, w watchSpec, destroy *[]func(context.Context) error) (*property.Collector, error) {
	vc := inv.c.vim
	pc, err := property.DefaultCollector(vc).Create(ctx)
	if err != nil {
		return nil, err
	}
	*destroy = append(*destroy, pc.Destroy)
	v, err := view.NewManager(vc).CreateContainerView(ctx, vc.ServiceContent.RootFolder, w.types, true)
	if err != nil {
		return nil, err
	}
	*destroy = append(*destroy, v.Destroy)
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{
			Obj:       v.Reference(),
			Skip:      types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ContainerView", Path: "view"}},
		}},
		PropSet: w.props,
	}
	_, err = pc.CreateFilter(ctx, types.CreateFilter{Spec: spec})
	return pc, err
}

// pollFolders applies the folder changes vCenter holds for the folders'
// collector, without waiting for any.
func (inv *Inventory) pollFolders(ctx context.Context, req *types.WaitForUpdatesEx, s *syncState) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := methods.WaitForUpdatesEx(pctx, inv.c.vim, req)
		cancel()
		if err != nil {
			return err
		}
		set := res.Returnval
		if set == nil {
			return nil
		}
		req.Version = set.Version
		inv.applyEntities(set, s)
		if set.Truncated == nil || !*set.Truncated {
			return nil
		}
	}
}

// pollSlack is how far past MaxWait a long poll may run before it is taken
// for a partition that TCP has not noticed.
const pollSlack = 20 * time.Second

// poll waits for the next update set; nil means MaxWait passed without a
// change.
func (inv *Inventory) poll(ctx context.Context, req *types.WaitForUpdatesEx) (*types.UpdateSet, error) {
	pctx, cancel := context.WithTimeout(ctx, inv.MaxWait+pollSlack)
	res, err := methods.WaitForUpdatesEx(pctx, inv.c.vim, req)
	overran := pctx.Err() == context.DeadlineExceeded
	cancel()
	switch {
	case err == nil:
		return res.Returnval, nil
	case ctx.Err() != nil:
		return nil, err
	case overran && inv.alive(ctx):
		// A poll past its deadline may be a partition or a slow vCenter;
		// this one still answers something quick.
		return nil, errSlowPoll
	}
	inv.setDown(err)
	return nil, err
}

// syncState is a session's progress towards its first full update: the
// VMs it has seen so far.
type syncState struct {
	synced bool
	seen   map[types.ManagedObjectReference]bool
}

// apply applies an update set and returns what it changed, with the
// watchers to tell, gathered under the same lock: a VM bound meanwhile is
// told only of later changes.
func (inv *Inventory) apply(set *types.UpdateSet, s *syncState) notice {
	now := time.Now()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var changes []Change
	for _, fs := range set.FilterSet {
		for _, u := range fs.ObjectSet {
			if !s.synced {
				s.seen[u.Obj] = true
			}
			if c := inv.applyLocked(u, s.synced); c != nil {
				c.At = now
				changes = append(changes, *c)
			}
		}
	}
	if !s.synced && (set.Truncated == nil || !*set.Truncated) {
		// The first full update after a (re)connection.
		changes = append(changes, inv.syncedLocked(s.seen, now)...)
		s.synced = true
		inv.paths = inv.pathsLocked()
	}
	n := notice{changes: changes, subs: inv.subs, perVM: make([][]func(Change), len(changes))}
	for i, c := range changes {
		n.perVM[i] = slices.Collect(maps.Values(inv.perVM[c.Ref]))
	}
	return n
}

// syncedLocked ends a (re)synchronisation: the VMs deleted meanwhile
// leave, and the inventory is ready.
func (inv *Inventory) syncedLocked(seen map[types.ManagedObjectReference]bool, now time.Time) []Change {
	var gone []Change
	for ref := range inv.vms {
		if !seen[ref] {
			inv.forgetLocked(ref)
			gone = append(gone, Change{Ref: ref, Removed: true, At: now})
		}
	}
	for ref := range inv.entities {
		if !seen[ref] {
			delete(inv.entities, ref)
		}
	}
	inv.down, inv.everSynced = nil, true
	select {
	case <-inv.readyCh:
		inv.log.Info("vCenter reachable again; inventory resynchronised", "vms", len(inv.vms))
	default:
		close(inv.readyCh)
		inv.log.Info("inventory synchronised", "vms", len(inv.vms))
	}
	return gone
}

// notice is what one update set tells: its changes, each VM's watchers
// first, then every subscriber.
type notice struct {
	changes []Change
	perVM   [][]func(Change)
	subs    []func(Change)
}

// notify delivers n outside the lock, on the watcher's goroutine.
func (inv *Inventory) notify(n notice) {
	for i, c := range n.changes {
		for _, fn := range n.perVM[i] {
			fn(c)
		}
	}
	for _, c := range n.changes {
		for _, fn := range n.subs {
			fn(c)
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
// the VM was known before). Those awaiting the VM are woken.
func (inv *Inventory) applyLocked(u types.ObjectUpdate, synced bool) *Change {
	ref := u.Obj
	defer inv.wakeLocked(ref)
	for _, p := range u.ChangeSet {
		if p.Name == "runtime.powerState" && p.Val == inv.confirmed[ref].state {
			delete(inv.confirmed, ref)
		}
	}
	old, known := inv.vms[ref]
	switch u.Kind {
	case types.ObjectUpdateKindLeave:
		inv.forgetLocked(ref)
		if known {
			return &Change{Ref: ref, Removed: true}
		}
		return nil
	case types.ObjectUpdateKindEnter:
		// An enter carries every watched property: the configuration is
		// current.
		delete(inv.confirmed, ref)
		delete(inv.stale, ref)
		known = false
	}
	vm := &mo.VirtualMachine{}
	vm.Self = ref
	if known {
		vm = copyVM(old)
		if changeVersionMoved(u.ChangeSet, old) {
			inv.stale[ref] = true
		}
	}
	mo.ApplyPropertyChange(vm, u.ChangeSet)
	inv.vms[ref] = vm
	if old == nil || vm.Name != old.Name {
		inv.names.Add(1)
	}
	return inv.changeLocked(old, vm, synced)
}

// copyVM copies the top-level structs of a snapshot, so that readers
// holding the previous snapshot's pointers never see a write.
func copyVM(old *mo.VirtualMachine) *mo.VirtualMachine {
	vm := *old
	if old.Config != nil {
		cfg := *old.Config
		vm.Config = &cfg
	}
	if old.Guest != nil {
		g := *old.Guest
		vm.Guest = &g
	}
	return &vm
}

// changeLocked is the change from old (nil: none) to vm worth telling.
func (inv *Inventory) changeLocked(old, vm *mo.VirtualMachine, synced bool) *Change {
	ref := vm.Self
	if old == nil {
		if synced || inv.everSynced {
			return &Change{Ref: ref, Added: true, From: machine.PowerUnknown, To: powerState(vm.Runtime.PowerState)}
		}
		return nil
	}
	c := Change{Ref: ref, From: powerState(old.Runtime.PowerState), To: powerState(vm.Runtime.PowerState)}
	c.Booted = (c.From != machine.PowerOn && c.To == machine.PowerOn) ||
		(vm.Runtime.BootTime != nil && (old.Runtime.BootTime == nil || !vm.Runtime.BootTime.Equal(*old.Runtime.BootTime)))
	c.Moved = vm.Name != old.Name || !sameRef(placeOf(vm), placeOf(old))
	if c.From == c.To && !c.Booted && !c.Moved {
		return nil
	}
	return &c
}

// forgetLocked removes a VM that left vCenter, waking those awaiting it.
func (inv *Inventory) forgetLocked(ref types.ManagedObjectReference) {
	inv.names.Add(1)
	delete(inv.vms, ref)
	delete(inv.confirmed, ref)
	delete(inv.stale, ref)
	delete(inv.sent, ref)
	inv.wakeLocked(ref)
}

// changeVersionMoved reports an update that moves config.changeVersion on:
// a reconfiguration, whose configuration must be read again. Versions are
// compared for equality only: vSphere documents them as opaque.
func changeVersionMoved(cs []types.PropertyChange, old *mo.VirtualMachine) bool {
	for _, p := range cs {
		if cv, ok := p.Val.(string); ok && p.Name == "config.changeVersion" {
			return cv != "" && (old.Config == nil || old.Config.ChangeVersion != cv)
		}
	}
	return false
}

// reread reads again, in one call for all of them, the configurations
// whose changeVersion moved on, and applies them. A VM not read stays
// stale, to be read after the next long poll.
func (inv *Inventory) reread(ctx context.Context) error {
	inv.mu.RLock()
	refs := slices.Collect(maps.Keys(inv.stale))
	inv.mu.RUnlock()
	if len(refs) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	contents, err := inv.retrieveConfigs(rctx, refs)
	if errors.Is(mapError(err), machine.ErrUnavailable) {
		return err
	}
	if err != nil {
		inv.log.Warn("VM configurations not re-read; tried again after the next long poll", "vms", len(refs), "err", mapError(err))
		return nil
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, oc := range contents {
		var fresh mo.VirtualMachine
		switch err := mo.LoadObjectContent([]types.ObjectContent{oc}, &fresh); {
		case fault.Is(err, &types.ManagedObjectNotFound{}):
			// Deleted since its update: its leave update follows.
		case err != nil:
			inv.log.Warn("VM configuration not re-read; tried again after the next long poll", "vm", oc.Obj.Value, "err", mapError(err))
		default:
			inv.configLocked(&fresh)
		}
	}
	return nil
}

// retrieveConfigs reads configProps of refs in one RetrieveProperties.
func (inv *Inventory) retrieveConfigs(ctx context.Context, refs []types.ManagedObjectReference) ([]types.ObjectContent, error) {
	objs := make([]types.ObjectSpec, len(refs))
	for i, ref := range refs {
		objs[i] = types.ObjectSpec{Obj: ref}
	}
	req := types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{{
		ObjectSet: objs,
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: configProps}},
		// Without it, one VM deleted since its update fails the whole
		// call with ManagedObjectNotFound; with it, that VM alone is
		// reported missing.
		ReportMissingObjectsInResults: types.NewBool(true),
	}}}
	res, err := property.DefaultCollector(inv.c.vim).RetrieveProperties(ctx, req)
	if err != nil {
		return nil, err
	}
	return res.Returnval, nil
}

// configLocked applies a configuration read afresh. The read came after
// the update that made the VM stale and before the next one is applied
// (the watcher does both), so it is at least as new as the inventory.
func (inv *Inventory) configLocked(fresh *mo.VirtualMachine) {
	ref := fresh.Self
	old, ok := inv.vms[ref]
	if !ok || fresh.Config == nil {
		return
	}
	vm := copyVM(old)
	if vm.Config == nil {
		vm.Config = &types.VirtualMachineConfigInfo{}
	}
	vm.Config.ChangeVersion, vm.Config.Firmware, vm.Config.BootOptions = fresh.Config.ChangeVersion, fresh.Config.Firmware, fresh.Config.BootOptions
	vm.Config.Hardware = fresh.Config.Hardware
	inv.vms[ref] = vm
	delete(inv.stale, ref)
	inv.wakeLocked(ref)
}

// wakeLocked wakes those awaiting the VM ref (await, next).
func (inv *Inventory) wakeLocked(ref types.ManagedObjectReference) {
	if ch, ok := inv.updated[ref]; ok {
		close(ch)
		delete(inv.updated, ref)
	}
}

// await waits until cond holds of the VM as reads see it, or ctx ends. The
// watcher wakes it when it applies an update of the VM, so it asks vCenter
// nothing and costs nothing while it waits. cond runs under inv.mu. While
// the inventory is unavailable it keeps waiting; a VM gone from vCenter
// ends it with machine.ErrNotFound.
func (inv *Inventory) await(ctx context.Context, ref types.ManagedObjectReference, cond func(*mo.VirtualMachine) bool) error {
	for {
		inv.mu.Lock()
		vm, err := inv.getLocked(ref)
		switch {
		case err == nil && cond(vm):
			inv.mu.Unlock()
			return nil
		case errors.Is(err, machine.ErrNotFound):
			inv.mu.Unlock()
			return err
		}
		ch := inv.nextLocked(ref)
		inv.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("vm %s: the inventory has not shown the change yet: %w", ref.Value, context.Cause(ctx))
		}
	}
}

// next returns a channel the watcher closes when it next applies an
// update of the VM ref; nil, which never delivers, for a VM it does not
// hold (deleted, or not synchronised yet).
func (inv *Inventory) next(ref types.ManagedObjectReference) <-chan struct{} {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.nextLocked(ref)
}

func (inv *Inventory) nextLocked(ref types.ManagedObjectReference) chan struct{} {
	if _, ok := inv.vms[ref]; !ok {
		return nil
	}
	ch, ok := inv.updated[ref]
	if !ok {
		ch = make(chan struct{})
		inv.updated[ref] = ch
	}
	return ch
}

// sending notes that the bridge is about to send the VM ref an action, so
// that Refresh, after it, waits for a configuration other than the one
// the VM has now. The bridge's own changes of a VM are serialised (its
// VM's action lock), so one note per VM is enough.
func (inv *Inventory) sending(ref types.ManagedObjectReference) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if vm, ok := inv.vms[ref]; ok && vm.Config != nil {
		inv.sent[ref] = vm.Config.ChangeVersion
	}
}

// Refresh waits, within ctx, until the inventory shows the configuration
// the bridge's last action on the VM produced: a config.changeVersion other
// than the VM's when the action was sent (sending), its configuration read
// again (vSphere announces a reconfiguration only as a new changeVersion).
// It waits for the watcher, rather than reading the VM itself, so that the
// configuration is read once, and in one call for every VM changed at
// once. A change of the VM by someone else in between may end the wait
// before the bridge's own shows; the watcher delivers that one next.
func (inv *Inventory) Refresh(ctx context.Context, ref types.ManagedObjectReference) error {
	return inv.await(ctx, ref, func(vm *mo.VirtualMachine) bool {
		return vm.Config.ChangeVersion != inv.sent[ref] && !inv.stale[ref]
	})
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
	return inv.getLocked(ref)
}

// getLocked is get under inv.mu: what reads see, a power state the
// bridge's task confirmed included.
func (inv *Inventory) getLocked(ref types.ManagedObjectReference) (*mo.VirtualMachine, error) {
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
