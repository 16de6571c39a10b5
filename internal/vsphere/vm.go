package vsphere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Timing defaults.
const (
	// DefaultTaskWait is the reply budget for what comes before an
	// action is sent (the VM's lock, vCenter's sign of life): ipmitool -I
	// lanplus retransmits after 1 s by default. Once sent, the answer
	// waits for vCenter's verdict, up to verdictWait (power.go).
	DefaultTaskWait = 800 * time.Millisecond
	// callTimeout bounds every vCenter call made for a request, so that a
	// hung vCenter cannot hold a BMC session forever.
	callTimeout = 5 * time.Second
	// duplicateWindow: a reset, cycle or NMI repeated this soon is taken
	// for the client's retransmission of the same request (IPMI clients
	// resend with a new session sequence number), not a second request.
	duplicateWindow = 3 * time.Second
	// inventoryLag bounds the wait, after a task succeeded, for the
	// inventory to show its result (vcsim publishes in 20 ms steps, a real
	// vCenter faster; a loaded machine takes longer).
	inventoryLag = 2 * time.Second
)

// VMOptions tune a VM machine.
type VMOptions struct {
	Log *slog.Logger
	// TaskWait is the reply budget before an action is sent
	// (DefaultTaskWait if 0).
	TaskWait time.Duration
	// SoftOffTimeout, when positive, turns a guest shutdown that has not
	// powered the VM off after that long, or that VMware Tools cannot do,
	// into a hard power-off.
	SoftOffTimeout time.Duration
	// Saved is the state saved by an earlier run of the bridge.
	Saved Record
	// Persist, when set, saves the state before it is applied; an error
	// aborts the change.
	Persist func(Record) error
	// BootHold is how long after a boot a one-time override's boot order
	// stays before the one it replaced comes back: ESXi applies a
	// reconfiguration to a running VM at once, and the firmware reads the
	// boot order during POST, a few seconds after power-on.
	BootHold time.Duration
	// FollowEFIBit says which boot overrides change the firmware
	// (FollowPersistent if empty).
	FollowEFIBit FirmwarePolicy
	// MediaDatastore and MediaFolder say where inserted ISO images are
	// stored; the default is the VM's first datastore, folder MediaFolder.
	MediaDatastore string
	MediaFolder    string
	// Media is the virtual-media policy the VMs share (limits, TLS,
	// networks, collection); nil: the defaults, nothing recorded.
	Media *MediaService
}

// VM is a machine.Machine over one vSphere VM, bound by managed object
// reference so that a rename or a move does not lose it. Reads come from
// the inventory; only actions call vCenter.
//
// Lock order: mu (an action, held while vCenter works) before any of
// recMu, cycleMu and bgMu, which are held only to read or replace what
// they guard and never two at once; reads take none of them but recMu.
type VM struct {
	inv  *Inventory
	obj  *object.VirtualMachine
	log  *slog.Logger
	opts VMOptions

	// life outlives requests: background task waits, the second half of a
	// power cycle and boot-order restores run under it.
	life    context.Context
	cancel  context.CancelFunc
	bgMu    sync.Mutex
	closed  bool
	bg      sync.WaitGroup
	unwatch func()
	events  *machine.EventLog

	// mu serialises actions so that a cycle, a boot change and a power-on
	// never interleave their vCenter calls. Reads never take it: an action
	// may hold it for as long as a vCenter task takes.
	mu sync.Mutex
	// recMu guards rec and onceAt, held only to copy or replace them;
	// writers hold mu as well.
	recMu      sync.Mutex
	rec        Record
	lastAction machine.PowerAction
	lastAt     time.Time
	lastBoot   time.Time
	// settle: a power action told failed that vCenter may still run.
	settle settleState
	// onceAt is when the pending one-time override was set: a boot the
	// inventory learnt of before then cannot have used it.
	onceAt time.Time
	// cycleMu guards cycleStop, which ends a power cycle's pending
	// power-on: a later action of the client's supersedes it.
	cycleMu   sync.Mutex
	cycleStop context.CancelFunc
}

var _ machine.Machine = (*VM)(nil)

// Bind resolves a VM by BIOS UUID, inventory path (starting with "/") or
// name, and returns a machine bound to it. A missing VM is
// machine.ErrNotFound; a name that several VMs share is refused.
func (inv *Inventory) Bind(ctx context.Context, ref string, opts VMOptions) (*VM, error) {
	moref, err := inv.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	return inv.NewVM(moref, opts), nil
}

