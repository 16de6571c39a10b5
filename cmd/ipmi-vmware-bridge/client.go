package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/openshift"
)

// passwordEnv gives `bmc add` the BMC password when --password-file does
// not: a password never goes on a command line, where process lists show it.
const passwordEnv = "IPMI_VMWARE_BRIDGE_BMC_PASSWORD"

// clientOpts are the flags every command that talks to the daemon takes.
type clientOpts struct {
	socket string
	json   bool
	stdout io.Writer
}

// add registers the flags as persistent, so that `bmc`'s subcommands take
// them before or after their own arguments.
func (o *clientOpts) add(cmd *cobra.Command) *cobra.Command {
	fs := cmd.PersistentFlags()
	fs.StringVar(&o.socket, "socket", api.DefaultSocket(), "the daemon's management socket")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	return cmd
}

func (o *clientOpts) client() *api.Client { return api.NewClient(o.socket) }

// print writes v as JSON with --json, else as the table table writes.
func (o *clientOpts) print(v any, table func(*tabwriter.Writer)) error {
	if o.json {
		return printJSON(o.stdout, v)
	}
	tw := tabwriter.NewWriter(o.stdout, 2, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// clientCommands are the commands that manage a running daemon.
func (c cli) clientCommands() []*cobra.Command {
	o := &clientOpts{stdout: c.stdout}
	return []*cobra.Command{
		o.add(bmcCommand(o)),
		o.add(vmsCommand(o)),
		o.add(bmhCommand(o)),
		o.add(checkCommand(o)),
		o.add(reloadCommand(o)),
		c.consoleCommand(o), // console.go
	}
}

func bmcCommand(o *clientOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bmc",
		Short: "List, show, add, start, stop and remove the daemon's BMCs",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("bmc: say list, show, add, start, stop or remove")
		},
	}
	cmd.AddCommand(bmcListCommand(o), bmcShowCommand(o), bmcAddCommand(o))
	for _, a := range bmcActions {
		cmd.AddCommand(bmcActionCommand(o, a))
	}
	return cmd
}

// bmcAction is a bmc subcommand that changes one BMC and prints what it
// did: adding one is adding an entry to bmcActions.
type bmcAction struct {
	verb, done string
	do         func(c *api.Client, ctx context.Context, id string) error
}

var bmcActions = []bmcAction{
	{"start", "started", (*api.Client).Start},
	{"stop", "stopped", (*api.Client).Stop},
	{"remove", "removed", (*api.Client).Remove},
}

// oneID accepts exactly one BMC ID, saying what an ID is when it is missing.
func oneID(verb string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usagef("bmc %s: which BMC? give its address:port or VM name", verb)
		case len(args) > 1:
			return usagef("bmc %s: one BMC at a time, got %q", verb, args)
		}
		return nil
	}
}

func bmcListCommand(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "The BMCs: VM, address, status, power, sessions, requests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bmcs, err := o.client().BMCs(cmd.Context())
			if err != nil {
				return err
			}
			return o.print(bmcs, func(tw *tabwriter.Writer) { bmcTable(tw, bmcs) })
		},
	}
}

func bmcShowCommand(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "One BMC (ID: its address:port or VM name), with its sessions",
		Args:  oneID("show"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := o.client().BMC(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.print(b, func(tw *tabwriter.Writer) { bmcDetail(tw, b) })
		},
	}
}

// actionResult is what start, stop and remove print with --json.
type actionResult struct {
	BMC    string `json:"bmc"`
	Result string `json:"result"`
}

func bmcActionCommand(o *clientOpts, a bmcAction) *cobra.Command {
	return &cobra.Command{
		Use:   a.verb + " ID",
		Short: strings.ToUpper(a.verb[:1]) + a.verb[1:] + " a BMC (ID: its address:port or VM name)",
		Args:  oneID(a.verb),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := a.do(o.client(), cmd.Context(), id); err != nil {
				return err
			}
			r := actionResult{BMC: id, Result: a.done}
			return o.print(r, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "%s: %s\n", id, a.done) })
		},
	}
}

// addFlags are `bmc add`'s own flags.
type addFlags struct {
	add                 api.Add
	vcenter             string
	ipmi, redfish       bool
	all                 bool
	basePort            int
	passwordFile        string
	filter, folder, tag string
}

