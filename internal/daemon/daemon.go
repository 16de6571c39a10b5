// Package daemon owns `ipmi-vmware-bridge serve`: it puts the parts
// together (the vCenter or the embedded simulator, the inventory, the
// BMCs, the state file, metrics, the management API, Redfish and the
// serial console concentrator), prints
// the banner, reloads the configuration on SIGHUP and stops cleanly.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/metrics"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Options are what `serve` was asked to do.
type Options struct {
	// Config is the configuration file; empty runs the embedded simulator.
	Config string
	// Simulator mode: how many VMs, where their BMCs listen (BasePort 0
	// picks free ports), where the SDK listens, and optionally a state
	// directory (default: state in memory).
	VMs      int
	Listen   string
	BasePort int
	SimAddr  string
	StateDir string
	// Socket is the management API's unix socket; "" uses api.DefaultSocket.
	Socket string
	// MetricsAddress overrides the configuration's ("-" turns it off).
	MetricsAddress string
	// RedfishAddress overrides the configuration's ("-" turns it off).
	RedfishAddress string
	// ConsoleAddress overrides the configuration's console.address, or
	// simulator mode's config.SimConsoleAddress ("-" turns it off).
	ConsoleAddress string
	Log            *slog.Logger
	// Stdout gets the banner.
	Stdout io.Writer
	// Ready, when set, is called once the daemon serves, right after the
	// banner, with where it serves: programs and tests wait on it rather
	// than read the banner, which is for people. It must not block.
	Ready func(Endpoints)
}

// Endpoints are where a serving daemon answers, as its banner shows them.
type Endpoints struct {
	// Socket is the management API's unix socket.
	Socket string
	// Metrics is the URL of /metrics, Redfish that of the Redfish service
	// root (https://HOST:PORT/redfish/v1); "" when turned off.
	Metrics, Redfish string
	// Console is the serial console concentrator's address (host:port),
	// "" when turned off.
	Console string
}

// Daemon is a running bridge.
type Daemon struct {
	opts Options
	log  *slog.Logger
	sim  *vsphere.Simulator
	// vcs are the bridged vCenters (vcenters.go), one in simulator mode.
	vcs    []*vcenter
	bridge *bridge.Bridge
	state  *state.Store
	cfg    *config.Config
	// guard locks out guessers of a BMC's password, by IPMI and Redfish.
	guard *guard.Guard
	// defaultAddress is where `bmc add` puts a BMC when not told.
	defaultAddress string
	// redfishAddr is where Redfish listens, once it does.
	redfishAddr string
	// conc is the serial console concentrator, nil when turned off.
	conc *console.Concentrator

	mu sync.Mutex // serialises reloads
}

// Run serves until ctx ends (or SIGINT/SIGTERM); SIGHUP reloads the
// configuration file. It prepares what can fail, connects to vCenter,
// then serves; each step undoes itself at the exit, in reverse order.
func Run(ctx context.Context, opts Options) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d, s, err := prepare(ctx, opts)
	if err != nil {
		return err
	}
	defer d.release(s.ls)
	disconnect, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer disconnect()
	return d.serve(ctx, s)
}

// setup is what prepare makes for the rest of Run.
type setup struct {
	specs   []bridge.Spec
	bopts   bridge.Options
	ls      *listeners
	metrics *metrics.Metrics
	rtls    *tls.Config // nil when Redfish is off
}

// prepare does everything that can still make the daemon exit, before
// the first vCenter login: a daemon that logs in and then exits is
// restarted by systemd every few seconds, and with a wrong password each
// restart would be a failed login (vCenter locks the account after 5).
// The failed-login cap is kept in the state file for the same reason.
func prepare(ctx context.Context, opts Options) (_ *Daemon, _ *setup, err error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	d, s := &Daemon{opts: opts, log: opts.Log}, &setup{}
	defer func() {
		if err != nil {
			d.release(s.ls)
		}
	}()
	if s.specs, err = d.load(ctx); err != nil {
		return nil, nil, err
	}
	if s.ls, err = d.bind(); err != nil {
		return nil, nil, err
	}
	s.metrics = metrics.New(d.vcenterSamples, d.sessionCounts) // vcenters.go
	if s.bopts, err = d.bridgeOptions(s.metrics); err != nil {
		return nil, nil, err
	}
	if err = d.startConcentrator(s.ls.console, &s.bopts, s.metrics); err != nil { // console.go
		return nil, nil, err
	}
	if s.rtls, err = d.redfishTLS(ctx, s.ls.redfish); err != nil { // redfish.go
		return nil, nil, err
	}
	return d, s, nil
}

