package redfish

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
)

// countingObserver counts what the service reports.
type countingObserver struct {
	mu                 sync.Mutex
	failures, lockouts map[string]int
}

func (o *countingObserver) Request(string, int) {}
func (o *countingObserver) AuthFailure(bmc string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures[bmc]++
}
func (o *countingObserver) Lockout(bmc string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lockouts[bmc]++
}

// Guessing a system's password over Redfish locks the guesser's address
// out of that BMC (in the guard IPMI shares), answered 429 with
// Retry-After even with the right password, while another address still
// gets in; guessing with no system named counts under "redfish".
func TestGuessingLocksOut(t *testing.T) {
	g := guard.New(guard.Config{Failures: 3, Window: time.Minute, Lockout: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	obs := &countingObserver{failures: map[string]int{}, lockouts: map[string]int{}}
	e := newEnv(t, func(c *Config) { c.Guard, c.Observer = g, obs })
	e.mu.Lock()
	for i := range e.systems {
		e.systems[i].Endpoint = "127.0.0.1:" + e.systems[i].ID
	}
	e.mu.Unlock()
	from := func(addr, path, user, pass string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, r)
		return w
	}
	sys := "/redfish/v1/Systems/vm-0"
	for i := range 3 {
		if w := from("192.0.2.1:5000", sys, "admin", "guess"+strings.Repeat("x", i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	w := from("192.0.2.1:5001", sys, "admin", "password")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("locked out address with the right password: %d %v", w.Code, w.Header())
	}
	if w := from("192.0.2.2:5000", sys, "admin", "password"); w.Code != http.StatusOK {
		t.Fatalf("another address: %d", w.Code)
	}
	if w := from("192.0.2.1:5002", "/redfish/v1/Systems/vm-1", "other", "secret-1"); w.Code != http.StatusOK {
		t.Fatalf("the guesser was locked out of another BMC: %d", w.Code)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.failures["127.0.0.1:vm-0"] != 3 || obs.lockouts["127.0.0.1:vm-0"] != 1 {
		t.Fatalf("failures %v lockouts %v", obs.failures, obs.lockouts)
	}
}

// A source locked out of one BMC cannot go on guessing that BMC's password
// through routes that name no BMC (the collection, an unknown ID, the
// session POST), where failures once counted under a separate key; it
// still uses another BMC's path with that BMC's right password, as with
// IPMI. Guesses through every route together are bounded by the
// per-source global key, after which the source is refused everywhere.
func TestLockoutCoversEveryRoute(t *testing.T) {
	g := guard.New(guard.Config{Failures: 3, Window: time.Minute, Lockout: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e := newEnv(t, func(c *Config) { c.Guard = g })
	e.mu.Lock()
	for i := range e.systems {
		e.systems[i].Endpoint = "127.0.0.1:" + e.systems[i].ID
	}
	e.mu.Unlock()
	from := func(addr, method, path, user, pass string) int {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader(`{"UserName":"` + user + `","Password":"` + pass + `"}`)
		}
		r := httptest.NewRequest(method, path, body)
		r.RemoteAddr = addr
		if method == "POST" {
			r.Header.Set("Content-Type", "application/json")
		} else {
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
		}
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, r)
		return w.Code
	}
	const guesser = "192.0.2.1:5000"
	for i := range 3 {
		from(guesser, "GET", "/redfish/v1/Systems/vm-0", "admin", "guess"+strings.Repeat("x", i))
	}
	for _, r := range []struct{ method, path string }{
		{"GET", "/redfish/v1/Systems"},
		{"GET", "/redfish/v1/Systems/no-such"},
		{"POST", "/redfish/v1/SessionService/Sessions"},
	} {
		// The right password: refused before it is checked, so neither a
		// guess nor a confirmation.
		if c := from(guesser, r.method, r.path, "admin", "password"); c != http.StatusTooManyRequests {
			t.Errorf("%s %s by a source locked out of vm-0: %d, want 429", r.method, r.path, c)
		}
	}
	if c := from(guesser, "GET", "/redfish/v1/Systems/vm-1", "other", "secret-1"); c != http.StatusOK {
		t.Fatalf("locked out of vm-0, the source was refused vm-1 with its right password: %d", c)
	}

	// The global key: guesses on other BMCs' paths count too, and after
	// globalFactor BMCs' worth in all the source is refused everywhere.
	guesses := 3 // on vm-0's path above
	for _, id := range []string{"vm-1", "vm-2"} {
		for i := range 3 {
			if guesses >= globalFactor*3 {
				break
			}
			if c := from(guesser, "GET", "/redfish/v1/Systems/"+id, "admin", "wrong"+strings.Repeat("x", i)); c != http.StatusUnauthorized {
				t.Fatalf("guess %d on %s: %d", guesses+1, id, c)
			}
			guesses++
		}
	}
	if g.Locked(netip.MustParseAddr("192.0.2.1"), guardKey) == 0 {
		t.Errorf("after %d failures through every route the source is not locked out under the global key", guesses)
	}
	if c := from(guesser, "GET", "/redfish/v1/Systems/vm-1", "other", "secret-1"); c != http.StatusTooManyRequests {
		t.Errorf("after %d failures through every route the source still got %d on vm-1, want 429", guesses, c)
	}
	if c := from("192.0.2.2:5000", "GET", "/redfish/v1/Systems", "admin", "password"); c != http.StatusOK {
		t.Errorf("another source: %d", c)
	}
}