// NewVM returns a machine bound to the VM ref.
func (inv *Inventory) NewVM(ref types.ManagedObjectReference, opts VMOptions) *VM {
	if opts.Log == nil {
		opts.Log = inv.log
	}
	if opts.TaskWait == 0 {
		opts.TaskWait = DefaultTaskWait
	}
	life, cancel := context.WithCancel(context.Background())
	v := &VM{
		inv: inv, obj: object.NewVirtualMachine(inv.c.vim, ref), opts: opts,
		life: life, cancel: cancel,
		events: machine.NewEventLog(256, nil),
		rec:    opts.Saved,
	}
	v.log = opts.Log.With("vm", v.name())
	v.unwatch = inv.Watch(ref, v.observe)
	return v
}

// Reference returns the VM's managed object reference.
func (v *VM) Reference() types.ManagedObjectReference { return v.obj.Reference() }

// Close stops watching and waits, at most closeGrace, for background work
// to end. Followers of actions already answered (a power-on to undo, a
// task whose outcome was unknown, a power cycle's power-on) are not
// stopped: they finish on their own, within lateBound, so that the answer
// given stays true; Close only stops waiting for them.
func (v *VM) Close() {
	v.unwatch()
	v.bgMu.Lock()
	v.closed = true
	v.bgMu.Unlock()
	v.cancel()
	done := make(chan struct{})
	go func() { v.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace):
		v.log.Warn("BMC stopped while vCenter actions it answered are still followed; they finish on their own and are logged", "at_most", lateBound)
	}
}

// background runs fn on its own goroutine unless the VM is closed.
func (v *VM) background(fn func()) {
	v.bgMu.Lock()
	defer v.bgMu.Unlock()
	if v.closed {
		return
	}
	v.bg.Add(1)
	go func() {
		defer v.bg.Done()
		fn()
	}()
}

func (v *VM) name() string {
	if vm, err := v.inv.get(v.obj.Reference()); err == nil {
		return vm.Name
	}
	return v.obj.Reference().Value
}

func (v *VM) snapshot() (*mo.VirtualMachine, error) {
	vm, err := v.inv.get(v.obj.Reference())
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", v.obj.Reference().Value, err)
	}
	return vm, nil
}

// Identity implements machine.Machine.
// The identity and the power state come from one snapshot of the VM, so
// that what it allows (machine.Identity.Allows) is true of one moment.
func (v *VM) Identity(context.Context) (machine.Identity, error) {
	vm, err := v.inv.get(v.obj.Reference())
	if err != nil {
		return machine.Identity{}, err
	}
	id := identity(vm)
	id.SoftOffFallback = v.opts.SoftOffTimeout > 0
	id.NMI = powerState(vm.Runtime.PowerState).IsOn() && !v.inv.c.noNMI.Load()
	id.SecureBootNext = id.SecureBoot
	if p := v.record().PendingSecureBoot; p != nil {
		id.SecureBootNext = *p
	}
	return id, nil
}

func powerState(s types.VirtualMachinePowerState) machine.PowerState {
	switch s {
	case types.VirtualMachinePowerStatePoweredOn:
		return machine.PowerOn
	case types.VirtualMachinePowerStatePoweredOff:
		return machine.PowerOff
	case types.VirtualMachinePowerStateSuspended:
		return machine.PowerSuspended
	}
	return machine.PowerUnknown
}

// PowerState implements machine.Machine.
func (v *VM) PowerState(context.Context) (machine.PowerState, error) {
	vm, err := v.snapshot()
	if err != nil {
		return machine.PowerUnknown, err
	}
	return powerState(vm.Runtime.PowerState), nil
}

// Stats implements machine.Machine from the VM's quick statistics.
func (v *VM) Stats(context.Context) (machine.Stats, error) {
	vm, err := v.snapshot()
	if err != nil {
		return machine.Stats{}, err
	}
	var s machine.Stats
	if max := vm.Runtime.MaxCpuUsage; max > 0 {
		s.CPUPercent = min(100, 100*float64(vm.Summary.QuickStats.OverallCpuUsage)/float64(max))
	}
	if mem := vm.Config.Hardware.MemoryMB; mem > 0 {
		s.MemoryPercent = min(100, 100*float64(vm.Summary.QuickStats.GuestMemoryUsage)/float64(mem))
	}
	return s, nil
}