// release closes what prepare opened: the listeners (ls may be nil), then
// the simulator.
func (d *Daemon) release(ls *listeners) {
	if ls != nil {
		ls.close()
	}
	if d.sim != nil {
		d.sim.Close()
	}
}

// The endpoint finds SOL's hooks on its Observer by type assertion: this
// keeps the metrics from losing them silently.
var _ ipmi.SOLObserver = (*metrics.Metrics)(nil)

// bridgeOptions are the BMCs' settings from the configuration (the
// defaults in simulator mode), counting into m. It makes the guard that
// IPMI and Redfish share.
func (d *Daemon) bridgeOptions(m *metrics.Metrics) (bridge.Options, error) {
	gc := guard.Default
	gc.Log = d.log
	bopts := bridge.Options{
		Log: d.log, State: d.state, Wrap: m.Instrument,
		Endpoint: ipmi.Config{Observer: m},
	}
	if c := d.cfg; c != nil {
		gc.Failures, gc.Window, gc.Lockout, gc.SetupRate = c.IPMI.LockoutFailures, c.IPMI.LockoutWindow, c.IPMI.LockoutDuration, c.IPMI.SessionSetupRate
		bopts.SoftOffTimeout, bopts.BootHold = c.SoftOffTimeout, c.OneTimeBootHold
		bopts.FollowEFIBit = vsphere.FirmwarePolicy(c.Boot.FollowEFIBit)
		bopts.Endpoint.SessionTimeout, bopts.Endpoint.SessionLimit = c.IPMI.SessionTimeout, c.IPMI.SessionLimit
	}
	d.guard = guard.New(gc)
	bopts.Endpoint.Guard = d.guard
	bopts.Media = map[string]*vsphere.MediaService{}
	for _, v := range d.vcs {
		var err error
		if v.media, err = d.mediaService(m, v.statePrefix()); err != nil { // media.go
			return bopts, err
		}
		bopts.Media[v.key] = v.media
	}
	return bopts, nil
}

// connect starts each vCenter's client, inventory and media collector.
// vCenter is connected in the background: a wrong password, a vCenter
// that is down or a TLS failure keeps the daemon up, its BMCs answering
// node-busy and /readyz failing, with the reason in the log and in `bmc
// list`; logins are retried within the failed-login cap. disconnect
// stops them and logs out.
func (d *Daemon) connect(ctx context.Context) (disconnect func(), err error) {
	// The inventories outlive the BMCs, which read from them while
	// closing: their context ends with disconnect, which Run calls after
	// serve.
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var g errgroup.Group
	stop := func() {
		stopWatch()
		_ = g.Wait()
		d.closeVCenters(ctx)
	}
	if err := d.connectVCenters(ctx, wctx, &g); err != nil { // vcenters.go
		stop()
		return nil, err
	}
	return stop, nil
}

// awaitInventory waits for each inventory's first synchronisation, so
// that the banner shows BMCs serving, and says whether to go on (not when
// ctx ended). The vCenters share one startWait: one that hangs delays the
// start once, not once per vCenter.
func (d *Daemon) awaitInventory(ctx context.Context) bool {
	// The embedded simulator is local and cannot hang: its first
	// synchronisation is waited for however long it takes (10,000 VMs
	// take longer than startWait), or `serve --vms 10000` would start
	// with no BMC. A deadline, not a timer channel, which fires once:
	// every vCenter must see it.
	wait, cancel := context.WithCancel(context.Background())
	if d.sim == nil {
		wait, cancel = context.WithTimeout(wait, startWait)
	}
	defer cancel()
	for _, v := range d.vcs {
		if !awaitOne(ctx, v, wait.Done()) {
			return false
		}
	}
	for _, v := range d.vcs {
		if err := v.inv.Available(); err != nil {
			d.log.Error("serving without this vCenter for now: its BMCs answer node-busy (C0h) and /readyz fails until it is back", "vcenter", v.name, "err", err)
		}
	}
	return true
}

