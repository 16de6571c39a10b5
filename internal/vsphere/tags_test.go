package vsphere

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// A tagging service that stops answering holds nobody for long: a
// question gets machine.ErrUnavailable within its deadlines, and a
// caller waiting behind it gives up with its own context. vCenter's SOAP
// API keeps answering through a proxy that lets /rest hang.
func TestHungTaggingService(t *testing.T) {
	t.Parallel()
	sim, opts := startSim(t, t, 1)
	target := *sim.URL
	target.Path = ""
	var hang atomic.Bool
	hung := make(chan struct{})
	proxy := httputil.NewSingleHostReverseProxy(&target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() && strings.HasPrefix(r.URL.Path, "/rest") {
			select {
			case <-hung:
			case <-r.Context().Done():
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(hung); front.Close() })
	opts.URL, opts.CAFile, opts.Insecure = front.URL+"/sdk", "", true
	c, err := Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	e := runEnv(t, t, sim, c, quiet(), nil)
	tag := Tag{Category: "cluster", Name: "skinner"}
	if _, err := e.inv.Matching(context.Background(), Filter{Tag: tag}); !errors.Is(err, machine.ErrInvalidArgument) {
		t.Fatalf("before the hang: %v, want the tag not found", err)
	}
	hang.Store(true)
	start := time.Now()
	waiter := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // behind the first question
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := e.inv.Matching(ctx, Filter{Tag: tag})
		waiter <- err
	}()
	_, err = e.inv.Matching(context.Background(), Filter{Tag: tag})
	if errors.Is(err, machine.ErrInvalidArgument) || err == nil {
		t.Fatalf("with the tagging service hung: %v, want an error that is not \"not found\"", err)
	}
	t.Logf("hung tagging service answered in %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err := <-waiter; !errors.Is(err, machine.ErrUnavailable) {
		t.Errorf("the caller waiting behind it: %v, want ErrUnavailable", err)
	}
}

// A tagging-service login vCenter refuses (the password changed since the
// SOAP login) counts against the failed-login cap like a SOAP one, and
// once the cap is reached no login is sent: enrolment by tag cannot lock
// the vCenter account.
func TestTaggingLoginRefusalCounts(t *testing.T) {
	t.Parallel()
	_, opts := startSim(t, t, 1)
	opts.LoginFailures = 1
	c, err := Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	c.opts.Password = "changed-in-vcenter"
	tag := Tag{Category: "cluster", Name: "skinner"}
	_, err = c.tags.attached(context.Background(), tag)
	if !errors.Is(err, machine.ErrUnavailable) || !strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), c.opts.Password) {
		t.Fatalf("refused login: %v", err)
	}
	if n := c.LoginFailures(); n != 1 {
		t.Fatalf("%d failed logins counted, want 1", n)
	}
	if _, err = c.tags.attached(context.Background(), tag); !strings.Contains(err.Error(), "postponed") {
		t.Fatalf("past the cap: %v, want the login postponed", err)
	}
	if n := c.LoginFailures(); n != 1 {
		t.Errorf("past the cap, %d failed logins counted: a login was sent", n)
	}
}
