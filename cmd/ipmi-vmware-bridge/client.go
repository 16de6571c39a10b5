package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
)

// passwordEnv gives `bmc add` the BMC password when --password-file does
// not: a password never goes on a command line, where process lists show it.
const passwordEnv = "IPMI_VMWARE_BRIDGE_BMC_PASSWORD"

// client runs a management command against the daemon's socket.
func client(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", api.DefaultSocket(), "the daemon's management socket")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	sub := ""
	if cmd == "bmc" {
		if len(args) == 0 {
			return 2, errors.New("bmc: say list, show, add, start, stop or remove")
		}
		sub, args = args[0], args[1:]
	}
	var (
		add            api.Add
		all            api.AddAll
		addAll         bool
		passwordFile   string
		filter, folder string
		bmh            api.BMH
	)
	switch cmd + " " + sub {
	case "bmc add":
		fs.BoolVar(&addAll, "all", false, "add a BMC for every VM matching --filter/--folder that has none")
		fs.IntVar(&add.Port, "port", 0, "UDP port of the BMC")
		fs.IntVar(&all.BasePort, "base-port", 0, "with --all: the first port; each VM takes the next free one")
		fs.StringVar(&add.Address, "address", "", "IP address to listen on (default: the daemon's)")
		fs.StringVar(&add.Username, "username", "admin", "IPMI user")
		fs.StringVar(&passwordFile, "password-file", "", "file holding the BMC password (else $"+passwordEnv+")")
		fs.StringVar(&filter, "filter", "", "with --all: VM name glob, e.g. 'skinner-*'")
		fs.StringVar(&folder, "folder", "", "with --all: inventory folder, e.g. /DC0/vm/ocp")
	case "vms ":
		fs.StringVar(&filter, "filter", "", "VM name glob, e.g. 'skinner-*'")
		fs.StringVar(&folder, "folder", "", "inventory folder, e.g. /DC0/vm/ocp")
	case "bmh ":
		fs.StringVar(&bmh.Host, "host", "", "address the cluster reaches the BMCs at (default: each BMC's own)")
		fs.StringVar(&bmh.Namespace, "namespace", "", "namespace of the manifests (default openshift-machine-api)")
		fs.BoolVar(&bmh.InstallConfig, "install-config", false, "print install-config.yaml's platform.baremetal.hosts instead")
		fs.BoolVar(&bmh.Redfish, "redfish", false, "address the BMCs as redfish-virtualmedia:// instead of ipmi://")
		fs.BoolVar(&bmh.Offline, "offline", false, "set online: false")
		fs.StringVar(&bmh.Filter, "filter", "", "only VMs whose name matches this glob")
	}
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	c := api.NewClient(*socket)
	id := fs.Arg(0)
	needID := func() error {
		if id == "" {
			return fmt.Errorf("bmc %s: which BMC? give its address:port or VM name", sub)
		}
		return nil
	}
	print := func(v any, table func(*tabwriter.Writer)) error {
		if *asJSON {
			e := json.NewEncoder(stdout)
			e.SetIndent("", "  ")
			return e.Encode(v)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	var err error
	switch cmd + " " + sub {
	case "bmc list":
		var bmcs []api.BMC
		if bmcs, err = c.BMCs(ctx); err == nil {
			err = print(bmcs, func(tw *tabwriter.Writer) { bmcTable(tw, bmcs) })
		}
	case "bmc show":
		if err = needID(); err != nil {
			return 2, err
		}
		var b api.BMC
		if b, err = c.BMC(ctx, id); err == nil {
			err = print(b, func(tw *tabwriter.Writer) { bmcDetail(tw, b) })
		}
	case "bmc add":
		password, perr := readPassword(passwordFile)
		if perr != nil {
			return 2, perr
		}
		if addAll {
			all.Filter, all.Folder, all.Address, all.Username, all.Password = filter, folder, add.Address, add.Username, password
			var bmcs []api.BMC
			if bmcs, err = c.AddAll(ctx, all); err == nil {
				err = print(bmcs, func(tw *tabwriter.Writer) { bmcTable(tw, bmcs) })
			}
			break
		}
		add.VM, add.Password = id, password
		var b api.BMC
		if b, err = c.Add(ctx, add); err == nil {
			err = print([]api.BMC{b}, func(tw *tabwriter.Writer) { bmcTable(tw, []api.BMC{b}) })
		}
	case "bmc start", "bmc stop", "bmc remove":
		if err = needID(); err != nil {
			return 2, err
		}
		switch sub {
		case "start":
			err = c.Start(ctx, id)
		case "stop":
			err = c.Stop(ctx, id)
		default:
			err = c.Remove(ctx, id)
		}
	case "vms ":
		var vms []api.VM
		if vms, err = c.VMs(ctx, filter, folder); err == nil {
			err = print(vms, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NAME\tPOWER\tBIOS UUID\tFIRMWARE\tMACS\tBMC")
				for _, v := range vms {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Power, v.UUID, v.Firmware, strings.Join(v.MACs, ","), dash(v.BMC))
				}
			})
		}
	case "bmh ":
		err = c.BMH(ctx, bmh, stdout)
	case "check ":
		var res []api.Check
		if res, err = c.Check(ctx); err == nil {
			err = print(res, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "VM\tENDPOINT\tPOWER\tLATENCY\tRESULT")
				for _, r := range res {
					result := "ok"
					if r.Error != "" {
						result = "FAIL: " + r.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.VM, r.Endpoint, dash(r.Power), r.Latency.Round(time.Microsecond), result)
				}
			})
			for _, r := range res {
				if r.Error != "" && err == nil {
					err = errors.New("some BMCs failed the check")
				}
			}
		}
	case "reload ":
		err = c.Reload(ctx)
	default:
		return 2, fmt.Errorf("unknown command %s %s", cmd, sub)
	}
	return exit(err)
}

func readPassword(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if p := os.Getenv(passwordEnv); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("bmc add: give --password-file or $%s", passwordEnv)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bmcTable(tw *tabwriter.Writer, bmcs []api.BMC) {
	fmt.Fprintln(tw, "VM\tADDRESS\tSTATUS\tPOWER\tSESSIONS\tREQUESTS\tSOURCE")
	for _, b := range bmcs {
		name := b.Name
		if name == "" {
			name = b.VM
		}
		status := b.Status
		if b.Error != "" {
			status += ": " + b.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", name, b.Address, status, dash(b.Power), len(b.Sessions), b.Requests, b.Source)
	}
}

func bmcDetail(tw *tabwriter.Writer, b api.BMC) {
	fmt.Fprintf(tw, "VM:\t%s (configured as %s)\n", dash(b.Name), b.VM)
	fmt.Fprintf(tw, "Address:\t%s\nStatus:\t%s\nPower:\t%s\nSource:\t%s\nRequests:\t%d\n", b.Address, b.Status, dash(b.Power), b.Source, b.Requests)
	if b.Error != "" {
		fmt.Fprintf(tw, "Error:\t%s\n", b.Error)
	}
	fmt.Fprintf(tw, "Sessions:\t%d\n", len(b.Sessions))
	for _, s := range b.Sessions {
		fmt.Fprintf(tw, "  %s\t%s (%s), opened %s, idle %s, %d requests\n", s.Client, s.User, s.Privilege,
			s.Opened.Format(time.RFC3339), time.Since(s.LastActivity).Round(time.Second), s.Requests)
	}
}