// awaitOne waits for v's first synchronisation until wait is closed, or
// less when its login fails or it cannot be reached; false when ctx
// ended.
func awaitOne(ctx context.Context, v *vcenter, wait <-chan struct{}) bool {
	select {
	case <-v.inv.Ready():
	case <-v.client.Tried():
		// Give the first synchronisation a moment once connected; a
		// failed login or an unreachable vCenter does not wait.
		if v.client.Status() == nil {
			select {
			case <-v.inv.Ready():
			case <-wait:
			case <-ctx.Done():
				return false
			}
		}
	case <-wait:
	case <-ctx.Done():
		return false
	}
	return true
}

// serve starts the BMCs and the servers, prints the banner, tells
// Options.Ready, and reloads on SIGHUP until ctx ends. At the exit the
// servers stop first, then the BMCs.
func (d *Daemon) serve(ctx context.Context, s *setup) error {
	if !d.awaitInventory(ctx) {
		return nil
	}
	d.bridge = bridge.Start(ctx, d.inventories(), s.specs, s.bopts)
	defer func() { _ = d.bridge.Close() }()
	if e := d.enroller(s.metrics); e != nil { // enroll.go
		ectx, stopEnrol := context.WithCancel(ctx)
		var eg errgroup.Group
		eg.Go(func() error { e.Run(ectx); return nil })
		defer func() { stopEnrol(); _ = eg.Wait() }() // before the bridge closes
	}

	sctx, cancelServers := context.WithCancel(ctx)
	var servers errgroup.Group
	defer func() { cancelServers(); _ = servers.Wait() }()
	ep, err := d.startServers(sctx, &servers, s)
	if err != nil {
		return err
	}
	// Caught from before the banner: a SIGHUP sent as soon as the daemon
	// says it serves reloads rather than kills it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d.banner(ep)
	if d.bridge.Running() == 0 && len(s.specs) > 0 && d.sim != nil {
		return errors.New("no BMC could be started")
	}
	if d.opts.Ready != nil {
		d.opts.Ready(ep)
	}
	for {
		select {
		case <-ctx.Done():
			d.log.Info("shutting down")
			return nil
		case <-hup:
			if err := d.Reload(); err != nil {
				d.log.Error("configuration not reloaded; the running one stays", "err", err)
			}
		}
	}
}

// startServers serves the management API, metrics and Redfish in g until
// ctx ends, and says where. A server that fails is logged and the others
// serve on: the BMCs do not depend on any of them.
func (d *Daemon) startServers(ctx context.Context, g *errgroup.Group, s *setup) (Endpoints, error) {
	serve := func(name string, fn func() error) {
		g.Go(func() error {
			if err := fn(); err != nil {
				d.log.Error(name+" stopped", "err", err)
			}
			return nil
		})
	}
	ep := Endpoints{Socket: s.ls.socket}
	serve("management API", func() error { return serveHTTP(ctx, s.ls.api, api.Handler(d, d.log)) })
	if s.ls.metrics != nil {
		ep.Metrics = "http://" + s.ls.metrics.Addr().String() + "/metrics"
		serve("metrics", func() error { return serveHTTP(ctx, s.ls.metrics, s.metrics.Handler(d.ready, d.log)) })
	}
	if d.conc != nil {
		ep.Console = s.ls.console.Addr().String()
		serve("console concentrator", func() error { return d.conc.Serve(ctx, s.ls.console) })
	}
	var err error
	ep.Redfish, err = d.startRedfish(ctx, serve, s.ls.redfish, s.rtls, s.metrics.Redfish()) // redfish.go
	return ep, err
}

// startWait bounds how long serve waits for vCenter before serving
// without it.
const startWait = 10 * time.Second

