package vsphere

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// These tests hold the bridge to issue 10's promise: an action's answer is
// the truth about it. A failure (C0h) means it did not and will not happen;
// success means it happened. They assert outcomes, never durations: the
// timeouts only catch a hang.

// answer runs f in the background and returns its error, failing the
// test if it has not answered within limit (a hang, not a slow answer).
func answer(t *testing.T, limit time.Duration, f func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(limit):
		t.Fatalf("no answer after %v", limit)
		return nil
	}
}

// maintenance puts the VM's host in maintenance mode: vCenter then fails
// every power-on task on it.
func maintenance(t *testing.T, e *testEnv, v *VM) {
	t.Helper()
	ctx := context.Background()
	host, err := object.NewVirtualMachine(e.out.vim, v.Reference()).HostSystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task, err := host.EnterMaintenanceMode(ctx, 0, false, nil)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// delayTasks makes the simulator's tasks of the given methods run that
// long (ms); vcsim's power tasks, like vCenter's, cannot be cancelled.
// TaskDelay is a package variable of govmomi's simulator that every
// simulator in the process reads, so a test calling delayTasks must not
// call t.Parallel: go test runs a package's sequential tests before its
// parallel ones, so none of the others sees the delay.
func delayTasks(t *testing.T, delays map[string]int) {
	t.Helper()
	simulator.TaskDelay.MethodDelay = delays
	t.Cleanup(func() { simulator.TaskDelay.MethodDelay = nil })
}

// A power task still running when the reply budget ends, which vCenter
// will not cancel, used to be answered success because "it completes";
// it may complete by failing. The answer now waits for the task: a task
// that fails is a failure, one that succeeds a success, and the VM is as
// the answer says.
func TestRunningTaskAnsweredByItsVerdict(t *testing.T) {
	t.Run("fails", func(t *testing.T) {
		e := startEnv(t)
		v := e.bind(t, "skinner-master-2", VMOptions{})
		maintenance(t, e, v)
		delayTasks(t, map[string]int{"PowerOn": 1500})
		err := answer(t, time.Minute, func() error { return v.Power(context.Background(), machine.On) })
		if err == nil {
			t.Fatal("a power-on task that failed (host in maintenance mode) was answered success")
		}
		if !errors.Is(err, machine.ErrInvalidState) {
			t.Fatalf("answer %v, want vCenter's refusal (invalid state)", err)
		}
		if got := e.power(t, v); got != types.VirtualMachinePowerStatePoweredOff {
			t.Fatalf("VM %s after a failed power-on", got)
		}
	})
	t.Run("succeeds", func(t *testing.T) {
		e := startEnv(t)
		v := e.bind(t, "skinner-master-2", VMOptions{})
		delayTasks(t, map[string]int{"PowerOn": 1500})
		if err := answer(t, time.Minute, func() error { return v.Power(context.Background(), machine.On) }); err != nil {
			t.Fatalf("a slow power-on that succeeded: %v", err)
		}
		// The answer came after the task: vCenter and reads say on now.
		if got := e.power(t, v); got != types.VirtualMachinePowerStatePoweredOn {
			t.Fatalf("answered success, VM %s", got)
		}
		if s, _ := v.PowerState(context.Background()); s != machine.PowerOn {
			t.Fatalf("answered success, reads say %s", s)
		}
	})
}

// A power off, reset or cycle cannot be undone, so once sent it must never
// be answered failed: vCenter that stops answering right after the sign of
// life and resumes later carries it out, and the answer, given then, says
// so. (It used to be C0h at 0.8 s, and the VM went off all the same.)
func TestIrreversibleActionSentIntoAHangIsNotAnsweredFailed(t *testing.T) {
	t.Parallel()
	for _, a := range []machine.PowerAction{machine.Off, machine.Reset, machine.Cycle, machine.SoftOff} {
		t.Run(a.String(), func(t *testing.T) {
			e, p := proxiedEnv(t, quiet())
			ctx := context.Background()
			v := e.bind(t, "skinner-master-1", VMOptions{})
			if err := v.Power(ctx, machine.On); err != nil {
				t.Fatal(err)
			}
			settled(t, v)
			var once sync.Once
			v.settle.hook = func() {
				once.Do(func() {
					p.set(true, 0)
					// A hang long enough for the heartbeat to notice, short
					// of verdictWait.
					time.AfterFunc(3*time.Second, func() { p.set(false, 0) })
				})
			}
			err := answer(t, 2*verdictWait, func() error { return v.Power(ctx, a) })
			if errors.Is(err, machine.ErrUnavailable) || errors.Is(err, machine.ErrBusy) {
				t.Fatalf("%s sent into a hang answered failed (C0h): %v", a, err)
			}
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			if a == machine.Off {
				if got := e.power(t, v); got != types.VirtualMachinePowerStatePoweredOff {
					t.Fatalf("power off answered success, VM %s", got)
				}
			}
			if a == machine.SoftOff {
				clienttest.EventuallyWithin(t, time.Minute, "the guest shutdown", func() bool { return e.power(t, v) == types.VirtualMachinePowerStatePoweredOff })
			}
		})
	}
}

// A power-on whose submission vCenter has not answered when the BMC is
// stopped: Close does not wait for it (it used to wait up to 10 minutes),
// and the bridge still follows it afterwards, undoing the power-on its
// client was told failed.
func TestCloseLeavesLateActionsToTheirFollowers(t *testing.T) {
	t.Parallel()
	e, p := proxiedEnv(t, quiet())
	ctx := context.Background()
	v, err := e.inv.Bind(ctx, "skinner-master-0", VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v.settle.hook = func() { p.set(true, 0) }
	err = v.Power(ctx, machine.On)
	if !errors.Is(err, machine.ErrUnavailable) {
		t.Fatalf("power on into a hung vCenter: %v", err)
	}
	closed := make(chan struct{})
	go func() { v.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close blocked on an action vCenter has not answered")
	}
	p.set(false, 0)
	// Told failed: the VM must end off, although its BMC is gone.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if v.settle.pending() == unsettledNone && e.power(t, v) == types.VirtualMachinePowerStatePoweredOff {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM %s after vCenter resumed: a power-on answered failed was not undone after Close", e.power(t, v))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A power cycle answered success promises the VM comes back on. A vCenter
// outage right when the cycle's power-on goes out used to leave the VM off
// for good; the power-on is now retried until vCenter answers, even when
// the BMC is stopped meanwhile, and the event log says it was delayed.
func TestCyclePowerOnRetriedThroughAnOutage(t *testing.T) {
	t.Parallel()
	logs := &clienttest.Buffer{}
	e, p := proxiedEnv(t, quiet())
	ctx := context.Background()
	v, err := e.inv.Bind(ctx, "skinner-worker-2", VMOptions{Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	// The first sign of life is the cycle's power-off's; right after the
	// second, the power-on's, vCenter goes away: the power-on is lost on
	// the way (the proxy drops it), and so is every request until the
	// outage ends.
	var n atomic.Int32
	gone := make(chan struct{})
	v.settle.hook = func() {
		if n.Add(1) == 2 {
			p.refuse(true)
			close(gone)
		}
	}
	if err := v.Power(ctx, machine.Cycle); err != nil {
		t.Fatalf("cycle: %v", err)
	}
	select {
	case <-gone:
	case <-time.After(30 * time.Second):
		t.Fatal("the cycle's power-on was never attempted")
	}
	clienttest.EventuallyWithin(t, time.Minute, "the delay to be logged", func() bool { return strings.Contains(logs.String(), "power-on not done yet") })
	if got := e.power(t, v); got != types.VirtualMachinePowerStatePoweredOff {
		t.Fatalf("VM %s during the outage: the power-on reached vCenter", got)
	}
	v.Close() // the BMC stops; the cycle it answered still completes
	p.refuse(false)
	clienttest.EventuallyWithin(t, time.Minute, "the VM back on after the cycle", func() bool { return e.power(t, v) == types.VirtualMachinePowerStatePoweredOn })
	delayed := false
	for _, ev := range v.Events(0) {
		delayed = delayed || strings.Contains(ev.Detail, "power-on delayed")
	}
	if !delayed {
		t.Fatalf("event log does not record the delay: %+v", v.Events(0))
	}
}

// A boot override is answered like a power action: success only when
// vCenter's reconfiguration succeeded (it used to be success after 0.8 s
// with the task still running), nothing sent without a sign of life, and
// the record (what reads say, what is saved) changes only with the VM.
func TestBootOverrideAnsweredByItsVerdict(t *testing.T) {
	pxe := machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE}
	t.Run("slow task", func(t *testing.T) {
		e := startEnv(t)
		v := e.bind(t, "skinner-master-0", VMOptions{})
		delayTasks(t, map[string]int{"ReconfigVm": 1500})
		if err := answer(t, time.Minute, func() error { return v.SetBootOverride(context.Background(), pxe) }); err != nil {
			t.Fatal(err)
		}
		if got := e.firstBoot(t, v); got != "ethernet" {
			t.Fatalf("answered success, first boot device %q", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		e := startEnv(t)
		var mu sync.Mutex
		var saved []Record
		v := e.bind(t, "skinner-master-0", VMOptions{Persist: func(r Record) error {
			mu.Lock()
			defer mu.Unlock()
			saved = append(saved, r)
			return nil
		}})
		e.sim.Model().Service.AddFaultRule(faultRule("ReconfigVM_Task", new(types.InvalidState)))
		defer e.sim.Model().Service.ClearFaultRules()
		if err := v.SetBootOverride(context.Background(), pxe); err == nil {
			t.Fatal("a refused reconfiguration was answered success")
		}
		if o, _ := v.BootOverride(context.Background()); o.Enabled {
			t.Fatalf("reads show an override vCenter refused: %v", o)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(saved) == 0 || saved[len(saved)-1].Override.Enabled {
			t.Fatalf("saved record after a refusal: %+v", saved)
		}
	})
	t.Run("no sign of life", func(t *testing.T) {
		e, p := proxiedEnv(t, quiet())
		v := e.bind(t, "skinner-master-0", VMOptions{})
		p.set(false, 150*time.Millisecond) // no answer within probeTimeout
		err := answer(t, time.Minute, func() error { return v.SetBootOverride(context.Background(), pxe) })
		p.set(false, 0)
		if !errors.Is(err, machine.ErrUnavailable) {
			t.Fatalf("answer %v, want unavailable (nothing sent)", err)
		}
		time.Sleep(time.Second) // anything sent would have arrived
		if got := e.firstBoot(t, v); got == "ethernet" {
			t.Fatal("answered unavailable, yet the boot order changed")
		}
		if o, _ := v.BootOverride(context.Background()); o.Enabled {
			t.Fatalf("reads show an override never sent: %v", o)
		}
	})
}

// stallDestroy holds DestroyPropertyCollector until its context ends, as a
// vCenter that stops answering at that moment would. govmomi's Task.Wait
// destroys its collector under context.Background, so it then never
// returns.
type stallDestroy struct {
	next soap.RoundTripper
	on   atomic.Bool
	hit  atomic.Int32
}

func (s *stallDestroy) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	if _, ok := req.(*methods.DestroyPropertyCollectorBody); ok && s.on.Load() {
		s.hit.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	return s.next.RoundTrip(ctx, req, res)
}

// Restoring the boot order after a one-time override's boot used
// Task.Wait under v.mu: a vCenter hanging at the wrong moment held v.mu,
// and with it every later action and Close, for ever. Tasks are now waited
// for by polling under a deadline, and requests take v.mu under theirs.
func TestBootRestoreNeverHoldsTheLockForever(t *testing.T) {
	t.Parallel()
	sd := &stallDestroy{}
	e := startEnvWith(t, func(next soap.RoundTripper) soap.RoundTripper { sd.next = next; return sd })
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	if err := v.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Device: machine.BootPXE}); err != nil {
		t.Fatal(err)
	}
	sd.on.Store(true)
	defer sd.on.Store(false)
	v.booted(time.Now().Add(time.Second), false)
	clienttest.EventuallyWithin(t, time.Minute, "the one-time override to be cleared", func() bool {
		o, _ := v.BootOverride(ctx)
		return !o.Enabled
	})
	// The lock is free for a request with a deadline.
	if err := answer(t, 30*time.Second, func() error {
		rctx, cancel := context.WithTimeout(ctx, DefaultTaskWait)
		defer cancel()
		return v.SetBootOverride(rctx, machine.BootOverride{})
	}); err != nil {
		t.Fatalf("boot override after the restore: %v", err)
	}
	if n := sd.hit.Load(); n != 0 {
		t.Fatalf("%d DestroyPropertyCollector calls on the action path", n)
	}
}

// A request with a deadline waits for v.mu only until then: an action or
// a restore holding it for as long as vCenter takes makes the request
// busy (nothing sent), never a request that hangs.
func TestRequestsTakeTheLockWithinTheirDeadline(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	v.mu.Lock()
	for name, call := range map[string]func() error{
		"power": func() error { return v.Power(ctx, machine.On) },
		"boot": func() error {
			return v.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE})
		},
	} {
		if err := answer(t, 30*time.Second, call); !errors.Is(err, machine.ErrBusy) {
			v.mu.Unlock()
			t.Fatalf("%s while the lock is held: %v, want busy", name, err)
		}
	}
	v.mu.Unlock()
	if got := e.power(t, v); got != types.VirtualMachinePowerStatePoweredOff {
		t.Fatalf("answered busy, VM %s", got)
	}
}

// An action waiting for the lock while an earlier one becomes unsettled
// (answered, and still followed) is busy: the unsettled check is made
// again once the lock is held, so nothing runs behind the earlier answer.
func TestUnsettledCheckedAgainUnderTheLock(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	v.mu.Lock()
	ch := make(chan error, 1)
	go func() { ch <- v.Power(ctx, machine.On) }()
	time.Sleep(100 * time.Millisecond) // let it pass the first check
	v.settle.set(unsettledPowerOn)
	v.mu.Unlock()
	var err error
	select {
	case err = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer")
	}
	v.settle.set(unsettledNone)
	if !errors.Is(err, machine.ErrBusy) {
		t.Fatalf("action while an earlier one is unsettled: %v", err)
	}
	if got := e.power(t, v); got != types.VirtualMachinePowerStatePoweredOff {
		t.Fatalf("answered busy, VM %s", got)
	}
}

// Whatever is followed, the VM's power actions are busy until it is
// settled, and the answer names it.
func TestSettleBusy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		what unsettled
		want string
	}{
		{unsettledNone, ""},
		{unsettledTask, "an earlier task is not settled yet"},
		{unsettledPowerOn, "an earlier power-on is not settled yet"},
	} {
		t.Run(string(tc.what), func(t *testing.T) {
			var s settleState
			s.set(tc.what)
			err := s.busy("vm-1")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("nothing followed: %v", err)
				}
				return
			}
			if !errors.Is(err, machine.ErrBusy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("busy: %v, want ErrBusy saying %q", err, tc.want)
			}
		})
	}
}
