package vsphere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
	// Media is the virtual-media policy the VMs share (limits, TLS,
	// networks, collection); nil: the defaults, nothing recorded.
	Media *MediaService
	// ConsoleURI, when set, is the bridge's console concentrator as a
	// vSPC proxy URI ("telnet://host:port"): the VM gets a serial port
	// pointing there (console.go). Empty: the VM's serial ports are left
	// as they are.
	ConsoleURI string
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
	// ownBoot is when the bridge last booted the VM itself (a power-on or
	// a reset vCenter carried out), in Unix nanoseconds: the watcher's
	// report of that boot comes later, and must not count as a boot after
	// a one-time override set meanwhile (see booted).
	ownBoot  atomic.Int64
	lastBoot time.Time
	// settle: a power action told failed that vCenter may still run.
	settle settleState
	// onceAt is when the pending one-time override was set: a boot the
	// inventory learnt of before then cannot have used it.
	onceAt time.Time
	// cycleMu guards cycleStop, which ends a power cycle's pending
	// power-on: a later action of the client's supersedes it.
	cycleMu   sync.Mutex
	cycleStop context.CancelFunc
	// ids keeps the identity last derived from an inventory snapshot.
	ids idMemo
	// consoleKick wakes the console's reconciliation (watchConsole);
	// consoleFailures counts the port's changes that failed.
	consoleKick     chan struct{}
	consoleFailures atomic.Int64
}

// idMemo keeps the identity derived from one inventory snapshot. The
// inventory replaces a VM's snapshot on every change (copy on write), so
// the same snapshot means the same identity; Redfish reads one per GET.
// Its lock is a leaf: nothing else is taken under it.
type idMemo struct {
	mu  sync.Mutex
	src *mo.VirtualMachine
	id  machine.Identity
}

// of returns the identity of vm, derived again only when vm is not the
// snapshot it was last derived from.
func (m *idMemo) of(vm *mo.VirtualMachine) machine.Identity {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.src != vm {
		m.src, m.id = vm, identity(vm)
	}
	return m.id
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

		consoleKick: make(chan struct{}, 1),
	}
	v.log = opts.Log.With("vm", v.name())
	v.unwatch = inv.Watch(ref, v.observe)
	v.watchConsole()
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
	id := v.ids.of(vm)
	id.SerialConsole = consoleSet(vm.Config.Hardware.Device, v.opts.ConsoleURI)
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

// SerialConsole is nil: the console is the concentrator's, which the
// bridge attaches to the machines of the BMCs that offer one.
func (v *VM) SerialConsole() machine.SerialConsole { return nil }

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
	if c.From != c.To && c.To == machine.PowerOff {
		// vSphere changes serial ports only on a powered-off VM: one
		// seen off, whoever powered it off, may take the console's now.
		v.kickConsole()
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
			now := time.Now()
			v.ownBoot.Store(now.UnixNano())
			v.booted(now, false)
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
		v.awaitPower(ctx, machine.PowerOff, inventoryLag) // already off
		return nil
	case vd == refused:
		v.log.Error("vCenter task failed", "task", what, "err", mapError(err))
		return fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(err))
	}
	return err
}