// serveHTTP serves h on l until ctx ends, then shuts down (the management
// API and metrics: plain HTTP, small requests). The requests' context ends
// with ctx: Shutdown does not wait for a hijacked connection (the
// management API's console stream), which ends with its request's.
func serveHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// load reads the configuration, or starts the simulator, and opens the
// state file.
func (d *Daemon) load(ctx context.Context) ([]bridge.Spec, error) {
	o := d.opts
	stateDir := o.StateDir
	var specs []bridge.Spec
	if o.Config != "" {
		cfg, err := config.Load(o.Config)
		if err != nil {
			return nil, err
		}
		d.cfg = cfg
		d.vcs = configVCenters(cfg) // vcenters.go
		specs = configSpecs(cfg)
		stateDir = cfg.StateDir
		d.defaultAddress = config.DefaultAddress
	} else {
		if o.BasePort < 0 || o.BasePort+o.VMs > 65536 {
			return nil, fmt.Errorf("--base-port %d with %d VMs runs past port 65535", o.BasePort, o.VMs)
		}
		sim, err := vsphere.StartSimulator(ctx, o.SimAddr, o.VMs)
		if err != nil {
			return nil, err
		}
		d.sim = sim
		d.vcs = []*vcenter{{name: config.DefaultVCenterName, opts: vsphere.Options{URL: sim.URL.String(),
			Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: sim.CAFile, NoNMI: true}}}
		// Every simulated VM's BMC offers its console while the
		// concentrator is on: there is no file to say otherwise.
		consoles := d.consoleConfig().Address != ""
		for i, name := range sim.VMs {
			port := 0
			if o.BasePort != 0 {
				port = o.BasePort + i
			}
			specs = append(specs, bridge.Spec{VM: name, Address: net.JoinHostPort(o.Listen, strconv.Itoa(port)), Username: config.SimUser, Password: config.SimPassword, Console: consoles})
		}
		d.defaultAddress = o.Listen
	}
	if stateDir != "" {
		st, err := state.Open(filepath.Join(stateDir, "state.json"))
		if err != nil {
			return nil, err
		}
		if st.Damaged != nil {
			d.log.Error("state file damaged; starting from the configuration", "err", st.Damaged)
		}
		d.state = st
	}
	return specs, nil
}

// configSpecs are the BMCs of cfg, each naming its vCenter by key (see
// vcenter.key).
func configSpecs(cfg *config.Config) []bridge.Spec {
	var specs []bridge.Spec
	for _, b := range cfg.BMCs {
		specs = append(specs, bridge.Spec{VM: b.VM, VCenter: vcenterKey(cfg, b.VCenter), Address: b.Endpoint(), Username: b.Username,
			Password: b.Password, Where: b.Where, Console: b.Console, SOLPort: b.SOLPort, NoIPMI: b.NoIPMI, NoRedfish: b.NoRedfish})
	}
	return specs
}

// Reload re-reads the configuration file and reconciles the BMCs with it.
// A file with errors changes nothing. vCenter settings take a restart.
func (d *Daemon) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.Config == "" {
		return fmt.Errorf("%w: no configuration file to reload (simulator mode)", api.ErrInvalid)
	}
	cfg, err := config.Load(d.opts.Config)
	if err != nil {
		return err
	}
	if !sameVCenterNames(d.cfg, cfg) {
		// The BMCs name their vCenters; the daemon has the old ones.
		return fmt.Errorf("%w: the vCenters' names changed (vcenter, vcenters): restart to bridge them; nothing was reloaded", api.ErrInvalid)
	}
	old, next := *d.cfg, *cfg
	old.BMCs, next.BMCs = nil, nil
	if !reflect.DeepEqual(old, next) {
		d.log.Warn("settings other than bmcs changed; they take effect at the next restart")
	}
	d.bridge.Reload(configSpecs(cfg))
	d.log.Info("configuration reloaded", "file", d.opts.Config, "bmcs", len(cfg.BMCs))
	return nil
}

// sameVCenterNames reports whether a and b name the same vCenters, in
// the same order.
func sameVCenterNames(a, b *config.Config) bool {
	return slices.EqualFunc(a.VCenters, b.VCenters, func(x, y config.VCenter) bool { return x.Name == y.Name })
}

func (d *Daemon) metricsAddress() string {
	file := config.DefaultMetricsAddress
	if d.cfg != nil {
		file = d.cfg.MetricsAddress
	}
	return override(d.opts.MetricsAddress, file)
}

