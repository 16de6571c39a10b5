// Command ipmi-vmware-bridge gives every vSphere VM a virtual BMC. Run
// `ipmi-vmware-bridge serve` to bridge an embedded vCenter simulator's VMs,
// or `serve --config FILE` to bridge a real vCenter's; the other commands
// manage a running daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/daemon"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

const usage = `usage: ipmi-vmware-bridge COMMAND [flags]

commands:
  serve                 run the bridge (without --config: an embedded vCenter simulator
                        with skinner-master-0..2 and skinner-worker-1..2)
  bmc list              the BMCs of the running daemon
  bmc show ID           one BMC (ID: its address:port or VM name), with its sessions
  bmc add VM --port P [--address A] [--username U] [--password-file F]
  bmc add --all [--filter GLOB] [--folder PATH] --base-port P [--address A] [--password-file F]
  bmc start|stop|remove ID
  vms [--filter GLOB] [--folder PATH]
                        vCenter's VMs, with power, BIOS UUID, MACs, firmware and BMC
  bmh [--host H] [--namespace N] [--install-config] [--redfish] [--filter GLOB]
                        OpenShift BareMetalHost and Secret manifests for the bridged VMs
  check                 open an RMCP+ session to every BMC; exit 1 if any fails
  reload                re-read the configuration file (as SIGHUP does)

Every command but serve talks to the daemon over --socket (default %s).
Run a command with -h for its flags.
`

func main() {
	code, err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipmi-vmware-bridge:", err)
	}
	os.Exit(code)
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, api.DefaultSocket())
		return 2, errors.New("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprintf(stdout, usage, api.DefaultSocket())
		return 0, nil
	case "serve":
		return exit(serve(ctx, rest, stdout, stderr))
	case "bmc", "vms", "bmh", "check", "reload":
		return client(ctx, cmd, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, usage, api.DefaultSocket())
	return 2, fmt.Errorf("unknown command %q", cmd)
}

func exit(err error) (int, error) {
	if err != nil {
		return 1, err
	}
	return 0, nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := daemon.Options{Stdout: stdout}
	var debug bool
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Config, "config", "", "YAML file naming a vCenter and the BMCs to serve; without it, an embedded simulator is bridged")
	fs.BoolVar(&debug, "debug", false, "log every request (also IPMI_DEBUG=true)")
	fs.IntVar(&o.VMs, "vms", len(vsphere.SeedVMNames), "simulator mode: how many VMs to simulate (past five they get generated names)")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1", "simulator mode: the address the BMCs listen on")
	fs.IntVar(&o.BasePort, "base-port", 6230, "simulator mode: UDP port of the first BMC, the next VM's is one higher; 0 picks free ports")
	fs.StringVar(&o.SimAddr, "sim-addr", "127.0.0.1:8989", "simulator mode: where the simulated vCenter's SDK listens")
	fs.StringVar(&o.StateDir, "state-dir", "", "simulator mode: keep boot overrides, media and runtime BMCs in DIR/state.json (default: in memory); with --config, stateDir in the file says where")
	fs.StringVar(&o.Socket, "socket", "", "management API socket (default "+api.DefaultSocket()+")")
	fs.StringVar(&o.MetricsAddress, "metrics-address", "", "serve /metrics, /healthz and /readyz here (default 127.0.0.1:9623 or metricsAddress in the file; - turns it off)")
	fs.StringVar(&o.RedfishAddress, "redfish-address", "", "serve Redfish over HTTPS here (default "+daemon.DefaultSimRedfishAddress+" in simulator mode, else redfish.address in the file; - turns it off)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if v, _ := strconv.ParseBool(os.Getenv("IPMI_DEBUG")); v {
		debug = true
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return daemon.Run(ctx, o)
}
