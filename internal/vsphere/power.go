package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	gtask "github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// An action's answer is the truth about it (issue 10):
//
//   - Nothing is sent to a vCenter known to be unresponsive, nor without a
//     fresh sign of life (probe); then the answer is machine.ErrUnavailable
//     (C0h) and nothing happened.
//   - Once sent, the answer waits for vCenter's verdict: success only when
//     the task succeeded (or a synchronous call returned), a failure only
//     when vCenter refused the call or the task failed or was cancelled.
//     The wait is bounded by verdictWait; the IPMI layer answers the
//     client's retransmissions meanwhile with the final answer.
//   - A power-on is the one action that can be undone: when its
//     submission is not even answered within the reply budget, or its task
//     has no verdict at verdictWait, the answer is machine.ErrUnavailable
//     and the bridge follows it, cancelling it or powering the VM off again
//     if vCenter carries it out after all.
//   - Any other action (power off, reset, cycle, guest shutdown or reboot,
//     NMI, boot configuration) without a verdict at verdictWait is answered
//     with errOutcomeUnknown, which maps to no machine error kind (IPMI FFh
//     "unspecified error", Redfish 500), never C0h: the bridge cannot say
//     it did not happen. Waiting longer would not help the client (ipmitool
//     and Ironic have given up long before 30 s) and a reply must not be
//     held for ever. The task is followed in the background (at most
//     lateBound), its outcome logged, and the VM's power actions answer
//     busy until it is settled, so that nothing runs behind a later answer.
const (
	// probeTimeout bounds the sign of life asked for just before an
	// action is submitted.
	probeTimeout = 250 * time.Millisecond
	// verdictWait bounds the wait for vCenter's verdict on an action sent.
	verdictWait = 30 * time.Second
	// lateBound is how long an action without a verdict is followed in
	// the background, to log (and for a power-on, undo) its outcome.
	lateBound = 10 * time.Minute
	// closeGrace is how long Close waits for background work; followers
	// still running then finish on their own.
	closeGrace = 2 * time.Second
)

// errOutcomeUnknown marks an answer that cannot say whether the action
// happened. It wraps no machine error on purpose: C0h would say it did not.
var errOutcomeUnknown = errors.New("outcome unknown: vCenter was sent the action and has not said whether it was carried out; it is followed and its outcome logged: check the VM")

// unsettled is what a VM's power actions wait for: an action answered
// before vCenter said how it ended, followed in the background. Its value
// names it in the busy answer ("an earlier task is not settled yet").
type unsettled string

const (
	// unsettledNone: nothing is followed.
	unsettledNone unsettled = ""
	// unsettledTask: a task answered "outcome unknown" (runTask), whose
	// outcome is logged when it ends.
	unsettledTask unsettled = "task"
	// unsettledPowerOn: a power-on answered unavailable (followLate),
	// cancelled or undone if vCenter carries it out after all.
	unsettledPowerOn unsettled = "power-on"
)

// settleState tracks an action whose client was told it failed while
// vCenter may still carry it out: until that is settled, further power
// actions on the VM are refused at once (busy), so that nothing runs
// behind the client's back.
type settleState struct {
	mu   sync.Mutex
	what unsettled
	// hook, in tests, runs after the sign of life and before submission.
	hook func()
	// expected: a power state confirmed and logged before the watcher
	// delivered it.
	expected machine.PowerState
}

// expect notes a power state whose event is already logged, so that the
// watcher's delivery of it is not logged twice.
func (s *settleState) expect(p machine.PowerState) {
	s.mu.Lock()
	s.expected = p
	s.mu.Unlock()
}

// seen reports whether the transition to p was expected (and so logged).
func (s *settleState) seen(p machine.PowerState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.expected
	s.expected = machine.PowerUnknown
	return e != machine.PowerUnknown && (e == p || (e == machine.PowerOff && p != machine.PowerOn))
}

func (s *settleState) pending() unsettled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.what
}

func (s *settleState) set(what unsettled) {
	s.mu.Lock()
	s.what = what
	s.mu.Unlock()
}

// busy is nil when nothing is followed, else the answer to a power action
// on the VM named name meanwhile.
func (s *settleState) busy(name string) error {
	if w := s.pending(); w != unsettledNone {
		return fmt.Errorf("vm %s: an earlier %s is not settled yet (vCenter has not said how it ended): %w", name, w, machine.ErrBusy)
	}
	return nil
}