// powerOn applies a pending firmware change and the console's pending
// serial port, then powers on (or resumes). v.mu must be held.
func (v *VM) powerOn(ctx context.Context, state machine.PowerState) error {
	if rec := v.record(); (rec.PendingFirmware != "" || rec.PendingSecureBoot != nil || v.consoleWaits(rec)) && state != machine.PowerOn {
		if err := v.pendingFirmware(ctx, state); err != nil {
			return err
		}
		// Each task may use the reply budget up: the next step gets its
		// own, for its sign of life and submission.
		base := context.WithoutCancel(ctx)
		cctx, ccancel := context.WithTimeout(base, v.opts.TaskWait)
		defer ccancel()
		if err := v.pendingConsole(cctx, state); err != nil {
			return err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(base, v.opts.TaskWait)
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
	vd, err := v.reconfigurePending(ctx, "set firmware "+fw+" before power-on", spec, applied)
	switch {
	case vd == done:
		v.log.Info("firmware changed before power-on", "firmware", fw, "secure_boot", sb != nil && *sb)
		return nil
	case vd == refused && isKind(err, machine.ErrInvalidState):
		return nil // running after all: the change keeps waiting
	case vd == refused:
		return fmt.Errorf("vm %s: set firmware %s before power-on: %w", v.name(), fw, mapError(err))
	}
	return err // not sent, or unknown: the power-on is not sent
}

// reconfigurePending sends spec, a change a Record holds as pending, and
// calls applied (which clears it) once vCenter's task succeeded: at once,
// or, when the answer is unknown, if the followed task succeeds later; a
// change done is waited for in the inventory (settled) before returning.
func (v *VM) reconfigurePending(ctx context.Context, what string, spec types.VirtualMachineConfigSpec, applied func()) (verdict, error) {
	vd, err := v.runTask(ctx, what, func(ctx context.Context) (*object.Task, error) {
		return v.obj.Reconfigure(ctx, spec)
	}, func(err error) {
		if err == nil {
			applied()
		}
	})
	if vd == done {
		applied()
		v.settled(ctx, what)
	}
	return vd, err
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
			if v.awaitPower(v.life, machine.PowerOff, v.opts.SoftOffTimeout) || v.life.Err() != nil {
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
	if err := v.settle.busy(v.name()); err != nil {
		return err
	}
	if err := v.pendingFirmware(ctx, machine.PowerOff); err != nil {
		return err
	}
	if err := v.pendingConsole(ctx, machine.PowerOff); err != nil {
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

// BootOverride implements machine.Machine. Mode reports the firmware the
// VM will boot with next: a pending change, else the configured one.
func (v *VM) BootOverride(context.Context) (machine.BootOverride, error) {
	vm, err := v.snapshot()
	if err != nil {
		return machine.BootOverride{}, err
	}
	rec := v.record()
	o := rec.Override
	o.Mode = machine.BootState{Firmware: bootMode(vm.Config.Firmware), PendingFirmware: recordMode(rec.PendingFirmware)}.NextFirmware()
	return o, nil
}

// SetBootOverride implements machine.Machine with machine.PlanBoot's
// rules, on vSphere: a device class moves to the front of the VM's boot
// order, BIOS setup is bootOptions.enterBIOSSetup, and a firmware change
// (FollowEFIBit) is made at once when the VM is off, else before its next
// power-on (pendingFirmware), since vSphere refuses one on a running VM.
// booted puts back what a one-time override replaced.
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
	rec, s := v.planState(vm)
	next, change, err := machine.PlanBoot(s, o)
	if err != nil {
		return fmt.Errorf("vm %s: boot from %s: %w", vm.Name, o.Device, err)
	}
	v.recMu.Lock()
	onceAt := v.onceAt
	v.recMu.Unlock()
	if next.OneTime {
		onceAt = time.Now()
	}
	b := bootChange{o: o, rec: rec.withBoot(next), onceAt: onceAt, spec: bootSpec(vm, change)}
	vd, err := v.reconfigureBoot(ctx, b)
	if vd == refused && b.spec.Firmware != "" && isKind(err, machine.ErrInvalidState) {
		// The VM was powered on after the inventory last said so: planned
		// for a running VM, the firmware waits for the next power-on.
		s.Off = false
		next, change, _ = machine.PlanBoot(s, o)
		b.rec, b.spec = rec.withBoot(next), bootSpec(vm, change)
		vd, err = v.reconfigureBoot(ctx, b)
	}
	switch vd {
	case done:
	case unknown:
		return err // the record follows the task (reconfigureBoot)
	case refused:
		v.restoreRecord() // the VM did not change: neither does the record
		v.log.Error("vCenter task failed", "task", "set boot options", "err", mapError(err))
		return fmt.Errorf("vm %s: set boot options: %w", v.name(), mapError(err))
	default:
		v.restoreRecord()
		return err
	}
	v.bootApplied(b)
	v.logBootOverride(b)
	return nil
}

// bootChange is a boot override on its way to vCenter: the record it
// leaves, when its one-time override was set, and the reconfiguration.
type bootChange struct {
	o      machine.BootOverride
	rec    Record
	onceAt time.Time
	spec   types.VirtualMachineConfigSpec
}

// reconfigureBoot saves b's record, ahead of the change, and sends b's
// reconfiguration. A failed save sends nothing. A task followed after an
// "outcome unknown" answer makes the record what vCenter did; v.mu is not
// held then, and the VM's actions are busy until it returns.
func (v *VM) reconfigureBoot(ctx context.Context, b bootChange) (verdict, error) {
	if err := v.persist(b.rec); err != nil {
		return notSent, err
	}
	return v.runTask(ctx, "set boot options", func(ctx context.Context) (*object.Task, error) {
		return v.obj.Reconfigure(ctx, b.spec)
	}, func(err error) {
		if err == nil {
			v.bootApplied(b)
			v.log.Warn("boot override whose outcome was answered unknown was applied", "override", b.o.String())
			return
		}
		v.restoreRecord()
	})
}

// bootApplied makes b's record the VM's, once vCenter has applied b.
func (v *VM) bootApplied(b bootChange) {
	v.recMu.Lock()
	v.rec, v.onceAt = b.rec, b.onceAt
	v.recMu.Unlock()
	v.settled(context.Background(), "boot override")
	v.events.Add(machine.EventBootOverride, b.o.String())
}

// logBootOverride logs an applied override and what it did to the
// firmware, naming the policy when that kept the firmware the client
// asked to change.
func (v *VM) logBootOverride(b bootChange) {
	attrs := []any{"override", b.o.String()}
	if b.spec.Firmware != "" {
		attrs = append(attrs, "firmware", b.spec.Firmware)
	}
	if b.rec.PendingFirmware != "" {
		attrs = append(attrs, "firmware_at_next_power_on", b.rec.PendingFirmware)
	}
	if b.o.Enabled && b.o.Mode != machine.BootModeUnspecified && !v.opts.FollowEFIBit.Follows(b.o) {
		attrs = append(attrs, "firmware_kept", "boot.followEfiBit is "+string(cmp.Or(v.opts.FollowEFIBit, FollowPersistent)))
	}
	v.log.Info("boot override set", attrs...)
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

// restoreRecord writes the record in force again after a change saved
// ahead of vCenter did not happen; a failed write is logged: the file
// then says what was asked, which the next change or restart corrects.
func (v *VM) restoreRecord() {
	if err := v.persist(v.record()); err != nil {
		v.log.Error("boot state not restored on disk after a change vCenter refused", "err", err)
	}
}

// settled waits, at most inventoryLag, until the inventory shows the VM's
// own change just made, so that the next read reports it. A lagging
// watcher is logged, not returned: vCenter did apply the change.
func (v *VM) settled(ctx context.Context, what string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inventoryLag)
	defer cancel()
	if err := v.inv.Refresh(rctx, v.obj.Reference()); err != nil {
		v.log.Warn("the inventory has not shown the change yet", "change", what, "err", err)
	}
}

// record returns a copy of the VM's saved state.
func (v *VM) record() Record {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	return v.rec
}

// setRecord makes rec the record in force. It exists so that every change
// of the record, whichever order it is saved in, takes recMu the same way.
func (v *VM) setRecord(rec Record) {
	v.recMu.Lock()
	v.rec = rec
	v.recMu.Unlock()
}

// persistRecord saves rec and only then makes it the record in force, so
// that a setting the VM does not show yet (a secure-boot change for the
// next power-on, media verification) is in force only once the state
// file keeps it: a failed save changes nothing and is returned.
func (v *VM) persistRecord(rec Record) error {
	if err := v.persist(rec); err != nil {
		return err
	}
	v.setRecord(rec)
	return nil
}

// save records and persists rec after the VM changed; a failed write is
// logged, since the VM cannot be changed back.
func (v *VM) save(rec Record) {
	v.setRecord(rec)
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
	if own := time.Unix(0, v.ownBoot.Load()); !seenOnly && !at.Before(own) && at.Sub(own) < duplicateWindow {
		// The watcher reporting the bridge's own boot, perhaps after a
		// one-time override was set: the boot happened before it.
		at = own
	}
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

// restore puts back, with machine.PlanBooted, the boot order and firmware
// saved by a one-time override. v.mu must be held.
func (v *VM) restore() error {
	ctx, cancel := context.WithTimeout(v.life, callTimeout)
	defer cancel()
	vm, err := v.snapshot()
	if err != nil {
		return err
	}
	rec, s := v.planState(vm)
	next, change, ok := machine.PlanBooted(s)
	if !ok {
		return nil
	}
	err = v.reconfigureRestore(ctx, bootSpec(vm, change))
	if err != nil && change.Firmware != machine.BootModeUnspecified && isFault(err) && isKind(err, machine.ErrInvalidState) {
		// Powered on since the inventory last said off: the firmware
		// waits for the next power-on.
		s.Off = false
		next, change, _ = machine.PlanBooted(s)
		err = v.reconfigureRestore(ctx, bootSpec(vm, change))
	}
	if err != nil {
		return mapError(err)
	}
	// The record says the override is used only once reads show the
	// order it put back: a client polling for one finds the other.
	v.settled(ctx, "boot order restore")
	v.save(rec.withBoot(next))
	v.events.Add(machine.EventBootOverride, "one-time override used by the boot; cleared")
	if rec.RestoreFirmware != "" {
		v.log.Info("one-time boot override used; boot order and firmware restored", "firmware", rec.RestoreFirmware, "firmware_at_next_power_on", firmware(next.PendingFirmware))
		return nil
	}
	v.log.Info("one-time boot override used; boot order restored")
	return nil
}

// reconfigureRestore sends a restore's reconfiguration and waits for its
// task. waitTask, never govmomi's Task.Wait: that one destroys its
// collector without a deadline and, on a hung vCenter, would hold v.mu for
// ever. A restore whose outcome is unknown is simply retried (booted):
// putting the same order back twice is harmless.
func (v *VM) reconfigureRestore(ctx context.Context, spec types.VirtualMachineConfigSpec) error {
	if err := v.ready(ctx, "restore of the boot order"); err != nil {
		return err
	}
	task, err := v.obj.Reconfigure(ctx, spec)
	if err == nil {
		err = v.waitTask(ctx, task)
	}
	return err
}
