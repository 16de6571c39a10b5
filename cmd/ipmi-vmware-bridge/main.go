// Command ipmi-vmware-bridge gives every vSphere VM a virtual BMC. Run
// `ipmi-vmware-bridge serve` to bridge an embedded vCenter simulator's VMs,
// or `serve --config FILE` to bridge a real vCenter's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

const usage = `usage: ipmi-vmware-bridge serve [flags]

Gives every bridged vSphere VM a virtual BMC (IPMI v2.0 lanplus and v1.5 lan).
Without --config it starts an embedded vCenter simulator with the VMs
skinner-master-0..2 and skinner-worker-1..2 and bridges them.

flags:
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ipmi-vmware-bridge:", err)
		os.Exit(1)
	}
}

type serveFlags struct {
	config   string
	debug    bool
	vms      int
	listen   string
	basePort int
	simAddr  string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprint(stderr, usage)
		serveFlagSet(&serveFlags{}, stderr).PrintDefaults()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errors.New("unknown or missing command; try: ipmi-vmware-bridge serve")
	}
	var f serveFlags
	fs := serveFlagSet(&f, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if v, _ := strconv.ParseBool(os.Getenv("IPMI_DEBUG")); v {
		f.debug = true
	}
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return serve(ctx, f, stdout, log)
}

func serveFlagSet(f *serveFlags, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.config, "config", "", "YAML file naming a vCenter and the BMCs to serve; without it, an embedded simulator is bridged")
	fs.BoolVar(&f.debug, "debug", false, "log every request (also IPMI_DEBUG=true)")
	fs.IntVar(&f.vms, "vms", len(vsphere.SeedVMNames), "simulator mode: how many VMs to simulate (past five they get generated names)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1", "simulator mode: the address the BMCs listen on")
	fs.IntVar(&f.basePort, "base-port", 6230, "simulator mode: UDP port of the first BMC, the next VM's is one higher; 0 picks free ports")
	fs.StringVar(&f.simAddr, "sim-addr", "127.0.0.1:8989", "simulator mode: where the simulated vCenter's SDK listens")
	return fs
}

func serve(ctx context.Context, f serveFlags, stdout io.Writer, log *slog.Logger) error {
	var (
		opts  vsphere.Options
		specs []bridge.Spec
		sim   *vsphere.Simulator
	)
	if f.config != "" {
		cfg, err := config.Load(f.config)
		if err != nil {
			return err
		}
		opts = vsphere.Options{URL: cfg.VCenter.URL, Username: cfg.VCenter.Username, Password: cfg.VCenter.Password, Insecure: cfg.VCenter.Insecure, CAFile: cfg.VCenter.CAFile}
		for _, b := range cfg.BMCs {
			specs = append(specs, bridge.Spec{VM: b.VM, Address: b.Endpoint(), Username: b.Username, Password: b.Password, Where: b.Where})
		}
	} else {
		if f.basePort < 0 || f.basePort+f.vms > 65536 {
			return fmt.Errorf("--base-port %d with %d VMs runs past port 65535", f.basePort, f.vms)
		}
		var err error
		sim, err = vsphere.StartSimulator(ctx, f.simAddr, f.vms)
		if err != nil {
			return err
		}
		defer sim.Close()
		opts = vsphere.Options{URL: sim.URL.String(), Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: sim.CAFile}
		for i, name := range sim.VMs {
			port := 0
			if f.basePort != 0 {
				port = f.basePort + i
			}
			specs = append(specs, bridge.Spec{VM: name, Address: net.JoinHostPort(f.listen, strconv.Itoa(port)), Username: simUser, Password: simPassword})
		}
	}
	client, err := vsphere.Connect(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = client.Close(context.WithoutCancel(ctx)) }()

	b := bridge.Start(ctx, client, specs, log)
	defer func() { _ = b.Close() }()
	if sim != nil {
		printSimBanner(stdout, sim, b)
	} else {
		printBanner(stdout, b)
	}
	if b.Running() == 0 {
		return errors.New("no BMC could be started")
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// The simulator's BMC credentials, printed in the banner.
const (
	simUser     = "admin"
	simPassword = "password"
)

func printSimBanner(w io.Writer, sim *vsphere.Simulator, b *bridge.Bridge) {
	fmt.Fprintf(w, "ipmi-vmware-bridge: bridging %d VMs of an embedded vCenter simulator\n", len(sim.VMs))
	fmt.Fprintf(w, "  vCenter SDK: %s  (user %s, password %s; e.g. GOVC_URL=%s GOVC_USERNAME=%s GOVC_PASSWORD=%s GOVC_INSECURE=1 govc ls /DC0/vm)\n\n",
		sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword)
	printBanner(w, b)
	fmt.Fprintln(w, "\nTo bridge a real vCenter, run: ipmi-vmware-bridge serve --config bridge.yaml (see README.md for the file).")
}

func printBanner(w io.Writer, b *bridge.Bridge) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tBMC\tTRY")
	for _, bm := range b.BMCs {
		if bm.Err != nil {
			where := ""
			if bm.Spec.Where != "" {
				where = " (" + bm.Spec.Where + ")"
			}
			fmt.Fprintf(tw, "%s\tnot started\t%v%s\n", bm.Spec.VM, bm.Err, where)
			continue
		}
		host, port, _ := net.SplitHostPort(bm.Addr.String())
		fmt.Fprintf(tw, "%s\tudp://%s\tipmitool -I lanplus -H %s -p %s -U %s -P %s power status\n",
			bm.Name, bm.Addr, displayHost(host), port, bm.Spec.Username, passwordHint(bm.Spec.Password))
	}
	_ = tw.Flush()
}

// passwordHint prints the simulator's well-known password and hides any
// other: a real BMC password must not reach a terminal or a log.
func passwordHint(p string) string {
	if p == simPassword {
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