// beginAction starts an action on the VM within the reply budget
// (TaskWait, the returned context's deadline): nothing is sent to a
// vCenter known to be unavailable, v.mu is taken before the budget ends
// (lockAction), and the VM is read once the lock is held. On success the
// caller holds v.mu and calls release, which frees it and the budget.
func (v *VM) beginAction(ctx context.Context) (_ context.Context, _ *mo.VirtualMachine, release func(), _ error) {
	ctx, cancel := context.WithTimeout(ctx, v.opts.TaskWait)
	if _, err := v.snapshot(); err != nil {
		cancel()
		return nil, nil, nil, err // vCenter known unavailable: nothing is sent
	}
	if err := v.lockAction(ctx); err != nil {
		cancel()
		return nil, nil, nil, err
	}
	vm, err := v.snapshot()
	if err != nil {
		v.mu.Unlock()
		cancel()
		return nil, nil, nil, err
	}
	return ctx, vm, func() { v.mu.Unlock(); cancel() }, nil
}

// lockAction takes v.mu before ctx ends; a VM whose earlier action is
// unsettled, or busy past the reply budget, is machine.ErrBusy. The
// unsettled check is repeated once the lock is held: an action followed in
// the background may have been marked unsettled meanwhile.
func (v *VM) lockAction(ctx context.Context) error {
	if err := v.settle.busy(v.name()); err != nil {
		return err
	}
	if err := v.lockCtx(ctx); err != nil {
		return err
	}
	if err := v.settle.busy(v.name()); err != nil {
		v.mu.Unlock()
		return err
	}
	return nil
}

// lockCtx takes v.mu before ctx ends, else answers machine.ErrBusy: a
// request with a deadline never waits on an action for longer.
func (v *VM) lockCtx(ctx context.Context) error {
	for !v.mu.TryLock() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("vm %s: another action is still running: %w", v.name(), machine.ErrBusy)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// ready checks, before what is sent, that vCenter is available and gives
// a sign of life within ctx; nothing has been sent when it fails. It then
// notes the VM's configuration version, for Refresh after the action.
func (v *VM) ready(ctx context.Context, what string) error {
	if err := v.inv.Available(); err != nil {
		return fmt.Errorf("vm %s: %s not sent: %w", v.name(), what, err)
	}
	if err := v.inv.probe(ctx); err != nil {
		return fmt.Errorf("vm %s: %s not sent: %w", v.name(), what, err)
	}
	if h := v.settle.hook; h != nil {
		h()
	}
	v.inv.sending(v.obj.Reference())
	return nil
}

// verdictCtx is the context an action sent waits for its verdict under:
// the request's values, not its cancellation (the client leaving does not
// make the action not happen), and verdictWait.
func verdictCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), verdictWait)
}

// lateCtx bounds a follower: it outlives the request and the VM (a BMC
// stopped meanwhile), never lateBound.
func lateCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), lateBound)
}

// verdict is what vCenter said of an action sent.
type verdict int

const (
	// done: the task succeeded, or the call returned.
	done verdict = iota
	// refused: a vCenter fault, or the task failed or was cancelled;
	// nothing happened. The error is the fault, unmapped.
	refused
	// notSent: vCenter was not ready or could not be reached.
	notSent
	// unknown: sent, and no verdict within verdictWait.
	unknown
)

// isFault reports whether err is vCenter's answer (a SOAP fault or a
// task's fault), as opposed to a transport error or a deadline.
func isFault(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if soap.IsSoapFault(e) || soap.IsVimFault(e) {
			return true
		}
		if _, ok := e.(gtask.Error); ok {
			return true
		}
		if errors.Is(e, errTaskNoFault) {
			return true
		}
	}
	return false
}

// unsent reports a transport error that certainly kept the request from
// vCenter: the connection could not even be made.
func unsent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// classify names the verdict of a call's error.
func classify(err error) verdict {
	switch {
	case err == nil:
		return done
	case isFault(err):
		return refused
	case unsent(err):
		return notSent
	}
	return unknown
}

// send makes a synchronous call (guest shutdown or reboot, NMI) after a
// sign of life and waits for its answer up to verdictWait. It returns the
// verdict and, for refused, vCenter's fault unmapped.
func (v *VM) send(ctx context.Context, what string, call func(context.Context) error) (verdict, error) {
	if err := v.ready(ctx, what); err != nil {
		return notSent, err
	}
	vctx, cancel := verdictCtx(ctx)
	defer cancel()
	err := call(vctx)
	switch vd := classify(err); vd {
	case done, refused:
		return vd, err
	case notSent:
		return notSent, fmt.Errorf("vm %s: %s not sent: %w", v.name(), what, mapError(err))
	}
	v.log.Error("action sent to vCenter without an answer; its outcome is unknown: check the VM", "action", what, "waited", verdictWait, "err", err)
	return unknown, fmt.Errorf("vm %s: %s: %w (%v)", v.name(), what, errOutcomeUnknown, err)
}