func bmcAddCommand(o *clientOpts) *cobra.Command {
	var f addFlags
	cmd := &cobra.Command{
		Use:   "add (VM --port P | VM --ipmi=false | --all --base-port P) [--address A] [--username U] [--password-file F]",
		Short: "Add a BMC for a VM, or one for every matching VM that has none",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(args); err != nil {
				return err
			}
			password, err := readPassword(f.passwordFile)
			if err != nil {
				return usageError{err}
			}
			f.add.NoIPMI, f.add.NoRedfish, f.add.VCenter = !f.ipmi, !f.redfish, f.vcenter
			var bmcs []api.BMC
			if f.all {
				bmcs, err = o.client().AddAll(cmd.Context(), api.AddAll{Filter: f.filter, Folder: f.folder, Tag: f.tag, VCenter: f.vcenter,
					Address: f.add.Address, BasePort: f.basePort, Username: f.add.Username, Password: password, Console: f.add.Console})
			} else {
				a := f.add
				a.VM, a.Password = args[0], password
				var b api.BMC
				b, err = o.client().Add(cmd.Context(), a)
				bmcs = []api.BMC{b}
			}
			if err != nil {
				return err
			}
			return o.print(bmcs, func(tw *tabwriter.Writer) { bmcTable(tw, bmcs) })
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.IntVar(&f.add.Port, "port", 0, "UDP port of the BMC")
	fs.StringVar(&f.add.Address, "address", "", "IP address to listen on (default: the daemon's)")
	fs.StringVar(&f.add.Username, "username", config.DefaultUsername, "IPMI user")
	fs.StringVar(&f.passwordFile, "password-file", "", "file holding the BMC password (else $"+passwordEnv+")")
	fs.BoolVar(&f.add.AllowDuplicate, "allow-duplicate", false, "give the VM a second BMC although it has one")
	fs.BoolVar(&f.add.Console, "console", false, "offer the VM's serial console (IPMI SOL, ipmi-vmware-bridge console): its serial port is pointed at the daemon's concentrator")
	fs.StringVar(&f.vcenter, "vcenter", "", "the VM's vCenter, by its name in the configuration (needed when several are bridged)")
	fs.BoolVar(&f.ipmi, "ipmi", true, "serve IPMI; --ipmi=false makes a Redfish-only BMC, with no port")
	fs.BoolVar(&f.redfish, "redfish", true, "serve the VM as a Redfish system; --redfish=false makes an IPMI-only BMC")
	fs.BoolVar(&f.all, "all", false, "add a BMC for every VM matching --filter/--folder/--tag that has none")
	fs.IntVar(&f.basePort, "base-port", 0, "with --all: the first port; each VM takes the next free one")
	fs.StringVar(&f.filter, "filter", "", "with --all: VM name glob, e.g. 'skinner-*'")
	fs.StringVar(&f.folder, "folder", "", "with --all: inventory folder, e.g. /DC0/vm/ocp")
	fs.StringVar(&f.tag, "tag", "", "with --all: vSphere tag, CATEGORY/NAME, e.g. cluster/skinner")
	return cmd
}

// check refuses flag combinations that would be silently ignored.
func (f *addFlags) check(args []string) error {
	switch {
	case f.all && len(args) > 0:
		return usagef("bmc add: give a VM or --all, not both")
	case f.all && f.add.Port != 0:
		return usagef("bmc add --all: --base-port, not --port")
	case f.all && f.add.AllowDuplicate:
		return usagef("bmc add --all adds VMs that have no BMC; --allow-duplicate is for one VM")
	case !f.all && len(args) == 0:
		return usagef("bmc add: which VM? give its name, inventory path or BIOS UUID, or --all")
	case !f.all && (f.basePort != 0 || f.filter != "" || f.folder != "" || f.tag != ""):
		return usagef("bmc add: --base-port, --filter, --folder and --tag go with --all")
	case f.all && (!f.ipmi || !f.redfish):
		return usagef("bmc add --all adds BMCs serving IPMI and Redfish; --ipmi=false and --redfish=false are for one VM")
	case !f.all && !f.ipmi && f.add.Port != 0:
		return usagef("bmc add %s --ipmi=false: a Redfish-only BMC has no port; leave out --port", args[0])
	case !f.all && f.ipmi && f.add.Port == 0:
		return usagef("bmc add %s: give --port (or --ipmi=false for a Redfish-only BMC)", args[0])
	}
	return nil
}

func vmsCommand(o *clientOpts) *cobra.Command {
	var q api.VMQuery
	cmd := &cobra.Command{
		Use:   "vms",
		Short: "vCenter's VMs, with power, BIOS UUID, MACs, firmware and BMC",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vms, err := o.client().VMs(cmd.Context(), q)
			if err != nil {
				return err
			}
			return o.print(vms, func(tw *tabwriter.Writer) { vmTable(tw, vms) })
		},
	}
	cmd.Flags().StringVar(&q.Filter, "filter", "", "VM name glob, e.g. 'skinner-*'")
	cmd.Flags().StringVar(&q.Folder, "folder", "", "inventory folder, e.g. /DC0/vm/ocp")
	cmd.Flags().StringVar(&q.Tag, "tag", "", "vSphere tag, CATEGORY/NAME, e.g. cluster/skinner")
	cmd.Flags().StringVar(&q.VCenter, "vcenter", "", "only this vCenter's VMs (by its name in the configuration)")
	return cmd
}

