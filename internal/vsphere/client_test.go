package vsphere

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// invalidLogin is vCenter's answer to a wrong password.
var invalidLogin = soap.WrapVimFault(&types.InvalidLogin{})

// Only a refusal of the credentials counts against the failed-login cap:
// not a timeout, not a connection failure.
func TestLoginGateCountsOnlyRefusals(t *testing.T) {
	t.Parallel()
	g := &loginGate{max: 3, window: time.Hour, now: time.Now}
	for _, err := range []error{context.DeadlineExceeded, errors.New("connection reset"), soap.WrapVimFault(&types.NotAuthenticated{})} {
		g.record(err)
	}
	if n := g.count(); n != 0 {
		t.Fatalf("%d failures counted for errors that refuse no credentials", n)
	}
	g.record(invalidLogin)
	if n := g.count(); n != 1 {
		t.Fatalf("InvalidLogin: %d failures counted, want 1", n)
	}
}

// The failures are kept in the store, so that the cap spans restarts; a
// record of another account or vCenter does not count against this one.
func TestLoginGatePersisted(t *testing.T) {
	t.Parallel()
	store := newMemStore()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	account := loginRecord{URL: "https://vc/sdk", Username: "bridge"}
	g := &loginGate{max: 3, window: 15 * time.Minute, now: clock, store: store, account: account}
	if err := g.load(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		g.record(invalidLogin)
		now = now.Add(time.Second)
	}
	// A restart: a new gate over the same store.
	again := &loginGate{max: 3, window: 15 * time.Minute, now: clock, store: store, account: account}
	if err := again.load(); err != nil {
		t.Fatal(err)
	}
	if when, ok := again.allow(); ok || !when.Equal(time.Date(2026, 1, 1, 0, 15, 0, 0, time.UTC)) {
		t.Fatalf("after a restart: allowed %v, next at %v; want the cap to hold until 00:15", ok, when)
	}
	other := &loginGate{max: 3, window: 15 * time.Minute, now: clock, store: store, account: loginRecord{URL: "https://vc/sdk", Username: "someone-else"}}
	if err := other.load(); err != nil {
		t.Fatal(err)
	}
	if _, ok := other.allow(); !ok {
		t.Fatal("another account's failures counted")
	}
	now = now.Add(15 * time.Minute)
	if _, ok := again.allow(); !ok {
		t.Fatal("still capped after the window")
	}
}

// slowLogin delays Login calls by delay, as a slow SSO does.
type slowLogin struct {
	next  soap.RoundTripper
	delay atomic.Int64 // nanoseconds
}

func (s *slowLogin) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	if _, ok := req.(*methods.LoginBody); ok {
		select {
		case <-time.After(time.Duration(s.delay.Load())):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.next.RoundTrip(ctx, req, res)
}

// vCenter forgets the session while its SSO answers a login in 2.5 s (as
// just after a restart). The re-login used to run under the refused call's
// context (the heartbeat's 2 s), so each attempt timed out and counted as
// a failed login: the cap was reached in seconds with the right password.
// Now one login runs in the background under its own timeout, callers get
// "unavailable" meanwhile, and none of it counts as a failure.
func TestSlowReloginDoesNotTripCap(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, opts := startSim(t, t, 1)
	c, err := Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Installed before anything else uses c: below the request counter,
	// so the counter still sees every Login sent.
	slow := &slowLogin{next: c.count.next}
	c.count.next = slow
	out, err := Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	us, err := c.mgr.UserSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Requests()["Login"]
	slow.delay.Store(int64(2500 * time.Millisecond))
	if err := out.mgr.TerminateSession(ctx, []string{us.Key}); err != nil {
		t.Fatal(err)
	}
	sawUnavailable := false
	clienttest.EventuallyWithin(t, time.Minute, "a call to go through after the re-login", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := methods.GetCurrentTime(cctx, c.vim)
		if err != nil && errors.Is(mapError(err), machine.ErrUnavailable) {
			sawUnavailable = true
		}
		return err == nil
	})
	if !sawUnavailable {
		t.Error("no call was answered unavailable while the login took 2.5 s")
	}
	if n := c.LoginFailures(); n != 0 {
		t.Errorf("%d failed logins counted with the right password and a slow SSO", n)
	}
	if n := c.Requests()["Login"] - before; n != 1 {
		t.Errorf("%d logins sent for one lost session; want one at a time, and one was enough", n)
	}
}