// runTask submits a task (call) after a sign of life and waits for its
// verdict up to verdictWait. A task without a verdict then is cancelled if
// vCenter allows (and answered refused when it reads cancelled), else
// followed in the background: late, when set, gets its outcome, and the
// VM's power actions are busy until then. For refused, the error is the
// fault unmapped; otherwise it is ready to answer.
func (v *VM) runTask(ctx context.Context, what string, call func(context.Context) (*object.Task, error), late func(error)) (verdict, error) {
	if err := v.ready(ctx, what); err != nil {
		return notSent, err
	}
	vctx, cancel := verdictCtx(ctx)
	defer cancel()
	task, err := call(vctx)
	if err != nil {
		switch vd := classify(err); vd {
		case refused:
			return refused, err
		case notSent:
			return notSent, fmt.Errorf("vm %s: %s not sent: %w", v.name(), what, mapError(err))
		}
		// No task reference: nothing to follow.
		v.log.Error("task submitted to vCenter without an answer; its outcome is unknown: check the VM", "task", what, "waited", verdictWait, "err", err)
		return unknown, fmt.Errorf("vm %s: %s: %w (%v)", v.name(), what, errOutcomeUnknown, err)
	}
	err = v.waitTask(vctx, task)
	if vd := classify(err); vd == done || vd == refused {
		return vd, err
	}
	// No verdict within verdictWait.
	if v.cancelled(task) {
		v.log.Warn("vCenter task without a verdict; cancelled: nothing happened", "task", what, "waited", verdictWait)
		return refused, fmt.Errorf("vm %s: %s not carried out by vCenter within %v; cancelled: %w", v.name(), what, verdictWait, machine.ErrUnavailable)
	}
	v.log.Error("vCenter task without a verdict; its outcome is unknown until it ends: following it", "task", what, "waited", verdictWait, "err", mapError(err))
	v.settle.set(unsettledTask)
	v.follow(func() {
		defer v.settle.set(unsettledNone)
		lctx, cancel := lateCtx()
		defer cancel()
		err := v.waitTask(lctx, task)
		switch {
		case err == nil:
			v.log.Warn("vCenter task whose outcome was answered unknown was carried out", "task", what)
		case isFault(err):
			v.log.Warn("vCenter task whose outcome was answered unknown failed: nothing happened", "task", what, "err", mapError(err))
		default:
			v.log.Error("vCenter never said how a task ended; its outcome is unknown: check the VM", "task", what, "err", mapError(err))
		}
		if late != nil {
			late(err)
		}
	})
	return unknown, fmt.Errorf("vm %s: %s: %w", v.name(), what, errOutcomeUnknown)
}

// cancelled cancels a task vCenter says is cancellable and reports whether
// it then reads cancelled. A task vCenter does not call cancellable (power
// tasks never are) is left alone: cancelling it would at best do nothing.
func (v *VM) cancelled(task *object.Task) bool {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var t mo.Task
	if err := property.DefaultCollector(v.inv.c.vim).RetrieveOne(ctx, task.Reference(), []string{"info"}, &t); err != nil || !t.Info.Cancelable {
		return false
	}
	if _, err := methods.CancelTask(ctx, v.inv.c.vim, &types.CancelTask{This: task.Reference()}); err != nil {
		return false
	}
	return fault.Is(v.waitTask(ctx, task), &types.RequestCanceled{})
}