func bmhCommand(o *clientOpts) *cobra.Command {
	var req api.BMH
	var controlPlane []string
	cmd := &cobra.Command{
		Use:   "bmh",
		Short: "OpenShift BareMetalHost and Secret manifests for the bridged VMs",
		// A BMC's serial console shows only what the guest writes to its
		// serial port, which CoreOS does not by default: the one thing
		// the manifests cannot say for the operator.
		Long: "OpenShift BareMetalHost and Secret manifests for the bridged VMs.\n\n" +
			"For the serial console of BMCs with console: true (IPMI SOL, Ironic's ipmitool-socat console), " +
			"the hosts' kernel must write its console to the serial port: install with " +
			"coreos-installer --append-karg console=ttyS0,115200n8, or give the cluster a MachineConfig " +
			"with kernelArguments: [console=ttyS0,115200n8].",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Checked here too, although the daemon checks again, so that
			// a mistyped glob is a usage error (exit 2) like any other.
			cp, err := openshift.ParseControlPlane(controlPlane)
			if err != nil {
				return usagef("bmh --control-plane: %v", err)
			}
			if req.InstallConfig && cmd.Flags().Changed("control-plane") {
				// Refused rather than ignored: install-config.yaml is for a
				// cluster not yet installed, with no control plane to keep
				// Metal3 away from, and its roles come from the VM names.
				return usagef("bmh --install-config: --control-plane is for a running cluster's BareMetalHosts; install-config.yaml makes a host a master when its name contains \"master\"")
			}
			// Never nil: the daemon reads a missing list as the default,
			// and --control-plane '' must reach it as none.
			req.ControlPlane = cp.Patterns()
			if !o.json {
				return o.client().BMH(cmd.Context(), req, o.stdout)
			}
			var buf bytes.Buffer
			if err := o.client().BMH(cmd.Context(), req, &buf); err != nil {
				return err
			}
			return yamlToJSON(o.stdout, buf.Bytes())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Host, "host", "", "address the cluster reaches the BMCs at (default: each BMC's own)")
	fs.StringVar(&req.Namespace, "namespace", "", "namespace of the manifests (default openshift-machine-api)")
	fs.BoolVar(&req.InstallConfig, "install-config", false, "print install-config.yaml's platform.baremetal.hosts instead")
	fs.BoolVar(&req.Redfish, "redfish", false, "address the BMCs as redfish-virtualmedia:// instead of ipmi://")
	fs.BoolVar(&req.Offline, "offline", false, "set online: false (control-plane hosts stay online: true)")
	fs.StringVar(&req.Filter, "filter", "", "only VMs whose name matches this glob")
	fs.StringVar(&req.VCenter, "vcenter", "", "only this vCenter's VMs (by its name in the configuration)")
	fs.BoolVar(&req.Enrolled, "enrolled", false, "only the BMCs enrolment rules gave (enroll: in the configuration)")
	// A list flag both ways: repeated, or with commas, as a shell variable
	// would hold it. The daemon gives its hosts externallyProvisioned: true
	// and keeps them online (see openshift.Host.ControlPlane), so that
	// applying the output to the running cluster reboots and powers off
	// none of them.
	fs.StringArrayVar(&controlPlane, "control-plane", []string{openshift.DefaultControlPlane},
		"the running control plane's VMs, by name `PATTERN` (glob; repeatable or comma-separated; '' for none): "+
			"externallyProvisioned and online, so Metal3 leaves them running")
	return cmd
}

