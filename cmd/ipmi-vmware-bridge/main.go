// Command ipmi-vmware-bridge gives every vSphere VM a virtual BMC. Run
// `ipmi-vmware-bridge serve` to bridge an embedded vCenter simulator's VMs,
// or `serve --config FILE` to bridge a real vCenter's; the other commands
// manage a running daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/daemon"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

func main() {
	// One P unless GOMAXPROCS says otherwise. The bridge waits on sockets
	// almost all the time, and with a second P idle every request wakes a
	// second thread (net/http starts a goroutine per request, and a
	// runnable goroutine wakes an idle P): measured, a keep-alive Redfish
	// GET costs 71-76 µs of CPU with one P and 124-200 µs with two, and
	// one P answers some 10,000 Redfish or 40,000 IPMI requests a second.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	exit(cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}.run(context.Background(), os.Args[1:]))
}

// exit prints err, prefixed, and ends the process with code.
func exit(code int, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipmi-vmware-bridge:", err)
	}
	os.Exit(code)
}

// usageError is a command line the tool cannot run: exit code 2, as for
// flag errors, rather than 1 for a command that ran and failed.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// cli is what a command line runs with: where its input (console's
// keystrokes) comes from and its output goes and, for serve, whom to tell
// once the daemon serves (daemon.Options.Ready), so that tests wait on
// that rather than read the banner.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	ready          func(daemon.Endpoints)
}

// run executes one command line, with nothing to read on its input, and
// returns the process exit code: 0, 1 when the command failed, 2 when the
// command line is wrong.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	return cli{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr}.run(ctx, args)
}

// run is the package's run with c's writers and hook.
func (c cli) run(ctx context.Context, args []string) (int, error) {
	started := false
	root := c.rootCommand(&started)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var u usageError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &u) || !started:
		return 2, err
	}
	return 1, err
}

// rootCommand builds the command tree. started is set once a command's
// own code runs: errors before that are the command line's.
func (c cli) rootCommand(started *bool) *cobra.Command {
	stdout, stderr := c.stdout, c.stderr
	root := &cobra.Command{
		Use:   "ipmi-vmware-bridge",
		Short: "A virtual IPMI and Redfish BMC for every vSphere VM",
		Long: "ipmi-vmware-bridge gives every vSphere VM a virtual IPMI and Redfish BMC.\n\n" +
			"`serve` runs the bridge (without --config: an embedded vCenter simulator with\n" +
			"skinner-master-0..2 and skinner-worker-1..2); the other commands manage a running\n" +
			"daemon over its socket (--socket, default " + api.DefaultSocket() + ").",
		Version:       version().String(),
		SilenceErrors: true, // main prints the error once, prefixed
		SilenceUsage:  true, // a failed vCenter call is no reason for a usage screen
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(stderr)
			_ = cmd.Usage()
			return usagef("missing command")
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentPreRun = func(*cobra.Command, []string) { *started = true }
	root.AddCommand(c.serveCommand(), versionCommand(stdout))
	root.AddCommand(c.clientCommands()...)
	return root
}

func (c cli) serveCommand() *cobra.Command {
	o := daemon.Options{Stdout: c.stdout, Ready: c.ready}
	var debug bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the bridge (without --config: an embedded vCenter simulator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if v, _ := strconv.ParseBool(os.Getenv("IPMI_DEBUG")); v {
				debug = true
			}
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			o.Log = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
			return daemon.Run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.Config, "config", "", "YAML file naming a vCenter and the BMCs to serve; without it, an embedded simulator is bridged")
	fs.BoolVar(&debug, "debug", false, "log every request (also IPMI_DEBUG=true)")
	fs.IntVar(&o.VMs, "vms", len(vsphere.SeedVMNames), "simulator mode: how many VMs to simulate (past five they get generated names)")
	fs.StringVar(&o.Listen, "listen", config.SimListen, "simulator mode: the address the BMCs listen on")
	fs.IntVar(&o.BasePort, "base-port", config.SimBasePort, "simulator mode: UDP port of the first BMC, the next VM's is one higher; 0 picks free ports")
	fs.StringVar(&o.SimAddr, "sim-addr", config.SimAddr, "simulator mode: where the simulated vCenter's SDK listens")
	fs.StringVar(&o.StateDir, "state-dir", "", "simulator mode: keep boot overrides, media and runtime BMCs in DIR/state.json (default: in memory); with --config, stateDir in the file says where")
	fs.StringVar(&o.Socket, "socket", "", "management API socket (default "+api.DefaultSocket()+")")
	fs.StringVar(&o.MetricsAddress, "metrics-address", "", "serve /metrics, /healthz and /readyz here (default "+config.DefaultMetricsAddress+" or metricsAddress in the file; - turns it off)")
	fs.StringVar(&o.RedfishAddress, "redfish-address", "", "serve Redfish over HTTPS here (default "+config.SimRedfishAddress+" in simulator mode, else redfish.address in the file; - turns it off)")
	fs.StringVar(&o.ConsoleAddress, "console-address", "", "serve the serial console concentrator (vSPC) the VMs' serial ports connect to here (default "+config.SimConsoleAddress+" in simulator mode, else console.address in the file; - turns it off)")
	return cmd
}

// buildVersion is what `version` and --version print.
type buildVersion struct {
	// Version is the main module's version, "devel" when built from a
	// work tree without one (go run, go test).
	Version string `json:"version"`
	Go      string `json:"go"`
}

func (v buildVersion) String() string {
	return fmt.Sprintf("ipmi-vmware-bridge %s (%s)", v.Version, v.Go)
}

func version() buildVersion {
	v := buildVersion{Version: "devel", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	return v
}

func versionCommand(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of the tool and of Go it was built with",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if asJSON {
				return printJSON(stdout, version())
			}
			_, err := fmt.Fprintln(stdout, version())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
