package vsphere

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	gtask "github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// A power action's answer is the truth about it: success only when vCenter
// confirmed the task, or the task runs on a vCenter that answers and cannot
// be cancelled (so it completes); otherwise the action is cancelled, or
// undone when vCenter carries it out after all, and the answer is
// machine.ErrUnavailable. An action is never submitted to a vCenter known
// to be unresponsive, nor without a fresh sign of life.
const (
	// probeTimeout bounds the sign of life asked for just before an
	// action is submitted.
	probeTimeout = 250 * time.Millisecond
	// lateBound is how long a submission that vCenter has not answered
	// within the reply budget is followed, to cancel or undo it.
	lateBound = 10 * time.Minute
)

// settleState tracks an action whose client was told it failed while
// vCenter may still carry it out: until that is settled, further power
// actions on the VM are refused at once (busy), so that nothing runs
// behind the client's back.
type settleState struct {
	mu   sync.Mutex
	what string
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

func (s *settleState) pending() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.what
}

func (s *settleState) set(what string) {
	s.mu.Lock()
	s.what = what
	s.mu.Unlock()
}

// lockAction takes v.mu before ctx ends; a VM whose earlier action is
// unsettled, or busy past the reply budget, is machine.ErrBusy.
func (v *VM) lockAction(ctx context.Context) error {
	for {
		if w := v.settle.pending(); w != "" {
			return fmt.Errorf("vm %s: an earlier %s is not settled yet (vCenter has not answered for it): %w", v.name(), w, machine.ErrBusy)
		}
		if v.mu.TryLock() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vm %s: another action is still running: %w", v.name(), machine.ErrBusy)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// submitTask submits a power task (call) and waits, within ctx's deadline,
// for vCenter to confirm it. It returns the task when the answer is
// success. When the task is not confirmed in time it is cancelled if
// vCenter allows, and the answer is ErrUnavailable; a submission vCenter
// has not answered at all is followed in the background and its task
// cancelled, or undone, when vCenter answers.
func (v *VM) submitTask(ctx context.Context, a machine.PowerAction, what string, want machine.PowerState, call func(context.Context) (*object.Task, error)) (*object.Task, error) {
	if err := v.inv.Available(); err != nil {
		return nil, fmt.Errorf("vm %s: %s not sent: %w", v.name(), what, err)
	}
	if err := v.inv.probe(ctx); err != nil {
		return nil, fmt.Errorf("vm %s: %s not sent: %w", v.name(), what, err)
	}
	if h := v.settle.hook; h != nil {
		h()
	}
	type result struct {
		task *object.Task
		err  error
	}
	ch := make(chan result, 1)
	// The submission outlives the reply: if vCenter answers late, the
	// task it started must be found to be cancelled or undone.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(v.life), lateBound)
	go func() {
		t, err := call(sctx)
		ch <- result{t, err}
	}()
	var r result
	select {
	case r = <-ch:
		scancel()
	case <-ctx.Done():
		v.followLate(a, what, func() (*object.Task, error) { defer scancel(); r := <-ch; return r.task, r.err })
		return nil, fmt.Errorf("vm %s: %s not acknowledged by vCenter in time; it will be cancelled or undone if vCenter carries it out later: %w", v.name(), what, machine.ErrUnavailable)
	}
	if r.err != nil {
		return nil, fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(r.err))
	}
	return r.task, v.confirm(ctx, a, what, want, r.task)
}

// confirm waits for a submitted task within ctx, keeping a quarter of the
// budget to decide when it has not finished.
func (v *VM) confirm(ctx context.Context, a machine.PowerAction, what string, want machine.PowerState, task *object.Task) error {
	wctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, dl.Add(-v.opts.TaskWait/4))
		defer cancel()
	}
	err := v.waitTask(wctx, task)
	if wctx.Err() == nil {
		if err != nil {
			if isKind(err, machine.ErrInvalidState) && (a == machine.On || a == machine.Off) {
				v.waitPower(ctx, want, inventoryLag) // already there
				return nil
			}
			v.log.Error("vCenter task failed", "task", what, "err", mapError(err))
			return fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(err))
		}
		if want != machine.PowerUnknown && !v.waitPower(ctx, want, inventoryLag) {
			// Confirmed by vCenter, not yet delivered by the watcher:
			// reads and the event log show it now, in order.
			v.inv.confirm(v.obj.Reference(), vimPower(want))
			v.settle.expect(want)
			if want == machine.PowerOn {
				v.events.Add(machine.EventPowerOn, "")
			} else {
				v.events.Add(machine.EventPowerOff, machine.PowerOff.String())
			}
		}
		return nil
	}
	if ctx.Err() != nil && wctx == ctx {
		// No deadline of our own: the caller gave up.
		return fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(ctx.Err()))
	}
	// Not finished within the budget: is it certain to complete?
	var t mo.Task
	if err := property.DefaultCollector(v.inv.c.vim).RetrieveOne(ctx, task.Reference(), []string{"info"}, &t); err != nil {
		v.followLate(a, what, func() (*object.Task, error) { return task, nil })
		return fmt.Errorf("vm %s: %s not confirmed by vCenter in time; it will be cancelled or undone if vCenter carries it out: %w", v.name(), what, machine.ErrUnavailable)
	}
	switch t.Info.State {
	case types.TaskInfoStateSuccess:
		return nil
	case types.TaskInfoStateError:
		if t.Info.Error != nil && fault.Is(t.Info.Error.Fault, &types.InvalidPowerState{}) && (a == machine.On || a == machine.Off) {
			return nil
		}
		return fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(gtask.Error{LocalizedMethodFault: t.Info.Error}))
	}
	if t.Info.Cancelable {
		_, err := methods.CancelTask(ctx, v.inv.c.vim, &types.CancelTask{This: task.Reference()})
		if err == nil {
			v.log.Warn("vCenter task not confirmed within the reply budget; cancelled", "task", what, "budget", v.opts.TaskWait)
			v.followLate(a, what, func() (*object.Task, error) { return task, nil })
			return fmt.Errorf("vm %s: %s not confirmed by vCenter within %v; cancelled: %w", v.name(), what, v.opts.TaskWait, machine.ErrUnavailable)
		}
		v.followLate(a, what, func() (*object.Task, error) { return task, nil })
		return fmt.Errorf("vm %s: %s not confirmed by vCenter within %v, and cancelling it failed (%v); it will be undone if it completes: %w", v.name(), what, v.opts.TaskWait, mapError(err), machine.ErrUnavailable)
	}
	// Running on a vCenter that answers, and not cancellable: it completes.
	v.background(func() {
		wctx, cancel := context.WithTimeout(v.life, lateBound)
		defer cancel()
		if err := v.waitTask(wctx, task); err != nil && !isKind(err, machine.ErrInvalidState) {
			v.log.Error("vCenter task failed after the reply said it would complete", "task", what, "err", mapError(err))
			return
		}
		v.log.Info("vCenter task finished after the reply", "task", what)
	})
	return nil
}