// Events implements machine.Machine.
func (v *VM) Events(since uint64) []machine.Event { return v.events.Since(since) }

// observe records what the inventory saw happen to the VM, whoever did it,
// and lets a boot consume a one-time boot override. It runs on the
// inventory's watcher and must not block.
func (v *VM) observe(c Change) {
	switch {
	case c.Removed:
		v.log.Warn("VM deleted from vCenter: its BMC answers with errors")
		return
	case c.From != c.To && c.To == machine.PowerOn:
		if !v.settle.seen(c.To) {
			v.events.Add(machine.EventPowerOn, "")
		}
	case c.From == machine.PowerOn && c.To != machine.PowerOn:
		if !v.settle.seen(c.To) {
			v.events.Add(machine.EventPowerOff, c.To.String())
		}
	}
	if c.Booted {
		v.booted(c.At, c.From == c.To)
	}
}

// Power implements machine.Machine. On and Off succeed when the VM is
// already in that state (Ironic sends "power on" without checking first);
// cycle, reset and NMI need a running VM, as IPMI v2.0 §28.3 says of power
// cycle ("no effect if the system is in S4/S5"). Actions always ask vCenter
// rather than trusting the inventory, which may lag a change by a moment:
// vCenter's InvalidPowerState fault says "already there" for on and off,
// and "not running" for the others.
func (v *VM) Power(ctx context.Context, a machine.PowerAction) error {
	// Waiting for the lock and the sign of life fit the reply budget;
	// once sent, the answer waits for vCenter's verdict (power.go).
	ctx, vm, release, err := v.beginAction(ctx)
	if err != nil {
		return err
	}
	defer release()
	state := powerState(vm.Runtime.PowerState)
	switch {
	case (a == machine.Cycle || a == machine.Reset || a == machine.NMI) && a == v.lastAction && time.Since(v.lastAt) < duplicateWindow:
		v.log.Debug("repeated power request taken for a retransmission", "action", a)
		return nil
	case a == machine.NMI && v.inv.c.noNMI.Load():
		return fmt.Errorf("vm %s: this vCenter cannot send an NMI: %w", vm.Name, machine.ErrUnsupported)
	case a == machine.NMI && state != machine.PowerOn:
		return fmt.Errorf("vm %s is %s, an NMI needs it running: %w", vm.Name, state, machine.ErrInvalidState)
	}
	v.supersedeCycle()
	err = v.power(ctx, a, state)
	if err == nil {
		v.lastAction, v.lastAt = a, time.Now()
		v.log.Info("power action", "action", a, "was", state)
	}
	return err
}

func (v *VM) power(ctx context.Context, a machine.PowerAction, state machine.PowerState) error {
	switch a {
	case machine.On:
		return v.powerOn(ctx, state)
	case machine.Off:
		return v.powerOff(ctx, "power off")
	case machine.SoftOff:
		return v.softOff(ctx)
	case machine.Cycle:
		return v.cycle(ctx)
	case machine.Reset:
		booted := func() {
			v.events.Add(machine.EventReset, "")
			v.booted(time.Now(), false)
		}
		vd, err := v.runTask(ctx, "reset", v.obj.Reset, func(err error) {
			if err == nil {
				booted()
			}
		})
		switch vd {
		case done:
			booted()
			return nil
		case refused:
			return fmt.Errorf("vm %s: reset: %w", v.name(), mapError(err))
		}
		return err
	case machine.SoftReset:
		return v.softReset(ctx)
	case machine.NMI:
		vd, err := v.send(ctx, "NMI", func(ctx context.Context) error {
			_, err := methods.SendNMI(ctx, v.inv.c.vim, &types.SendNMI{This: v.obj.Reference()})
			return err
		})
		if vd == refused {
			err = mapError(err)
			if errors.Is(err, machine.ErrUnsupported) {
				// Older vSphere and the simulator lack SendNMI: stop
				// advertising NMIs (machine.Identity.NMI).
				v.inv.c.noNMI.Store(true)
			}
			return fmt.Errorf("vm %s: NMI: %w", v.name(), err)
		}
		return err
	}
	return fmt.Errorf("power action %s: %w", a, machine.ErrInvalidArgument)
}

