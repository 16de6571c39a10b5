// Package daemon owns `ipmi-vmware-bridge serve`: it puts the parts
// together (the vCenter or the embedded simulator, the inventory, the
// BMCs, the state file, metrics, the management API and Redfish), prints
// the banner, reloads the configuration on SIGHUP and stops cleanly.
package daemon

import (
	"context"
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
	"strconv"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/metrics"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// The simulator's BMC credentials, printed in the banner.
const (
	SimUser     = "admin"
	SimPassword = "password"
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
	Log            *slog.Logger
	// Stdout gets the banner.
	Stdout io.Writer
}

// Daemon is a running bridge.
type Daemon struct {
	opts   Options
	log    *slog.Logger
	sim    *vsphere.Simulator
	client *vsphere.Client
	inv    *vsphere.Inventory
	bridge *bridge.Bridge
	state  *state.Store
	cfg    *config.Config
	// guard locks out guessers of a BMC's password, by IPMI and Redfish.
	guard *guard.Guard
	// defaultAddress is where `bmc add` puts a BMC when not told.
	defaultAddress string
	// redfishAddr is where Redfish listens, once it does.
	redfishAddr string

	mu sync.Mutex // serialises reloads
}

// Run serves until ctx ends (or SIGINT/SIGTERM); SIGHUP reloads the
// configuration file.
func Run(ctx context.Context, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d := &Daemon{opts: opts, log: opts.Log}
	specs, vopts, err := d.load(ctx)
	if err != nil {
		return err
	}
	if d.sim != nil {
		defer d.sim.Close()
	}
	ls, err := d.bind()
	if err != nil {
		return err
	}
	defer ls.close()

	// Everything that can still make the daemon exit happens before the
	// first vCenter login: a daemon that logs in and then exits is
	// restarted by systemd every few seconds, and with a wrong password
	// each restart would be a failed login (vCenter locks the account
	// after 5). The failed-login cap is kept in the state file for the
	// same reason.
	m := metrics.New(d.vcenterRequests, func() bool { return d.inv != nil && d.inv.Available() == nil }, d.sessionCounts)
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
		bopts.MediaDatastore, bopts.MediaFolder = c.Media.Datastore, c.Media.Folder
		bopts.Endpoint.SessionTimeout, bopts.Endpoint.SessionLimit = c.IPMI.SessionTimeout, c.IPMI.SessionLimit
	}
	d.guard = guard.New(gc)
	bopts.Endpoint.Guard = d.guard
	if bopts.Media, err = d.mediaService(m); err != nil { // media.go
		return err
	}
	rtls, err := d.redfishTLS(ctx, ls.redfish) // redfish.go
	if err != nil {
		return err
	}

	// vCenter is connected in the background: a wrong password, a
	// vCenter that is down or a TLS failure keeps the daemon up, its BMCs
	// answering node-busy and /readyz failing, with the reason in the log
	// and in `bmc list`; logins are retried within the failed-login cap.
	vopts.Log = d.log
	if d.state != nil {
		vopts.LoginStore = d.state
	}
	if d.client, err = vsphere.Start(ctx, vopts); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = d.client.Close(cctx) // a vCenter that stopped answering must not hold up the exit
	}()

	// The inventory outlives the BMCs, which read from it while closing.
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	d.inv = vsphere.NewInventory(d.client, d.log)
	watching := make(chan struct{})
	go func() { d.inv.Run(wctx); close(watching) }()
	defer func() { stopWatch(); <-watching }()
	// The embedded simulator is local and cannot hang: its first
	// synchronisation is waited for however long it takes (10,000 VMs
	// take longer than startWait), or `serve --vms 10000` would start
	// with no BMC.
	wait := time.After(startWait)
	if d.sim != nil {
		wait = nil
	}
	select {
	case <-d.inv.Ready():
	case <-d.client.Tried():
		// Give the first synchronisation a moment once connected, so
		// that the banner shows BMCs serving; a failed login or an
		// unreachable vCenter does not wait.
		if d.client.Status() == nil {
			select {
			case <-d.inv.Ready():
			case <-wait:
			case <-ctx.Done():
				return nil
			}
		}
	case <-wait:
	case <-ctx.Done():
		return nil
	}
	if err := d.inv.Available(); err != nil {
		d.log.Error("serving without vCenter for now: BMCs answer node-busy (C0h) and /readyz fails until it is back", "err", err)
	}

	go bopts.Media.Run(wctx, d.inv, time.Minute)
	d.bridge = bridge.Start(ctx, d.inv, specs, bopts)
	defer func() { _ = d.bridge.Close() }()

	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, cancelServers := context.WithCancel(ctx)
	defer cancelServers()
	serve := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				d.log.Error(name+" stopped", "err", err)
			}
		}()
	}

	serve("management API", func() error { return serveHTTP(sctx, ls.api, api.Handler(d, d.log)) })
	var metricsURL string
	if ls.metrics != nil {
		metricsURL = "http://" + ls.metrics.Addr().String() + "/metrics"
		serve("metrics", func() error { return serveHTTP(sctx, ls.metrics, m.Handler(d.ready, d.log)) })
	}
	redfishURL, err := d.startRedfish(sctx, serve, ls.redfish, rtls, m.Redfish())
	if err != nil {
		return err
	}

	d.banner(ls.socket, metricsURL, redfishURL)
	if d.bridge.Running() == 0 && len(specs) > 0 && d.sim != nil {
		return errors.New("no BMC could be started")
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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

// vcenterRequests counts the vSphere calls sent, for metrics (none before
// the client exists).
func (d *Daemon) vcenterRequests() map[string]uint64 {
	if d.client == nil {
		return map[string]uint64{}
	}
	return d.client.Requests()
}

// startWait bounds how long serve waits for vCenter before serving
// without it.
const startWait = 10 * time.Second

// serveHTTP serves h on l until ctx ends, then shuts down (the management
// API and metrics: plain HTTP, small requests).
func serveHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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
func (d *Daemon) load(ctx context.Context) ([]bridge.Spec, vsphere.Options, error) {
	o := d.opts
	stateDir := o.StateDir
	var specs []bridge.Spec
	var vopts vsphere.Options
	if o.Config != "" {
		cfg, err := config.Load(o.Config)
		if err != nil {
			return nil, vopts, err
		}
		d.cfg = cfg
		vopts = vsphere.Options{URL: cfg.VCenter.URL, Username: cfg.VCenter.Username, Password: cfg.VCenter.Password, Insecure: cfg.VCenter.Insecure, CAFile: cfg.VCenter.CAFile,
			LoginFailures: cfg.VCenter.LoginFailures, LoginWindow: cfg.VCenter.LoginWindow}
		specs = configSpecs(cfg)
		stateDir = cfg.StateDir
		d.defaultAddress = config.DefaultAddress
	} else {
		if o.BasePort < 0 || o.BasePort+o.VMs > 65536 {
			return nil, vopts, fmt.Errorf("--base-port %d with %d VMs runs past port 65535", o.BasePort, o.VMs)
		}
		sim, err := vsphere.StartSimulator(ctx, o.SimAddr, o.VMs)
		if err != nil {
			return nil, vopts, err
		}
		d.sim = sim
		vopts = vsphere.Options{URL: sim.URL.String(), Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: sim.CAFile, NoNMI: true}
		for i, name := range sim.VMs {
			port := 0
			if o.BasePort != 0 {
				port = o.BasePort + i
			}
			specs = append(specs, bridge.Spec{VM: name, Address: net.JoinHostPort(o.Listen, strconv.Itoa(port)), Username: SimUser, Password: SimPassword})
		}
		d.defaultAddress = o.Listen
	}
	if stateDir != "" {
		st, err := state.Open(filepath.Join(stateDir, "state.json"))
		if err != nil {
			if d.sim != nil {
				d.sim.Close()
			}
			return nil, vopts, err
		}
		if st.Damaged != nil {
			d.log.Error("state file damaged; starting from the configuration", "err", st.Damaged)
		}
		d.state = st
	}
	return specs, vopts, nil
}

func configSpecs(cfg *config.Config) []bridge.Spec {
	var specs []bridge.Spec
	for _, b := range cfg.BMCs {
		specs = append(specs, bridge.Spec{VM: b.VM, Address: b.Endpoint(), Username: b.Username, Password: b.Password, Where: b.Where})
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
	old, next := *d.cfg, *cfg
	old.BMCs, next.BMCs = nil, nil
	if !reflect.DeepEqual(old, next) {
		d.log.Warn("settings other than bmcs changed; they take effect at the next restart")
	}
	d.bridge.Reload(configSpecs(cfg))
	d.log.Info("configuration reloaded", "file", d.opts.Config, "bmcs", len(cfg.BMCs))
	return nil
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
	if err := d.inv.Available(); err != nil {
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
		active[i.Spec.Address] = len(i.Sessions)
		pending[i.Spec.Address] = i.Pending
	}
	return active, pending
}

func (d *Daemon) banner(socket, metricsURL, redfishURL string) {
	w := d.opts.Stdout
	if d.sim != nil {
		fmt.Fprintf(w, "ipmi-vmware-bridge: bridging %d VMs of an embedded vCenter simulator\n", len(d.sim.VMs))
		fmt.Fprintf(w, "  vCenter SDK: %s  (user %s, password %s; e.g. GOVC_URL=%s GOVC_USERNAME=%s GOVC_PASSWORD=%s GOVC_INSECURE=1 govc ls /DC0/vm)\n",
			d.sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, d.sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword)
	} else {
		fmt.Fprintf(w, "ipmi-vmware-bridge: bridging %s\n", d.cfg.VCenter.URL)
	}
	fmt.Fprintf(w, "  management: ipmi-vmware-bridge bmc list --socket %s\n", socket)
	if metricsURL != "" {
		fmt.Fprintf(w, "  metrics:    %s\n", metricsURL)
	}
	if redfishURL != "" {
		fmt.Fprintf(w, "  redfish:    %s  (Metal3: redfish-virtualmedia://HOST:PORT/redfish/v1/Systems/VM-NAME)\n", redfishURL)
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
	if d.sim != nil && p == SimPassword {
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
