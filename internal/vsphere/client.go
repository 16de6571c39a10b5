// Package vsphere owns everything that speaks to vCenter through govmomi: the
// connection (keep-alive, re-login, request counting), the watched inventory
// of VMs that every read is served from, the machine.Machine implementation
// over a VM, and the embedded vCenter simulator the bridge runs by default.
package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Options says how to reach and log in to a vCenter.
type Options struct {
	// URL is the SDK endpoint, e.g. https://vcenter.example.com/sdk. It must
	// not carry credentials.
	URL      string
	Username string
	Password string
	// Insecure skips TLS verification.
	Insecure bool
	// CAFile, when set, is a PEM bundle of CAs to trust instead of the system's.
	CAFile string
}

// keepAliveIdle is how long a session may sit idle before a keep-alive call;
// vCenter drops idle sessions after 30 minutes by default.
const keepAliveIdle = 5 * time.Minute

// Client is a logged-in vCenter connection. It logs in again by itself
// when vCenter forgets the session (an expiry, a vCenter restart).
type Client struct {
	vim   *vim25.Client
	mgr   *session.Manager
	count *counter
}

// Connect logs in to vCenter. Errors never carry the password.
func Connect(ctx context.Context, o Options) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("vcenter url: %w", err)
	}
	if u.User != nil {
		return nil, errors.New("vcenter url: must not contain credentials; use username and password")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("vcenter url %q: scheme must be https", o.URL)
	}
	sc := soap.NewClient(u, o.Insecure)
	if o.CAFile != "" {
		if err := sc.SetRootCAs(o.CAFile); err != nil {
			return nil, fmt.Errorf("vcenter caFile: %w", err)
		}
	}
	// vim25.NewClient must get the soap.Client itself (datastore uploads
	// use its URL); the decorators go on its RoundTripper afterwards.
	vc, err := vim25.NewClient(ctx, sc)
	count := &counter{next: sc}
	if err != nil {
		return nil, fmt.Errorf("vcenter %s: %w", u.Redacted(), mapError(err))
	}
	// relogin sits outside keepalive so that its Login passes through
	// keepalive and restarts it: keepalive stops on its first failed send.
	vc.RoundTripper = &relogin{
		next: keepalive.NewHandlerSOAP(count, keepAliveIdle, nil),
		sm:   *vc.ServiceContent.SessionManager,
		user: o.Username, pass: o.Password,
	}
	mgr := session.NewManager(vc)
	if err := mgr.Login(ctx, url.UserPassword(o.Username, o.Password)); err != nil {
		return nil, fmt.Errorf("vcenter %s: login as %q: %w", u.Redacted(), o.Username, mapError(err))
	}
	return &Client{vim: vc, mgr: mgr, count: count}, nil
}

// Vim returns the underlying govmomi client.
func (c *Client) Vim() *vim25.Client { return c.vim }

// Requests returns how many calls of each vSphere API method this client
// has sent, by method name ("RetrievePropertiesEx", "PowerOnVM_Task", ...).
func (c *Client) Requests() map[string]uint64 { return c.count.snapshot() }

// Close logs out.
func (c *Client) Close(ctx context.Context) error {
	return c.mgr.Logout(ctx)
}

// counter counts SOAP calls by method: the proof that reads cost vCenter
// nothing, and later a metric.
type counter struct {
	next soap.RoundTripper
	m    sync.Map // method name → *atomic.Uint64
}

func (c *counter) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	name := strings.TrimSuffix(reflect.TypeOf(req).Elem().Name(), "Body")
	n, ok := c.m.Load(name)
	if !ok {
		n, _ = c.m.LoadOrStore(name, new(atomic.Uint64))
	}
	n.(*atomic.Uint64).Add(1)
	return c.next.RoundTrip(ctx, req, res)
}

func (c *counter) snapshot() map[string]uint64 {
	out := map[string]uint64{}
	c.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// relogin logs in again and retries once when vCenter answers
// NotAuthenticated: govmomi has no automatic re-login, and vCenter forgets
// sessions on expiry and on restart.
type relogin struct {
	next       soap.RoundTripper
	sm         types.ManagedObjectReference
	user, pass string
	mu         sync.Mutex
	// gen counts logins: of several calls refused at once, the first logs
	// in and the others just retry (a second Login on a live session is
	// refused).
	gen atomic.Uint64
}

func (r *relogin) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	gen := r.gen.Load()
	err := r.next.RoundTrip(ctx, req, res)
	switch req.(type) {
	case *methods.LoginBody, *methods.LogoutBody:
		return err
	}
	if err == nil || !fault.Is(err, &types.NotAuthenticated{}) {
		return err
	}
	if lerr := r.login(ctx, gen); lerr != nil {
		return fmt.Errorf("%w (and logging in again failed: %v)", err, lerr)
	}
	// Decode the retry into a fresh body: decoding into res again would
	// keep the first attempt's fault.
	fresh := reflect.New(reflect.TypeOf(res).Elem())
	err = r.next.RoundTrip(ctx, req, fresh.Interface().(soap.HasFault))
	reflect.ValueOf(res).Elem().Set(fresh.Elem())
	return err
}

func (r *relogin) login(ctx context.Context, gen uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen.Load() != gen {
		return nil // logged in again since the refused call was sent
	}
	if _, err := methods.Login(ctx, r.next, &types.Login{This: r.sm, UserName: r.user, Password: r.pass}); err != nil {
		return err
	}
	r.gen.Add(1)
	return nil
}
