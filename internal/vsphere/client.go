// Package vsphere owns everything that speaks to vCenter through govmomi: the
// connection (keep-alive, re-login, request counting), the watched inventory
// of VMs that every read is served from, the machine.Machine implementation
// over a VM, and the embedded vCenter simulator the bridge runs by default.
package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
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
	// LoginFailures failed logins within LoginWindow at most (defaults
	// config.DefaultLoginFailures per config.DefaultLoginWindow, which
	// own them): after that the client
	// waits instead of trying again, so that it never locks the account
	// (vCenter locks an account after 5 failures by default).
	LoginFailures int
	LoginWindow   time.Duration
	// LoginStore, when set (the state file), keeps the failed-login
	// times, so that the cap holds across restarts: a daemon restarted
	// every few seconds with a wrong password must not send a login per
	// restart. Nil keeps them in memory only.
	LoginStore LoginStore
	// StatePrefix goes before the client's entry in LoginStore, so that
	// each of several vCenters keeps its own record ("" for the first).
	StatePrefix string
	// Log gets connection attempts and failures (Start only).
	Log *slog.Logger
	// NoNMI: this vCenter cannot send an NMI (govmomi's simulator has no
	// SendNMI). A vCenter that refuses one as unimplemented is marked so
	// too, so that NMIs stop being advertised.
	NoNMI bool
}

// LoginStore keeps the failed-login record (a *state.Store).
type LoginStore interface {
	Get(key string, v any) (bool, error)
	Put(key string, v any) error
}

// loginStoreKey is the state entry of the failed logins.
const loginStoreKey = "vcenter/loginFailures"

// loginRecord is the stored failed-login record: for one account on one
// vCenter (another's failures do not count against this one).
type loginRecord struct {
	URL      string      `json:"url"`
	Username string      `json:"username"`
	Failures []time.Time `json:"failures"`
}

// Login retry pacing: exponential from loginBackoff to loginMaxBackoff,
// with jitter.
const (
	loginBackoff    = time.Second
	loginMaxBackoff = 5 * time.Minute
)

// keepAliveIdle is how long a session may sit idle before a keep-alive call;
// vCenter drops idle sessions after 30 minutes by default.
const keepAliveIdle = 5 * time.Minute

// Client is a vCenter connection. It logs in again by itself when vCenter
// forgets the session (an expiry, a vCenter restart), never more often
// than its failed-login cap allows.
type Client struct {
	vim   *vim25.Client
	mgr   *session.Manager
	count *counter
	gate  *loginGate
	opts  Options
	url   *url.URL
	sc    *soap.Client

	// ready is closed once vim and mgr are set (Start connects in the
	// background); status says why not yet.
	ready  chan struct{}
	mu     sync.Mutex
	status error
	// tried is closed once the first attempt has ended.
	tried     chan struct{}
	triedOnce sync.Once

	noNMI atomic.Bool // see Options.NoNMI

	tags *tagReader
}