// powerOff powers the VM off and answers vCenter's verdict; a VM already
// off is success.
func (v *VM) powerOff(ctx context.Context, what string) error {
	vd, err := v.runTask(ctx, what, v.obj.PowerOff, nil)
	switch {
	case vd == done:
		v.reached(ctx, machine.PowerOff)
		return nil
	case vd == refused && fault.Is(err, &types.InvalidPowerState{}):
		v.waitPower(ctx, machine.PowerOff, inventoryLag) // already off
		return nil
	case vd == refused:
		v.log.Error("vCenter task failed", "task", what, "err", mapError(err))
		return fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(err))
	}
	return err
}

// powerOn applies a pending firmware change, then powers on (or resumes).
// v.mu must be held.
func (v *VM) powerOn(ctx context.Context, state machine.PowerState) error {
	if rec := v.record(); (rec.PendingFirmware != "" || rec.PendingSecureBoot != nil) && state != machine.PowerOn {
		if err := v.pendingFirmware(ctx, state); err != nil {
			return err
		}
		// The firmware's task may have used the reply budget up: the
		// power-on gets its own, for its sign of life and submission.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), v.opts.TaskWait)
		defer cancel()
	}
	_, err := v.submitTask(ctx, machine.On, "power on", machine.PowerOn, v.obj.PowerOn)
	return err
}

// pendingFirmware applies, before a power-on, the firmware change that
// waited for the VM to be off. v.mu must be held.
func (v *VM) pendingFirmware(ctx context.Context, state machine.PowerState) error {
	rec := v.record()
	fw, sb := rec.PendingFirmware, rec.PendingSecureBoot
	if (fw == "" && sb == nil) || state == machine.PowerOn {
		return nil
	}
	spec := types.VirtualMachineConfigSpec{Firmware: fw}
	if sb != nil {
		vm, err := v.snapshot()
		if err != nil {
			return err
		}
		spec.BootOptions = secureBootOptions(vm, *sb)
	}
	applied := func() {
		rec := v.record()
		if rec.PendingFirmware == fw {
			rec.PendingFirmware = ""
		}
		if rec.PendingSecureBoot == sb {
			rec.PendingSecureBoot = nil
		}
		v.save(rec)
	}
	vd, err := v.runTask(ctx, "set firmware "+fw+" before power-on", func(ctx context.Context) (*object.Task, error) {
		return v.obj.Reconfigure(ctx, spec)
	}, func(err error) {
		if err == nil {
			applied()
		}
	})
	switch {
	case vd == done:
		applied()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		_ = v.inv.Refresh(rctx, v.obj.Reference())
		cancel()
		v.log.Info("firmware changed before power-on", "firmware", fw, "secure_boot", sb != nil && *sb)
		return nil
	case vd == refused && isKind(err, machine.ErrInvalidState):
		return nil // running after all: the change keeps waiting
	case vd == refused:
		return fmt.Errorf("vm %s: set firmware %s before power-on: %w", v.name(), fw, mapError(err))
	}
	return err // not sent, or unknown: the power-on is not sent
}

// softOff asks the guest to shut down through VMware Tools. With a
// SoftOffTimeout it falls back to a hard power-off, at once when Tools
// cannot shut the guest down, else when the guest has not powered off in
// time; without one it never powers off hard behind the client's back.
func (v *VM) softOff(ctx context.Context) error {
	vd, err := v.send(ctx, "guest shutdown", v.obj.ShutdownGuest)
	switch {
	case vd == refused && fault.Is(err, &types.InvalidPowerState{}):
		return nil // already off
	case vd == refused:
		err = fmt.Errorf("vm %s: guest shutdown: %w", v.name(), mapError(err))
		if v.opts.SoftOffTimeout <= 0 || !errors.Is(err, machine.ErrInvalidState) {
			return err
		}
		v.log.Warn("guest shutdown impossible; powering off hard (softOffTimeout is set)", "err", err)
		return v.powerOff(ctx, "power off")
	case vd != done:
		return err
	}
	if v.opts.SoftOffTimeout > 0 {
		v.background(func() {
			if v.waitPower(v.life, machine.PowerOff, v.opts.SoftOffTimeout) || v.life.Err() != nil {
				return // off, or the BMC stopped: nothing to force
			}
			v.log.Warn("guest did not shut down in time; powering off hard", "timeout", v.opts.SoftOffTimeout)
			v.mu.Lock()
			defer v.mu.Unlock()
			if err := v.powerOff(v.life, "power off after guest shutdown timeout"); err != nil {
				v.log.Error("hard power-off after guest shutdown timeout failed", "err", err)
			}
		})
	}
	return nil
}