// followLate settles, in the background, an action its client was told
// failed: wait for vCenter's answer (result), cancel the task, and undo
// a power-on vCenter carried out after all. Until then the VM's power
// actions are refused as busy.
func (v *VM) followLate(a machine.PowerAction, what string, result func() (*object.Task, error)) {
	v.settle.set(what)
	v.log.Warn("power action answered unavailable; following it until vCenter settles it", "action", a)
	started := false
	v.background(func() {
		defer v.settle.set("")
		v.settleLate(a, what, result)
	})
	v.bgMu.Lock()
	started = !v.closed
	v.bgMu.Unlock()
	if !started {
		v.settle.set("")
	}
}

func (v *VM) settleLate(a machine.PowerAction, what string, result func() (*object.Task, error)) {
	task, err := result()
	if err != nil {
		if v.life.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			v.log.Error("vCenter never answered a power action its client was told failed; its outcome is unknown: check the VM", "action", a, "err", mapError(err))
			return
		}
		v.log.Info("power action refused by vCenter after its client was told it failed: nothing happened", "action", a, "err", mapError(err))
		return
	}
	ctx, cancel := context.WithTimeout(v.life, lateBound)
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
	case ctx.Err() != nil:
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
		uctx, ucancel := context.WithTimeout(ctx, callTimeout)
		defer ucancel()
		t, err := v.obj.PowerOff(uctx)
		if err == nil {
			err = v.waitTask(uctx, t)
		}
		if err != nil && !isKind(err, machine.ErrInvalidState) {
			v.log.Error("a power on its client was told failed was carried out by vCenter late, and powering the VM off again failed: check the VM", "err", mapError(err), "cancel_err", mapError(cerr))
			return
		}
		v.events.Add(machine.EventPowerOff, "undoing a power on that vCenter carried out after its client was told it failed")
		v.log.Error("a power on its client was told failed was carried out by vCenter late; powered off again", "cancel_err", mapError(cerr))
	default:
		v.log.Error("a power action its client was told failed was carried out by vCenter late and cannot be undone", "action", a, "cancel_err", mapError(cerr))
	}
}

// waitTask waits for a task by reading its state: govmomi's Task.Wait
// destroys its property collector without a deadline, which blocks for
// as long as a hung vCenter does. Faults come back as govmomi's task.Error.
func (v *VM) waitTask(ctx context.Context, t *object.Task) error {
	pause := 5 * time.Millisecond
	for {
		var tk mo.Task
		if err := property.DefaultCollector(v.inv.c.vim).RetrieveOne(ctx, t.Reference(), []string{"info"}, &tk); err != nil {
			return err
		}
		switch tk.Info.State {
		case types.TaskInfoStateSuccess:
			return nil
		case types.TaskInfoStateError:
			if tk.Info.Error == nil {
				return fmt.Errorf("task %s failed without a fault", t.Reference().Value)
			}
			return gtask.Error{LocalizedMethodFault: tk.Info.Error, Description: tk.Info.Description}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
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