// override is a listen address given by flag (or "-" for none) over the
// one from the configuration file or the default.
func override(flag, file string) string {
	switch flag {
	case "-":
		return ""
	case "":
		return file
	}
	return flag
}

// ready is /readyz: vCenter in sync and at least one BMC serving.
func (d *Daemon) ready() error {
	if err := d.available(); err != nil { // vcenters.go
		return err
	}
	if d.bridge.Running() == 0 {
		return errors.New("no BMC is serving")
	}
	return nil
}

// sessionCounts reports, by BMC address, the sessions open and those in
// setup.
func (d *Daemon) sessionCounts() (active, pending map[string]int) {
	active, pending = map[string]int{}, map[string]int{}
	if d.bridge == nil {
		return active, pending
	}
	for _, i := range d.running() {
		if !i.Spec.NoIPMI {
			active[i.Spec.Address] = len(i.Sessions)
			pending[i.Spec.Address] = i.Pending
		}
	}
	return active, pending
}

func (d *Daemon) banner(ep Endpoints) {
	w := d.opts.Stdout
	if d.sim != nil {
		fmt.Fprintf(w, "ipmi-vmware-bridge: bridging %d VMs of an embedded vCenter simulator\n", len(d.sim.VMs))
		fmt.Fprintf(w, "  vCenter SDK: %s  (user %s, password %s; e.g. GOVC_URL=%s GOVC_USERNAME=%s GOVC_PASSWORD=%s GOVC_INSECURE=1 govc ls /DC0/vm)\n",
			d.sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, d.sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword)
	} else {
		for _, vc := range d.cfg.VCenters {
			fmt.Fprintf(w, "ipmi-vmware-bridge: bridging %s (%s)\n", vc.URL, vc.Name)
		}
	}
	fmt.Fprintf(w, "  management: ipmi-vmware-bridge bmc list --socket %s\n", ep.Socket)
	if ep.Metrics != "" {
		fmt.Fprintf(w, "  metrics:    %s\n", ep.Metrics)
	}
	if ep.Redfish != "" {
		fmt.Fprintf(w, "  redfish:    %s  (Metal3: redfish-virtualmedia://HOST:PORT/redfish/v1/Systems/VM-NAME)\n", ep.Redfish)
	}
	if ep.Console != "" {
		fmt.Fprintf(w, "  console:    %s  (vSPC for the VMs' serial ports; attach: ipmi-vmware-bridge console VM-NAME --socket %s)\n", ep.Console, ep.Socket)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tBMC\tTRY")
	for _, bm := range d.bridge.BMCs() {
		i := bm.Info()
		if i.Status != bridge.Running {
			where := ""
			if i.Spec.Where != "" {
				where = " (" + i.Spec.Where + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v%s\n", i.Spec.VM, i.Status, i.Err, where)
			continue
		}
		if i.Addr == nil {
			fmt.Fprintf(tw, "%s\tRedfish only\tcurl -k -u %s:%s %s/Systems/%s\n", i.Name, i.Spec.Username, d.passwordHint(i.Spec.Password), ep.Redfish, i.Name)
			continue
		}
		host, port, _ := net.SplitHostPort(i.Addr.String())
		fmt.Fprintf(tw, "%s\tudp://%s\tipmitool -I lanplus -H %s -p %s -U %s -P %s power status\n",
			i.Name, i.Addr, displayHost(host), port, i.Spec.Username, d.passwordHint(i.Spec.Password))
	}
	_ = tw.Flush()
	if d.sim != nil {
		fmt.Fprintln(w, "\nTo bridge a real vCenter, run: ipmi-vmware-bridge serve --config bridge.yaml (see README.md for the file).")
	}
}

// passwordHint prints the simulator's well-known password in simulator
// mode and hides every configured one, even one that happens to read
// "password": a real BMC password must not reach a terminal or a log.
func (d *Daemon) passwordHint(p string) string {
	if d.sim != nil && p == config.SimPassword {
		return p
	}
	return "'<password>'"
}

func displayHost(h string) string {
	if h == "0.0.0.0" || h == "::" || h == "" {
		return "127.0.0.1"
	}
	return h
}