// Connect connects and logs in to vCenter once, and fails if that fails.
// Errors never carry the password.
func Connect(ctx context.Context, o Options) (*Client, error) {
	c, err := newClient(o)
	if err != nil {
		return nil, err
	}
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Start returns a client that connects and logs in in the background
// until it succeeds or ctx ends: a vCenter that is down, refuses the
// password or fails TLS does not stop the bridge. Attempts back off
// exponentially with jitter, and failed logins stay within the cap.
// Only a malformed URL or an unreadable CA file fails at once.
func Start(ctx context.Context, o Options) (*Client, error) {
	c, err := newClient(o)
	if err != nil {
		return nil, err
	}
	go c.run(ctx)
	return c, nil
}

func newClient(o Options) (*Client, error) {
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
	if o.LoginFailures <= 0 {
		o.LoginFailures = config.DefaultLoginFailures
	}
	if o.LoginWindow <= 0 {
		o.LoginWindow = config.DefaultLoginWindow
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	sc := soap.NewClient(u, o.Insecure)
	if o.CAFile != "" {
		if err := sc.SetRootCAs(o.CAFile); err != nil {
			return nil, fmt.Errorf("vcenter caFile: %w", err)
		}
	}
	gate := &loginGate{max: o.LoginFailures, window: o.LoginWindow, now: time.Now, key: o.StatePrefix + loginStoreKey,
		store: o.LoginStore, account: loginRecord{URL: u.Redacted(), Username: o.Username}, log: o.Log}
	if err := gate.load(); err != nil {
		return nil, err
	}
	c := &Client{
		opts: o, url: u, sc: sc,
		count:  &counter{next: sc},
		gate:   gate,
		ready:  make(chan struct{}),
		tried:  make(chan struct{}),
		status: errors.New("connecting to vCenter"),
	}
	c.noNMI.Store(o.NoNMI)
	c.tags = newTagReader(c)
	return c, nil
}

// connect makes the SOAP client and logs in, once.
func (c *Client) connect(ctx context.Context) error {
	// vim25.NewClient must get the soap.Client itself (datastore uploads
	// use its URL); the decorators go on its RoundTripper afterwards.
	vc, err := vim25.NewClient(ctx, c.sc)
	if err != nil {
		return c.explain(err, false)
	}
	// relogin sits outside keepalive so that its Login passes through
	// keepalive and restarts it: keepalive stops on its first failed send.
	vc.RoundTripper = &relogin{
		next: keepalive.NewHandlerSOAP(c.count, keepAliveIdle, nil),
		sm:   *vc.ServiceContent.SessionManager,
		user: c.opts.Username, pass: c.opts.Password,
		gate: c.gate, explain: c.explain,
	}
	mgr := session.NewManager(vc)
	if when, ok := c.gate.allow(); !ok {
		return c.postponed(when)
	}
	if err := mgr.Login(ctx, url.UserPassword(c.opts.Username, c.opts.Password)); err != nil {
		c.gate.record(err)
		return c.explain(err, true)
	}
	c.vim, c.mgr = vc, mgr
	c.mu.Lock()
	c.status = nil
	c.mu.Unlock()
	close(c.ready)
	c.triedOnce.Do(func() { close(c.tried) })
	return nil
}

// run connects until it succeeds or ctx ends.
func (c *Client) run(ctx context.Context) {
	backoff := loginBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, loginTimeout)
		err := c.connect(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				c.opts.Log.Info("vCenter connected", "url", c.url.Redacted(), "user", c.opts.Username, "attempts", attempt)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		wait := jitter(backoff)
		if when, ok := c.gate.allow(); !ok {
			wait = max(wait, time.Until(when)+jitter(time.Second))
			err = fmt.Errorf("%w; next login attempt at %s: %d failed logins within %v already (vcenter.loginFailures, vcenter.loginWindow), and vCenter locks an account after 5 by default",
				err, time.Now().Add(wait).Format(time.TimeOnly), c.gate.max, c.gate.window)
		}
		c.mu.Lock()
		c.status = err
		c.mu.Unlock()
		c.triedOnce.Do(func() { close(c.tried) })
		c.opts.Log.Error("vCenter not connected; BMCs answer node-busy until it is", "err", err, "retry_in", wait.Round(time.Second))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, loginMaxBackoff)
	}
}

// loginTimeout bounds one connection attempt.
const loginTimeout = 30 * time.Second

// jitter spreads d by ±25 %, so that bridges restarted together do not
// log in together.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Tried is closed once the first connection attempt has ended, in
// success or failure.
func (c *Client) Tried() <-chan struct{} { return c.tried }

// Ready is closed once the client is connected and logged in.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Status returns nil once connected, else why not yet, wrapping
// machine.ErrUnavailable.
func (c *Client) Status() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status == nil || errors.Is(c.status, machine.ErrUnavailable) {
		return c.status
	}
	return fmt.Errorf("%w: %v", machine.ErrUnavailable, c.status)
}

// LoginFailures returns the failed logins the client counts against its
// cap (those within the window).
func (c *Client) LoginFailures() int { return c.gate.count() }

// postponed is the error of a login the cap did not allow.
func (c *Client) postponed(when time.Time) error {
	return fmt.Errorf("vcenter %s: login as %q postponed until %s: %d failed logins within %v already (vcenter.loginFailures, vcenter.loginWindow), and vCenter locks an account after 5 by default; fix the password (vcenter.password or passwordFile) and restart, or wait: %w",
		c.url.Redacted(), c.opts.Username, when.Format(time.TimeOnly), c.gate.max, c.gate.window, machine.ErrUnavailable)
}