// submitTask submits a power-on (call) and waits for vCenter's verdict.
// It is runTask for the one action that can be undone: a submission not
// answered within ctx's deadline (the reply budget), or a task without a
// verdict at verdictWait, is answered machine.ErrUnavailable and followed
// in the background, its task cancelled or the VM powered off again when
// vCenter carries it out after all.
func (v *VM) submitTask(ctx context.Context, a machine.PowerAction, what string, want machine.PowerState, call func(context.Context) (*object.Task, error)) (*object.Task, error) {
	if err := v.ready(ctx, what); err != nil {
		return nil, err
	}
	type result struct {
		task *object.Task
		err  error
	}
	ch := make(chan result, 1)
	// The submission outlives the reply: if vCenter answers late, the
	// task it started must be found to be cancelled or undone.
	sctx, scancel := lateCtx()
	go func() {
		t, err := call(sctx)
		ch <- result{t, err}
	}()
	var r result
	select {
	case r = <-ch:
		scancel()
	case <-ctx.Done():
		v.followLate(a, func() (*object.Task, error) { defer scancel(); r := <-ch; return r.task, r.err })
		return nil, fmt.Errorf("vm %s: %s not acknowledged by vCenter in time; it will be cancelled or undone if vCenter carries it out later: %w", v.name(), what, machine.ErrUnavailable)
	}
	if r.err != nil {
		if classify(r.err) == unknown {
			// Sent, unanswered, and no task to follow: all a later
			// power-on can mean is "already on", which the next power
			// on of the client sees.
			v.log.Error("power-on submitted without an answer; its outcome is unknown: check the VM", "err", r.err)
			return nil, fmt.Errorf("vm %s: %s: %w (%v)", v.name(), what, errOutcomeUnknown, r.err)
		}
		return nil, fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(r.err))
	}
	vctx, cancel := verdictCtx(ctx)
	defer cancel()
	err := v.waitTask(vctx, r.task)
	switch classify(err) {
	case done:
		v.reached(ctx, want)
		return r.task, nil
	case refused:
		if fault.Is(err, &types.InvalidPowerState{}) {
			// Already on (not merely an invalid state, such as a host
			// in maintenance mode: that is a refusal).
			v.awaitPower(ctx, want, inventoryLag)
			return r.task, nil
		}
		v.log.Error("vCenter task failed", "task", what, "err", mapError(err))
		return nil, fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(err))
	}
	v.followLate(a, func() (*object.Task, error) { return r.task, nil })
	return nil, fmt.Errorf("vm %s: %s not carried out by vCenter within %v; it will be cancelled or undone if vCenter carries it out later: %w", v.name(), what, verdictWait, machine.ErrUnavailable)
}

// reached makes reads and the event log show the power state want that a
// task of the bridge's reached, if the watcher has not delivered it yet,
// so that the next read after the answer is true.
func (v *VM) reached(ctx context.Context, want machine.PowerState) {
	if want == machine.PowerOn {
		v.ownBoot.Store(time.Now().UnixNano())
	}
	if want == machine.PowerUnknown || v.awaitPower(ctx, want, inventoryLag) {
		return
	}
	v.inv.confirm(v.obj.Reference(), vimPower(want))
	v.settle.expect(want)
	if want == machine.PowerOn {
		v.events.Add(machine.EventPowerOn, "")
	} else {
		v.events.Add(machine.EventPowerOff, machine.PowerOff.String())
	}
}

// awaitPower waits, at most d and within ctx, until reads show the VM in
// state want, and reports whether they do. The watcher's update of the VM
// wakes it (Inventory.await): it asks vCenter nothing.
func (v *VM) awaitPower(ctx context.Context, want machine.PowerState, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return v.inv.await(ctx, v.obj.Reference(), func(vm *mo.VirtualMachine) bool {
		return powerState(vm.Runtime.PowerState) == want
	}) == nil
}

// follow runs fn on its own goroutine, even on a closed VM: followers
// settle actions already answered. Close waits for them only closeGrace.
func (v *VM) follow(fn func()) {
	v.bgMu.Lock()
	defer v.bgMu.Unlock()
	if v.closed {
		go fn()
		return
	}
	v.bg.Add(1)
	go func() {
		defer v.bg.Done()
		fn()
	}()
}

// followLate settles, in the background, a power-on its client was told
// failed: wait for vCenter's answer (result), cancel the task, and undo
// the power-on if vCenter carried it out after all. Until then the VM's
// power actions are refused as busy.
func (v *VM) followLate(a machine.PowerAction, result func() (*object.Task, error)) {
	v.settle.set(unsettledPowerOn)
	v.log.Warn("power action answered unavailable; following it until vCenter settles it", "action", a)
	v.follow(func() {
		defer v.settle.set(unsettledNone)
		v.settleLate(a, result)
	})
}