// softReset asks the guest to restart through VMware Tools. Without Tools
// it fails (or, with a SoftOffTimeout, falls back to a hard reset), since a
// silent hard reset would lose what the guest had not written.
func (v *VM) softReset(ctx context.Context) error {
	vd, err := v.send(ctx, "guest reboot", v.obj.RebootGuest)
	switch vd {
	case done:
		return nil // the guest reboots; runtime.bootTime will show it
	case notSent, unknown:
		return err
	}
	err = fmt.Errorf("vm %s: guest reboot: %w", v.name(), mapError(err))
	if v.opts.SoftOffTimeout <= 0 || !errors.Is(err, machine.ErrInvalidState) {
		return err
	}
	v.log.Warn("guest reboot impossible; resetting hard (softOffTimeout is set)", "err", err)
	return v.power(ctx, machine.Reset, machine.PowerOn)
}

// cycle powers off, answers once vCenter has done that (a VM that was off
// already fails the cycle), then powers on again in the background, so
// that the reply does not wait for two tasks. The power-on is retried
// until vCenter answers (cyclePowerOn).
func (v *VM) cycle(ctx context.Context) error {
	vd, err := v.runTask(ctx, "power off of a power cycle", v.obj.PowerOff, func(err error) {
		if err == nil {
			// The off ended after the answer: the cycle completes.
			v.cyclePowerOn()
		}
	})
	switch vd {
	case done:
	case refused:
		err = mapError(err)
		if errors.Is(err, machine.ErrInvalidState) {
			return fmt.Errorf("vm %s: power cycle: %w", v.name(), err)
		}
		v.log.Error("vCenter task failed", "task", "power off of a power cycle", "err", err)
		return fmt.Errorf("vm %s: power cycle: %w", v.name(), err)
	default:
		return err
	}
	v.cyclePowerOn()
	return nil
}

// Pacing of a power cycle's power-on while vCenter does not answer.
const (
	cycleRetry    = 500 * time.Millisecond
	cycleMaxRetry = 10 * time.Second
)