// explain turns a connection or login error into one that says what to do,
// naming the user for a login and caFile and insecure for TLS.
func (c *Client) explain(err error, login bool) error {
	where := "vcenter " + c.url.Redacted()
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Errorf("%s: TLS: vCenter's certificate is not trusted (%v): set vcenter.caFile to the PEM file of the CA that signed it (caFile is %q), or vcenter.insecure: true to skip verification: %w",
			where, err, c.opts.CAFile, machine.ErrUnavailable)
	case errors.As(err, &record):
		return fmt.Errorf("%s: TLS: the server does not speak TLS (%v): check the URL's scheme and port: %w", where, err, machine.ErrUnavailable)
	case credentialsRefused(err):
		return fmt.Errorf("%s: login as %q refused (InvalidLogin): the password is wrong, or the account is locked, disabled or expired; check vcenter.password/passwordFile (or %s) and the account in vCenter: %w",
			where, c.opts.Username, "IPMI_VMWARE_BRIDGE_VCENTER_PASSWORD", machine.ErrUnavailable)
	case login && fault.Is(err, &types.NoPermission{}):
		return fmt.Errorf("%s: login as %q refused (NoPermission): the user has no permission on this vCenter: %w", where, c.opts.Username, machine.ErrUnavailable)
	case isNetError(err) && !errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: cannot reach vCenter (%v): check vcenter.url and that vCenter is up: %w", where, err, machine.ErrUnavailable)
	}
	if login {
		return fmt.Errorf("%s: login as %q: %w", where, c.opts.Username, mapError(err))
	}
	return fmt.Errorf("%s: %w", where, mapError(err))
}

// loginGate caps failed logins: at most max within any window. With a
// store, the failures are read at start and written at each one, so that
// the cap spans restarts.
type loginGate struct {
	mu       sync.Mutex
	max      int
	window   time.Duration
	failures []time.Time
	now      func() time.Time
	store    LoginStore
	// key is the store's entry (loginStoreKey if "").
	key string
	// account is whose failures the store keeps.
	account loginRecord
	// log gets a failure to save the record (nil: slog.Default).
	log *slog.Logger
}

func (g *loginGate) storeKey() string {
	if g.key == "" {
		return loginStoreKey
	}
	return g.key
}

// load reads the stored failures of this account. A record that cannot be
// read is an error: starting as if there were none could lock the account.
func (g *loginGate) load() error {
	if g.store == nil {
		return nil
	}
	var rec loginRecord
	ok, err := g.store.Get(g.storeKey(), &rec)
	if err != nil {
		return fmt.Errorf("vcenter failed-login record (state entry %q): %w", g.storeKey(), err)
	}
	if ok && rec.URL == g.account.URL && rec.Username == g.account.Username {
		now := g.now()
		for _, t := range rec.Failures {
			if t.After(now) {
				t = now // a clock set back: the failure counts from now
			}
			g.failures = append(g.failures, t)
		}
		slices.SortFunc(g.failures, func(a, b time.Time) int { return a.Compare(b) })
	}
	return nil
}

// saveLocked writes the failures to the store, if any. A failure to write
// is logged: the cap still holds in memory.
func (g *loginGate) saveLocked() {
	if g.store == nil {
		return
	}
	rec := g.account
	rec.Failures = slices.Clone(g.failures)
	if err := g.store.Put(g.storeKey(), rec); err != nil {
		log := g.log
		if log == nil {
			log = slog.Default()
		}
		log.Error("vcenter failed-login record not saved: the cap on failed logins will not survive a restart", "err", err)
	}
}

// allow reports whether a login may be sent now, and otherwise when.
func (g *loginGate) allow() (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pruneLocked()
	if len(g.failures) < g.max {
		return time.Time{}, true
	}
	return g.failures[0].Add(g.window), false
}

// record counts a failed login: only an answer that refuses the
// credentials (InvalidLogin: a wrong password, or an account locked,
// disabled or expired), which is what vCenter's lockout counts. A timeout,
// a connection or TLS failure, or another fault is not counted: a slow SSO
// just after a vCenter restart must not use up the cap with the right
// password. Retries of those are paced by the callers' backoff.
func (g *loginGate) record(err error) {
	if !credentialsRefused(err) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pruneLocked()
	g.failures = append(g.failures, g.now())
	g.saveLocked()
}