// yamlToJSON prints YAML manifests as JSON: one document as itself,
// several as a Kubernetes List, which `kubectl apply -f` takes as they are.
func yamlToJSON(w io.Writer, data []byte) error {
	var docs []any
	d := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc any
		err := d.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("the daemon's manifests: %w", err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 1 {
		return printJSON(w, docs[0])
	}
	if docs == nil {
		docs = []any{} // an empty List, not "items": null
	}
	return printJSON(w, map[string]any{"apiVersion": "v1", "kind": "List", "items": docs})
}

func checkCommand(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Open an RMCP+ session to every BMC; exit 1 if any fails",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := o.client().Check(cmd.Context())
			if err != nil {
				return err
			}
			if err := o.print(res, func(tw *tabwriter.Writer) { checkTable(tw, res) }); err != nil {
				return err
			}
			for _, r := range res {
				if r.Error != "" {
					return errors.New("some BMCs failed the check")
				}
			}
			return nil
		},
	}
}

func checkTable(tw *tabwriter.Writer, res []api.Check) {
	fmt.Fprintln(tw, "VM\tENDPOINT\tPOWER\tLATENCY\tRESULT")
	for _, r := range res {
		result := "ok"
		if r.Error != "" {
			result = "FAIL: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.VM, r.Endpoint, dash(r.Power), r.Latency.Round(time.Microsecond), result)
	}
}

func reloadCommand(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Re-read the configuration file (as SIGHUP does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.client().Reload(cmd.Context()); err != nil {
				return err
			}
			r := struct {
				Result string `json:"result"`
			}{"reloaded"}
			return o.print(r, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, "reloaded") })
		},
	}
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
	tableByVCenter(tw, "VM\tADDRESS\tSTATUS\tPOWER\tSESSIONS\tREQUESTS\tSOURCE", bmcs, func(b api.BMC) string { return b.VCenter },
		func(b api.BMC) string {
			name := b.Name
			if name == "" {
				name = b.VM
			}
			status := b.Status
			if b.Error != "" {
				status += ": " + b.Error
			}
			addr := b.Address
			if !b.IPMI {
				addr = "redfish only"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d\t%s", name, addr, status, dash(b.Power), len(b.Sessions), b.Requests, b.Source)
		})
}

// vmTable lists vms, with a VCENTER column when they come from several.
func vmTable(tw *tabwriter.Writer, vms []api.VM) {
	tableByVCenter(tw, "NAME\tPOWER\tBIOS UUID\tFIRMWARE\tMACS\tBMC", vms, func(v api.VM) string { return v.VCenter },
		func(v api.VM) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", v.Name, v.Power, v.UUID, v.Firmware, strings.Join(v.MACs, ","), dash(v.BMC))
		})
}

// tableByVCenter writes head and a row per item, with a VCENTER column
// only when the items come from more than one vCenter, so that one
// vCenter's tables read as they always have.
func tableByVCenter[T any](tw *tabwriter.Writer, head string, items []T, vcenter func(T) string, row func(T) string) {
	several := slices.ContainsFunc(items, func(x T) bool { return vcenter(x) != vcenter(items[0]) })
	if several {
		head += "\tVCENTER"
	}
	fmt.Fprintln(tw, head)
	for _, x := range items {
		r := row(x)
		if several {
			r += "\t" + vcenter(x)
		}
		fmt.Fprintln(tw, r)
	}
}

// serves names the protocols b serves.
func serves(b api.BMC) string {
	switch {
	case !b.IPMI:
		return "Redfish only"
	case !b.Redfish:
		return "IPMI only"
	}
	return "IPMI and Redfish"
}

func bmcDetail(tw *tabwriter.Writer, b api.BMC) {
	fmt.Fprintf(tw, "VM:\t%s (configured as %s)\nvCenter:\t%s\n", dash(b.Name), b.VM, dash(b.VCenter))
	fmt.Fprintf(tw, "Address:\t%s\nServes:\t%s\nStatus:\t%s\nPower:\t%s\nSource:\t%s\nRequests:\t%d\n", dash(b.Address), serves(b), b.Status, dash(b.Power), b.Source, b.Requests)
	if b.Error != "" {
		fmt.Fprintf(tw, "Error:\t%s\n", b.Error)
	}
	if c := b.Console; c != nil {
		state := "serial port not connected (VM off, or its host not connected to the bridge)"
		if c.Connected {
			state = "serial port connected from " + c.Remote
		}
		fmt.Fprintf(tw, "Console:\t%s\n", state)
	}
	fmt.Fprintf(tw, "Sessions:\t%d\n", len(b.Sessions))
	for _, s := range b.Sessions {
		fmt.Fprintf(tw, "  %s\t%s (%s), opened %s, idle %s, %d requests\n", s.Client, s.User, s.Privilege,
			s.Opened.Format(time.RFC3339), time.Since(s.LastActivity).Round(time.Second), s.Requests)
	}
}