func (v *VM) settleLate(a machine.PowerAction, result func() (*object.Task, error)) {
	task, err := result()
	if err != nil {
		if classify(err) == unknown {
			v.log.Error("vCenter never answered a power action its client was told failed; its outcome is unknown: check the VM", "action", a, "err", mapError(err))
			return
		}
		v.log.Info("power action refused by vCenter after its client was told it failed: nothing happened", "action", a, "err", mapError(err))
		return
	}
	ctx, cancel := lateCtx()
	defer cancel()
	cctx, ccancel := context.WithTimeout(ctx, callTimeout)
	_, cerr := methods.CancelTask(cctx, v.inv.c.vim, &types.CancelTask{This: task.Reference()})
	ccancel()
	err = v.waitTask(ctx, task)
	switch {
	case err == nil:
	case fault.Is(err, &types.RequestCanceled{}):
		v.log.Warn("late power action cancelled: nothing happened", "action", a)
		return
	case !isFault(err):
		v.log.Error("late power action: vCenter did not say how it ended; its outcome is unknown: check the VM", "action", a, "err", mapError(err))
		return
	default:
		v.log.Info("late power action failed in vCenter: nothing happened", "action", a, "err", mapError(err))
		return
	}
	// vCenter carried it out (it could not be cancelled: cancel said
	// cerr). Undo what can be undone.
	switch a {
	case machine.On:
		v.mu.Lock()
		defer v.mu.Unlock()
		uctx, ucancel := context.WithTimeout(ctx, verdictWait)
		defer ucancel()
		t, err := v.obj.PowerOff(uctx)
		if err == nil {
			err = v.waitTask(uctx, t)
		}
		if err != nil && !fault.Is(err, &types.InvalidPowerState{}) {
			v.log.Error("a power on its client was told failed was carried out by vCenter late, and powering the VM off again failed: check the VM", "err", mapError(err), "cancel_err", mapError(cerr))
			return
		}
		v.events.Add(machine.EventPowerOff, "undoing a power on that vCenter carried out after its client was told it failed")
		v.log.Error("a power on its client was told failed was carried out by vCenter late; powered off again", "cancel_err", mapError(cerr))
	default:
		v.log.Error("a power action its client was told failed was carried out by vCenter late and cannot be undone", "action", a, "cancel_err", mapError(cerr))
	}
}

// errTaskNoFault: a task failed without saying why.
var errTaskNoFault = errors.New("task failed without a fault")

// waitTask waits for a task by reading its state, every call bounded by
// ctx: govmomi's Task.Wait destroys its property collector without a
// deadline, which blocks for as long as a hung vCenter does. A failed read
// is retried until ctx ends (a blip is not a verdict); a fault reading it
// (the task is gone) is returned. Task faults come back as govmomi's
// task.Error, so isFault tells a verdict from a timeout. The verdict is
// the task's to give (a failed task changes nothing the watcher sees), but
// a task's end shows in the VM first (a new power state or configuration
// version): the watcher's update of the VM prompts the next read.
func (v *VM) waitTask(ctx context.Context, t *object.Task) error {
	ref := v.obj.Reference()
	return v.inv.c.waitTask(ctx, t, func() <-chan struct{} { return v.inv.next(ref) })
}

// waitTask is VM.waitTask for any task of c's; media uploads use it too,
// with no VM to prompt a read (wake nil): reads are paced by backoff alone.
func (c *Client) waitTask(ctx context.Context, t *object.Task, wake func() <-chan struct{}) error {
	pause := 5 * time.Millisecond
	for {
		var woken <-chan struct{}
		if wake != nil {
			woken = wake() // before the read: an update during it is not missed
		}
		var tk mo.Task
		err := property.DefaultCollector(c.vim).RetrieveOne(ctx, t.Reference(), []string{"info"}, &tk)
		switch {
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil && isFault(err):
			// The task cannot be read (gone after a vCenter restart?):
			// no verdict, so not a fault of the task's.
			return fmt.Errorf("reading task %s: %v", t.Reference().Value, mapError(err))
		case err != nil:
		case tk.Info.State == types.TaskInfoStateSuccess:
			return nil
		case tk.Info.State == types.TaskInfoStateError:
			if tk.Info.Error == nil {
				return fmt.Errorf("task %s: %w", t.Reference().Value, errTaskNoFault)
			}
			return gtask.Error{LocalizedMethodFault: tk.Info.Error, Description: tk.Info.Description}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		case <-woken:
		}
		pause = min(pause*3/2, 200*time.Millisecond)
	}
}

// probe asks vCenter for a sign of life within probeTimeout (or ctx's
// deadline, if sooner), so that an action is not sent into a vCenter that
// stopped answering since the last heartbeat.
func (inv *Inventory) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if _, err := methods.GetCurrentTime(pctx, inv.c.vim); err != nil {
		// Only this action is refused: a slow answer is not yet a hang,
		// which the heartbeat decides.
		return fmt.Errorf("%w: vCenter gave no sign of life within %v: %v", machine.ErrUnavailable, probeTimeout, mapError(err))
	}
	return nil
}

func vimPower(s machine.PowerState) types.VirtualMachinePowerState {
	if s == machine.PowerOn {
		return types.VirtualMachinePowerStatePoweredOn
	}
	return types.VirtualMachinePowerStatePoweredOff
}