// cyclePowerOn powers the VM on again after a power cycle's power-off, in
// the background: the client was told the cycle succeeded, so the power-on
// is retried while vCenter is unavailable or does not answer, for at most
// lateBound, even if the BMC stops meanwhile (only the bridge's exit ends
// it). A power-on retried after an unanswered one is safe: a VM already on
// is success. A later power action of the client's supersedes it. The log
// and the event log say when it is delayed and when it is given up.
func (v *VM) cyclePowerOn() {
	ctx, stop := lateCtx()
	v.cycleMu.Lock()
	if v.cycleStop != nil {
		v.cycleStop()
	}
	v.cycleStop = stop
	v.cycleMu.Unlock()
	v.follow(func() {
		defer stop()
		wait := cycleRetry
		delayed := false
		for attempt := 1; ; attempt++ {
			err := v.lockCtx(ctx)
			if err == nil {
				err = v.cycleOnce(ctx)
				v.mu.Unlock()
			}
			switch {
			case err == nil:
				if delayed {
					v.log.Warn("power cycle: VM powered on again after vCenter answered", "attempts", attempt)
				}
				return
			case ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.DeadlineExceeded):
				v.log.Info("power cycle: pending power-on superseded by a later power action")
				return
			case ctx.Err() != nil:
				v.events.Add(machine.EventPowerOff, "power cycle: power-on given up, vCenter did not answer")
				v.log.Error("power cycle: power-on given up: vCenter did not answer; the VM stays off", "for", lateBound, "err", err)
				return
			case !errors.Is(err, machine.ErrUnavailable) && !errors.Is(err, machine.ErrBusy) && !errors.Is(err, errOutcomeUnknown):
				v.events.Add(machine.EventPowerOff, "power cycle: power-on refused by vCenter")
				v.log.Error("power cycle: power on refused by vCenter; the VM stays off", "err", err)
				return
			case !delayed:
				delayed = true
				v.events.Add(machine.EventPowerOff, "power cycle: power-on delayed, vCenter not answering; retrying")
				v.log.Warn("power cycle: power-on not done yet (vCenter not answering); retrying", "err", err)
			default:
				v.log.Debug("power cycle: power-on still not done; retrying", "attempt", attempt, "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, cycleMaxRetry)
		}
	})
}

// cycleOnce is one attempt at a power cycle's power-on. v.mu must be held.
func (v *VM) cycleOnce(ctx context.Context) error {
	if err := v.inv.Available(); err != nil {
		return err
	}
	if w := v.settle.pending(); w != "" {
		return fmt.Errorf("an earlier %s is not settled yet: %w", w, machine.ErrBusy)
	}
	if err := v.pendingFirmware(ctx, machine.PowerOff); err != nil {
		return err
	}
	vd, err := v.runTask(ctx, "power on of a power cycle", v.obj.PowerOn, nil)
	switch {
	case vd == done:
		v.reached(ctx, machine.PowerOn)
		return nil
	case vd == refused && fault.Is(err, &types.InvalidPowerState{}):
		return nil // on already: an earlier attempt got through
	case vd == refused:
		return mapError(err)
	case vd == unknown:
		// Followed by runTask; the VM's actions are busy until it ends,
		// and so is the next attempt, which then finds the VM on.
		return fmt.Errorf("%w: %v", machine.ErrBusy, err)
	}
	return err
}

// supersedeCycle ends a power cycle's pending power-on: a later action
// of the client's (not the cycle's own retransmission, answered before)
// decides the VM's power now.
func (v *VM) supersedeCycle() {
	v.cycleMu.Lock()
	defer v.cycleMu.Unlock()
	if v.cycleStop != nil {
		v.cycleStop()
		v.cycleStop = nil
	}
}

func isKind(err, kind error) bool { return errors.Is(mapError(err), kind) }

// waitPower polls the inventory (memory, not vCenter) until the VM is in
// state want or d has passed, and reports whether it got there.
func (v *VM) waitPower(ctx context.Context, want machine.PowerState, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if s, err := v.PowerState(ctx); err == nil && s == want {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// BootOverride implements machine.Machine. Mode reports the firmware the
// VM will boot with next: a pending change, else the configured one.
func (v *VM) BootOverride(context.Context) (machine.BootOverride, error) {
	vm, err := v.snapshot()
	if err != nil {
		return machine.BootOverride{}, err
	}
	rec := v.record()
	o := rec.Override
	fw := vm.Config.Firmware
	if rec.PendingFirmware != "" {
		fw = rec.PendingFirmware
	}
	o.Mode = bootMode(fw)
	return o, nil
}

// SetBootOverride implements machine.Machine: pxe, disk and cdrom move that
// device class to the front of the VM's boot order, bios asks for BIOS
// setup at the next boot, and the mode switches the firmware when
// FollowEFIBit says so (see planFirmware: at once when the VM is off; else
// before the next power-on, since vSphere refuses a firmware change on a
// running VM). A one-time override remembers the boot order and firmware
// it replaced and puts them back once the VM has booted; clearing the
// override before that boot puts them back at once.
//
// The answer follows the power actions' rules (power.go): the lock and the
// sign of life fit the reply budget, the reconfiguration is sent only to a
// live vCenter, success means vCenter's task succeeded, and the record is
// the new one only then (it is written ahead, so that a restart during the
// task still knows what to restore, and put back when the task failed).
func (v *VM) SetBootOverride(ctx context.Context, o machine.BootOverride) error {
	ctx, vm, release, err := v.beginAction(ctx)
	if err != nil {
		return err
	}
	defer release()
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	bo := types.VirtualMachineBootOptions{}
	if vm.Config.BootOptions != nil {
		bo = *vm.Config.BootOptions // bootOptions is replaced whole, never merged
	}
	rec := v.record()
	if rec.OneTime {
		// Every override starts from the persistent order, not from the
		// one-time order still in place.
		bo.BootOrder = decodeOrder(devices, rec.Restore)
	}
	off := powerState(vm.Runtime.PowerState) == machine.PowerOff
	fw := planFirmware(v.opts.FollowEFIBit, o, vm.Config.Firmware, off, &rec)
	v.recMu.Lock()
	onceAt := v.onceAt
	v.recMu.Unlock()
	if o.Enabled && !o.Persistent {
		if !rec.OneTime {
			rec.OneTime, rec.Restore = true, encodeOrder(bo.BootOrder)
		}
		onceAt = time.Now()
	} else {
		rec.OneTime, rec.Restore = false, nil
	}
	bo.EnterBIOSSetup = types.NewBool(o.Enabled && o.Device == machine.BootBIOSSetup)
	spec := types.VirtualMachineConfigSpec{BootOptions: &bo, Firmware: fw}
	if o.Enabled {
		if class := bootClass(o.Device); class != "" {
			order, err := bootOrder(devices, bo.BootOrder, class)
			if err != nil {
				return fmt.Errorf("vm %s: boot from %s: %w", vm.Name, o.Device, err)
			}
			bo.BootOrder = order
		}
	}
	rec.Override = o
	rec.Override.Mode = machine.BootModeUnspecified
	if err := v.persist(rec); err != nil {
		return err
	}
	applied := func(rec Record) {
		v.recMu.Lock()
		v.rec, v.onceAt = rec, onceAt
		v.recMu.Unlock()
		rctx, cancel := context.WithTimeout(context.Background(), inventoryLag)
		_ = v.inv.Refresh(rctx, v.obj.Reference())
		cancel()
		v.events.Add(machine.EventBootOverride, o.String())
	}
	reconfigure := func(rec Record, spec types.VirtualMachineConfigSpec) (verdict, error) {
		return v.runTask(ctx, "set boot options", func(ctx context.Context) (*object.Task, error) {
			return v.obj.Reconfigure(ctx, spec)
		}, func(err error) {
			// Followed after an "outcome unknown" answer: the record
			// becomes what vCenter did. v.mu is not held here; the VM's
			// actions are busy until this returns.
			if err == nil {
				applied(rec)
				v.log.Warn("boot override whose outcome was answered unknown was applied", "override", o.String())
				return
			}
			_ = v.persist(v.record())
		})
	}
	vd, err := reconfigure(rec, spec)
	if vd == refused && spec.Firmware != "" && isKind(err, machine.ErrInvalidState) {
		// The VM was powered on after the inventory last said so: the
		// firmware waits for the next power-on after all.
		rec.PendingFirmware, spec.Firmware = spec.Firmware, ""
		if err = v.persist(rec); err != nil {
			_ = v.persist(v.record())
			return err
		}
		vd, err = reconfigure(rec, spec)
	}
	switch vd {
	case done:
	case unknown:
		return err // the record follows the task (above)
	case refused:
		_ = v.persist(v.record()) // the VM did not change: neither does the record
		v.log.Error("vCenter task failed", "task", "set boot options", "err", mapError(err))
		return fmt.Errorf("vm %s: set boot options: %w", v.name(), mapError(err))
	default:
		_ = v.persist(v.record())
		return err
	}
	applied(rec)
	attrs := []any{"override", o.String()}
	if spec.Firmware != "" {
		attrs = append(attrs, "firmware", spec.Firmware)
	}
	if rec.PendingFirmware != "" {
		attrs = append(attrs, "firmware_at_next_power_on", rec.PendingFirmware)
	}
	if o.Enabled && o.Mode != machine.BootModeUnspecified && !v.opts.FollowEFIBit.follows(o) {
		attrs = append(attrs, "firmware_kept", "boot.followEfiBit is "+string(cmp.Or(v.opts.FollowEFIBit, FollowPersistent)))
	}
	v.log.Info("boot override set", attrs...)
	return nil
}

func (v *VM) persist(rec Record) error {
	if v.opts.Persist == nil {
		return nil
	}
	if err := v.opts.Persist(rec); err != nil {
		return fmt.Errorf("vm %s: saving boot state: %w", v.name(), err)
	}
	return nil
}

// record returns a copy of the VM's saved state.
func (v *VM) record() Record {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	return v.rec
}

// save records and persists rec after the VM changed; a failed write is
// logged, since the VM cannot be changed back.
func (v *VM) save(rec Record) {
	v.recMu.Lock()
	v.rec = rec
	v.recMu.Unlock()
	if err := v.persist(rec); err != nil {
		v.log.Error("boot state not saved; it will be lost if the bridge restarts", "err", err)
	}
}

// booted handles a boot of the VM: a one-time override has been used, so
// the boot order it replaced comes back, BIOS setup is no longer asked for
// and the override is cleared, as a real BMC clears the boot flags' valid
// bit. at is when the boot became known; seenOnly marks a boot learnt from
// runtime.bootTime alone, which the bridge's own reset already handled.
func (v *VM) booted(at time.Time, seenOnly bool) {
	v.background(func() {
		if v.opts.BootHold > 0 {
			select {
			case <-v.life.Done():
				return
			case <-time.After(v.opts.BootHold):
			}
		}
		v.mu.Lock()
		duplicate := seenOnly && time.Since(v.lastBoot) < duplicateWindow
		if !duplicate {
			if seenOnly {
				v.events.Add(machine.EventReset, "seen in vCenter")
			}
			v.lastBoot = time.Now()
		}
		v.mu.Unlock()
		if duplicate {
			return
		}
		// vCenter may be away for a moment: keep trying, as a BMC would
		// until its boot flags are cleared.
		for attempt := 0; ; attempt++ {
			v.mu.Lock()
			v.recMu.Lock()
			pending := v.rec.OneTime && !at.Before(v.onceAt)
			v.recMu.Unlock()
			var err error
			if pending {
				err = v.restore()
			}
			v.mu.Unlock()
			switch {
			case err == nil:
				return
			case !errors.Is(err, machine.ErrUnavailable) || attempt == restoreAttempts-1:
				v.log.Error("one-time boot override not cleared after boot", "err", err)
				return
			}
			select {
			case <-v.life.Done():
				return
			case <-time.After(restoreRetry):
			}
		}
	})
}

// A one-time override's restore is retried this often while vCenter is
// unreachable (ten minutes in all).
const (
	restoreAttempts = 60
	restoreRetry    = 10 * time.Second
)

// restore puts back the boot order and firmware saved by a one-time
// override. v.mu must be held.
func (v *VM) restore() error {
	ctx, cancel := context.WithTimeout(v.life, callTimeout)
	defer cancel()
	vm, err := v.snapshot()
	if err != nil {
		return err
	}
	bo := types.VirtualMachineBootOptions{}
	if vm.Config.BootOptions != nil {
		bo = *vm.Config.BootOptions
	}
	rec := v.record()
	bo.BootOrder = decodeOrder(object.VirtualDeviceList(vm.Config.Hardware.Device), rec.Restore)
	bo.EnterBIOSSetup = types.NewBool(false)
	spec := types.VirtualMachineConfigSpec{BootOptions: &bo}
	if restoreFW := rec.RestoreFirmware; restoreFW != "" {
		// The VM has booted with the one-time firmware; the one it
		// replaced is for every later boot. A VM still on (the usual
		// case) gets it before its next power-on.
		effective := cmp.Or(rec.PendingFirmware, vm.Config.Firmware)
		off := powerState(vm.Runtime.PowerState) == machine.PowerOff
		spec.Firmware = setFirmware(restoreFW, effective, vm.Config.Firmware, off, &rec)
	}
	// waitTask, never govmomi's Task.Wait: that one destroys its
	// collector without a deadline and, on a hung vCenter, would hold
	// v.mu for ever. A restore whose outcome is unknown is simply retried
	// (booted): putting the same order back twice is harmless.
	reconfigure := func(spec types.VirtualMachineConfigSpec) error {
		if err := v.ready(ctx, "restore of the boot order"); err != nil {
			return err
		}
		task, err := v.obj.Reconfigure(ctx, spec)
		if err == nil {
			err = v.waitTask(ctx, task)
		}
		return err
	}
	err = reconfigure(spec)
	if err != nil && spec.Firmware != "" && isFault(err) && isKind(err, machine.ErrInvalidState) {
		// Powered on since the inventory last said off.
		rec.PendingFirmware, spec.Firmware = spec.Firmware, ""
		err = reconfigure(spec)
	}
	if err != nil {
		return mapError(err)
	}
	restoredFW := rec.RestoreFirmware
	rec.OneTime, rec.Restore, rec.RestoreFirmware, rec.Override = false, nil, "", machine.BootOverride{}
	v.save(rec)
	_ = v.inv.Refresh(ctx, v.obj.Reference())
	v.events.Add(machine.EventBootOverride, "one-time override used by the boot; cleared")
	if restoredFW != "" {
		v.log.Info("one-time boot override used; boot order and firmware restored", "firmware", restoredFW, "firmware_at_next_power_on", rec.PendingFirmware)
		return nil
	}
	v.log.Info("one-time boot override used; boot order restored")
	return nil
}