// credentialsRefused reports a login answered with a refusal of the
// credentials: InvalidLogin from SOAP, 401 from the vAPI (tags.go).
func credentialsRefused(err error) bool {
	return err != nil && (fault.Is(err, &types.InvalidLogin{}) || rest.IsStatusError(err, http.StatusUnauthorized))
}

func (g *loginGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pruneLocked()
	return len(g.failures)
}

func (g *loginGate) pruneLocked() {
	cut := g.now().Add(-g.window)
	for len(g.failures) > 0 && !g.failures[0].After(cut) {
		g.failures = g.failures[1:]
	}
}

// Vim returns the underlying govmomi client.
func (c *Client) Vim() *vim25.Client { return c.vim }

// Requests returns how many calls of each vSphere API method this client
// has sent, by method name ("RetrievePropertiesEx", "PowerOnVM_Task", ...).
func (c *Client) Requests() map[string]uint64 { return c.count.snapshot() }

// Close logs out.
func (c *Client) Close(ctx context.Context) error {
	select {
	case <-c.ready:
		return errors.Join(c.tags.logout(ctx), c.mgr.Logout(ctx))
	default:
		return nil
	}
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
//
// The login runs in the background, one at a time, under its own timeout
// (loginTimeout), not under the refused call's context: a heartbeat's 2 s
// must not cut short a login that a slow SSO (just after a vCenter
// restart) answers in 3. Callers wait for it within their own context and
// otherwise get machine.ErrUnavailable; a later call after the login
// succeeded goes through.
type relogin struct {
	next       soap.RoundTripper
	sm         types.ManagedObjectReference
	user, pass string
	// gate caps failed logins; explain words a failure.
	gate    *loginGate
	explain func(error, bool) error

	mu sync.Mutex
	// running is closed when the login in flight ends; nil when none is.
	running chan struct{}
	// last is the error of the last login that ended (nil: success).
	last error
	// gen counts logins: of several calls refused at once, one starts a
	// login and the others wait for it (a second Login on a live session
	// is refused).
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
		return fmt.Errorf("%w (and logging in again: %w)", err, lerr)
	}
	// Decode the retry into a fresh body: decoding into res again would
	// keep the first attempt's fault.
	fresh := reflect.New(reflect.TypeOf(res).Elem())
	err = r.next.RoundTrip(ctx, req, fresh.Interface().(soap.HasFault))
	reflect.ValueOf(res).Elem().Set(fresh.Elem())
	return err
}

// login makes sure a login newer than gen is done or under way, and waits
// for it within ctx.
func (r *relogin) login(ctx context.Context, gen uint64) error {
	r.mu.Lock()
	if r.gen.Load() != gen {
		r.mu.Unlock()
		return nil // logged in again since the refused call was sent
	}
	done := r.running
	if done == nil {
		if when, ok := r.gate.allow(); !ok {
			r.mu.Unlock()
			return fmt.Errorf("%w: logging in again postponed until %s: %d failed logins within %v already (vcenter.loginFailures, vcenter.loginWindow)",
				machine.ErrUnavailable, when.Format(time.TimeOnly), r.gate.max, r.gate.window)
		}
		done = make(chan struct{})
		r.running = done
		go r.background(done)
	}
	r.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("%w: the vCenter session was lost; logging in again (in the background)", machine.ErrUnavailable)
	}
	if r.gen.Load() != gen {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return fmt.Errorf("%w: logging in to vCenter again", machine.ErrUnavailable)
	}
	return r.last
}

// background sends one Login under its own timeout and publishes the
// outcome.
func (r *relogin) background(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	defer cancel()
	_, err := methods.Login(ctx, r.next, &types.Login{This: r.sm, UserName: r.user, Password: r.pass})
	if err != nil {
		r.gate.record(err)
		err = r.explain(err, true)
		if !errors.Is(err, machine.ErrUnavailable) {
			err = fmt.Errorf("%w: %v", machine.ErrUnavailable, err)
		}
	}
	r.mu.Lock()
	if err == nil {
		r.gen.Add(1)
	}
	r.last, r.running = err, nil
	r.mu.Unlock()
	close(done)
}
