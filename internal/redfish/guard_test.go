package redfish

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
