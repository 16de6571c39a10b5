package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// stallProxy forwards TCP to the simulator and can add latency or stall
// every connection, as a vCenter stopped with SIGSTOP does: connections
// are accepted and bytes sent are held, then delivered when it resumes.
type stallProxy struct {
	l      net.Listener
	target string

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool
	delay   time.Duration // one way, per chunk
	conns   []net.Conn
	closed  bool
	// refusing: new connections are closed at once, as a vCenter that
	// restarts would (see refuse).
	refusing bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{l: l, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refusing := p.refusing
		p.mu.Unlock()
		if refusing {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(s, c)
		go p.pipe(c, s)
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.stalled && !p.closed {
				p.cond.Wait()
			}
			d := p.delay
			p.mu.Unlock()
			time.Sleep(d)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) set(stalled bool, delay time.Duration) {
	p.mu.Lock()
	p.stalled, p.delay = stalled, delay
	p.cond.Broadcast()
	p.mu.Unlock()
}

// refuse cuts every open connection, dropping what it held, and closes
// new ones at once until refuse(false): requests sent meanwhile never
// reach the simulator.
func (p *stallProxy) refuse(on bool) {
	p.mu.Lock()
	p.refusing = on
	conns := p.conns
	if on {
		p.conns = nil
	}
	p.mu.Unlock()
	if on {
		for _, c := range conns {
			c.Close()
		}
	}
}

func (p *stallProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	conns := p.conns
	p.mu.Unlock()
	p.l.Close()
	for _, c := range conns {
		c.Close()
	}
}

// proxiedEnv is startEnv with the bridge's client behind a stallProxy;
// the "outside" client talks to the simulator directly.
func proxiedEnv(t *testing.T, log *slog.Logger) (*testEnv, *stallProxy) {
	t.Helper()
	sim, opts := startSim(t, t, len(SeedVMNames))
	p := newStallProxy(t, sim.URL.Host)
	u := *sim.URL
	u.Host = p.l.Addr().String()
	opts.URL = u.String()
	c, err := Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return runEnv(t, t, sim, c, log, func() { p.set(false, 0) }), p
}

// power reads the VM's power state from the simulator directly.
func (e *testEnv) power(t *testing.T, v *VM) types.VirtualMachinePowerState {
	t.Helper()
	return e.vmConfig(t, v).Runtime.PowerState
}

// A hung vCenter (every connection stalled) is detected by the heartbeat;
// from then on reads and actions answer unavailable at once, nothing is
// sent, and after vCenter returns the VM is as it was.
func TestHungVCenter(t *testing.T) {
	t.Parallel()
	e, p := proxiedEnv(t, quiet())
	ctx := context.Background()
	v := e.bind(t, "skinner-master-0", VMOptions{})
	if s, err := v.PowerState(ctx); err != nil || s != machine.PowerOff {
		t.Fatalf("before: %v %v", s, err)
	}
	hungAt := time.Now()
	p.set(true, 0)
	deadline := time.Now().Add(60 * time.Second)
	for e.inv.Available() == nil {
		if time.Now().After(deadline) {
			t.Fatal("hang never detected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	detected := time.Since(hungAt)
	t.Logf("hang detected %v after vCenter stalled", detected.Round(time.Millisecond))

	var slowest time.Duration
	for range 5 {
		for _, a := range []machine.PowerAction{machine.On, machine.Off, machine.Reset} {
			start := time.Now()
			err := v.Power(ctx, a)
			slowest = max(slowest, time.Since(start))
			if !errors.Is(err, machine.ErrUnavailable) {
				t.Fatalf("power %s while hung: %v", a, err)
			}
		}
		start := time.Now()
		if _, err := v.PowerState(ctx); !errors.Is(err, machine.ErrUnavailable) {
			t.Fatalf("read while hung: %v", err)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest answer while hung: %v (16 requests)", slowest.Round(time.Microsecond))

	p.set(false, 0)
	back := time.Now()
	for e.inv.Available() != nil {
		if time.Since(back) > 60*time.Second {
			t.Fatal("never resynchronised")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("resynchronised %v after vCenter answered again", time.Since(back).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // anything held back would have arrived
	if s := e.power(t, v); s != types.VirtualMachinePowerStatePoweredOff {
		t.Fatalf("VM %s after vCenter returned: a refused action ran", s)
	}
}

// settled waits until no power action of v is unsettled.
func settled(t *testing.T, v *VM) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for v.settle.pending() != unsettledNone {
		if time.Now().After(deadline) {
			t.Fatal("late action never settled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// vCenter hangs after the action's sign of life and before its
// submission: the client is told unavailable, the power-on vCenter
// carries out when it resumes is undone, further actions are busy until
// then, and the log and the event log say so.
func TestActionInFlightWhenVCenterHangs(t *testing.T) {
	t.Parallel()
	logs := &clienttest.Buffer{}
	e, p := proxiedEnv(t, slog.New(slog.NewTextHandler(logs, nil)))
	ctx := context.Background()
	v := e.bind(t, "skinner-master-1", VMOptions{})
	v.settle.hook = func() { p.set(true, 0) }
	start := time.Now()
	err := v.Power(ctx, machine.On)
	took := time.Since(start)
	v.settle.hook = nil
	if !errors.Is(err, machine.ErrUnavailable) {
		t.Fatalf("power on into a hung vCenter: %v", err)
	}
	t.Logf("power on answered %v after %v", err, took.Round(time.Millisecond))
	if err := v.Power(ctx, machine.Off); !errors.Is(err, machine.ErrBusy) && !errors.Is(err, machine.ErrUnavailable) {
		t.Fatalf("next action while the first is unsettled: %v", err)
	}
	time.Sleep(3 * time.Second) // a hang long enough to be detected
	p.set(false, 0)
	settled(t, v)
	deadline := time.Now().Add(30 * time.Second) // a loaded machine: only to catch a hang
	for e.power(t, v) != types.VirtualMachinePowerStatePoweredOff {
		if time.Now().After(deadline) {
			t.Fatalf("the VM stayed on after its client was told the power on failed; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if s := e.power(t, v); s != types.VirtualMachinePowerStatePoweredOff {
		t.Fatalf("VM %s: a power on its client was told failed stayed done", s)
	}
	if !strings.Contains(logs.String(), "powered off again") && !strings.Contains(logs.String(), "nothing happened") {
		t.Fatalf("the log does not say what happened:\n%s", logs.String())
	}
	undone := false
	for _, ev := range v.Events(0) {
		undone = undone || strings.Contains(ev.Detail, "undoing a power on")
	}
	if strings.Contains(logs.String(), "powered off again") && !undone {
		t.Fatalf("event log: %+v", v.Events(0))
	}
	t.Logf("undone by a power-off: %v", undone)
	clienttest.Eventually(t, "the inventory to resynchronise", func() bool { return e.inv.Available() == nil })
	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatalf("power on once vCenter is back: %v", err)
	}
}

// With vCenter latency injected, whatever the answer, the VM ends in the
// state the answer implies: on after success, off after unavailable.
func TestLatencyAnswersTruth(t *testing.T) {
	t.Parallel()
	e, p := proxiedEnv(t, quiet())
	ctx := context.Background()
	v := e.bind(t, "skinner-worker-1", VMOptions{})
	outside := object.NewVirtualMachine(e.out.vim, v.Reference())
	for _, oneWay := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond} {
		p.set(false, oneWay)
		start := time.Now()
		err := v.Power(ctx, machine.On)
		took := time.Since(start)
		settled(t, v)
		time.Sleep(4 * oneWay)
		got := e.power(t, v)
		t.Logf("one-way latency %v: answer after %v: %v; VM %s", oneWay, took.Round(time.Millisecond), err, got)
		switch {
		case err == nil && got != types.VirtualMachinePowerStatePoweredOn:
			t.Fatalf("latency %v: told success, VM %s", oneWay, got)
		case err != nil && !errors.Is(err, machine.ErrUnavailable):
			t.Fatalf("latency %v: %v", oneWay, err)
		case err != nil && got != types.VirtualMachinePowerStatePoweredOff:
			t.Fatalf("latency %v: told unavailable, VM %s", oneWay, got)
		}
		p.set(false, 0)
		if got == types.VirtualMachinePowerStatePoweredOn {
			task, err := outside.PowerOff(ctx)
			if err == nil {
				err = task.Wait(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		clienttest.Eventually(t, "the inventory to see the VM off", func() bool { s, _ := v.PowerState(ctx); return s == machine.PowerOff })
		clienttest.Eventually(t, "the inventory to be available", func() bool { return e.inv.Available() == nil })
	}
}

// A wrong password at start: the client keeps trying in the background,
// sends at most LoginFailures logins, says whose login failed and why, and
// never locks the account.
func TestStartWrongPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, opts := startSim(t, t, 1)
	logs := &clienttest.Buffer{}
	opts.Password, opts.Log = "wrong", slog.New(slog.NewTextHandler(logs, nil))
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	inv := NewInventory(c, quiet())
	go inv.Run(ctx)
	start := time.Now()
	clienttest.EventuallyWithin(t, time.Minute, "the login cap", func() bool { return strings.Contains(errString(c.Status()), "next login attempt") })
	capped := time.Since(start)
	time.Sleep(3 * time.Second) // backoff would have tried again by now
	logins := c.Requests()["Login"]
	t.Logf("wrong password: %d logins, cap reached after %v; status: %v", logins, capped.Round(time.Millisecond), c.Status())
	if logins != config.DefaultLoginFailures {
		t.Fatalf("%d logins with a wrong password, want %d", logins, config.DefaultLoginFailures)
	}
	for _, want := range []string{`login as \"vcsim\" refused (InvalidLogin)`, "password is wrong"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if err := inv.Available(); !errors.Is(err, machine.ErrUnavailable) || !strings.Contains(err.Error(), "next login attempt at") {
		t.Fatalf("inventory: %v", err)
	}
	if strings.Contains(logs.String(), "wrong\"") || strings.Contains(errString(c.Status()), "password wrong") {
		t.Fatal("a password in the log")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The cap over a simulated hour of a wrong password: at most 3 failed
// logins in any 15 minutes, 12 in the hour.
func TestLoginGateOverAnHour(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := &loginGate{max: config.DefaultLoginFailures, window: config.DefaultLoginWindow, now: func() time.Time { return now }}
	end := now.Add(time.Hour)
	var sent []time.Time
	backoff := loginBackoff
	for now.Before(end) {
		if when, ok := g.allow(); ok {
			sent = append(sent, now)
			g.record(invalidLogin)
			now = now.Add(jitter(backoff))
			backoff = min(2*backoff, loginMaxBackoff)
		} else {
			now = when.Add(jitter(time.Second))
		}
	}
	for i := range sent {
		n := 0
		for _, s := range sent[i:] {
			if s.Sub(sent[i]) < config.DefaultLoginWindow {
				n++
			}
		}
		if n > config.DefaultLoginFailures {
			t.Fatalf("%d logins within 15 minutes from %v: %v", n, sent[i], sent)
		}
	}
	t.Logf("wrong password for an hour: %d logins", len(sent))
	if len(sent) > 4*config.DefaultLoginFailures {
		t.Fatalf("%d logins in an hour", len(sent))
	}
}

// An unreachable vCenter at start sends no login, says so, and is
// connected to once it listens.
func TestStartUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", clienttest.FreeTCPPort(t))
	c, err := Start(ctx, Options{URL: "https://" + addr + "/sdk", Username: SimulatorUser, Password: SimulatorPassword, Insecure: true, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	<-c.Tried()
	if err := c.Status(); !errors.Is(err, machine.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach vCenter") {
		t.Fatalf("status: %v", err)
	}
	sim, err := StartSimulator(ctx, addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	select {
	case <-c.Ready():
	case <-time.After(60 * time.Second):
		t.Fatalf("never connected: %v", c.Status())
	}
	if n := c.Requests()["Login"]; n != 1 {
		t.Fatalf("%d logins", n)
	}
}

// A certificate the client does not trust: the error names caFile and
// insecure, and no login is sent (so none is counted).
func TestStartTLSFailure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, opts := startSim(t, t, 1)
	opts.CAFile, opts.Log = "", quiet() // the simulator's own certificate, not trusted
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	<-c.Tried()
	err = c.Status()
	for _, want := range []string{"vcenter.caFile", "vcenter.insecure", "not trusted"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("status %v lacks %q", err, want)
		}
	}
	if n := c.Requests()["Login"]; n != 0 || c.LoginFailures() != 0 {
		t.Fatalf("%d logins, %d counted", n, c.LoginFailures())
	}
	_ = url.URL{}
	_ = io.Discard
}
