package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vim25/types"
	"go.yaml.in/yaml/v3"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// skipREADME lists the programs whose README command lines this test does
// not run, and why: they need what a test machine does not have.
var skipREADME = map[string]string{
	"systemctl": "needs systemd and root",
	"kubectl":   "needs a Kubernetes cluster",
	"podman":    "needs podman",
	"docker":    "needs docker",
	"sudo":      "needs root",
}

// readme returns the README, or the file $README_FILE names, so that a
// proposed README can be tried before it replaces the real one.
func readme(t *testing.T) []byte {
	t.Helper()
	name := os.Getenv("README_FILE")
	if name == "" {
		name = filepath.Join("..", "..", "README.md")
	}
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readmeLine is one command line of the README, as written.
type readmeLine struct {
	line  int
	where string // README.md:LINE
	text  string
	// inline: from a `code span` in prose, where a lone word is a name,
	// not a command.
	inline bool
}

// readmeLines returns the lines of the README's ```sh blocks and its
// inline code spans that mention ipmi-vmware-bridge.
func readmeLines(t *testing.T) []readmeLine {
	t.Helper()
	data := readme(t)
	var out []readmeLine
	var prose strings.Builder // prose with fenced blocks blanked, lines kept
	fence := ""
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "```") && fence == "":
			fence = strings.TrimPrefix(trimmed, "```")
			if fence == "" {
				fence = "text"
			}
		case strings.HasPrefix(trimmed, "```"):
			fence = ""
		case fence == "sh" && strings.Contains(trimmed, "ipmi-vmware-bridge"):
			out = append(out, readmeLine{line: i + 1, where: fmt.Sprintf("README.md:%d", i+1), text: trimmed})
		case fence == "":
			prose.WriteString(line)
		}
		prose.WriteString("\n")
	}
	text := prose.String()
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatchIndex(text, -1) {
		span := strings.Join(strings.Fields(text[m[2]:m[3]]), " ")
		if strings.Contains(span, "ipmi-vmware-bridge") {
			line := strings.Count(text[:m[0]], "\n") + 1
			out = append(out, readmeLine{line: line, where: fmt.Sprintf("README.md:%d", line), text: span, inline: true})
		}
	}
	// In the README's order: a command may need the daemon a serve above it started.
	slices.SortStableFunc(out, func(a, b readmeLine) int { return a.line - b.line })
	return out
}

// shellWords splits a command line as sh would for the simple lines of a
// README: quotes, and a comment from an unquoted #.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	inWord, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// readmeCommand is what a README line asks for.
type readmeCommand struct {
	kind string   // "run", "build", "skip" or "" (a mere mention)
	args []string // the tool's arguments (run) or go's (build)
	why  string   // skip: why
}

func classify(l readmeLine) (readmeCommand, error) {
	words := shellWords(l.text)
	for len(words) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(words[0]) {
		words = words[1:] // environment assignments: CGO_ENABLED=0
	}
	switch {
	case len(words) == 0:
		return readmeCommand{}, nil
	case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/ipmi-vmware-bridge":
		return readmeCommand{kind: "run", args: words[3:]}, nil
	case path.Base(words[0]) == "ipmi-vmware-bridge" && (len(words) > 1 || !l.inline):
		return readmeCommand{kind: "run", args: words[1:]}, nil
	case len(words) >= 2 && words[0] == "go" && words[1] == "build" && words[len(words)-1] == "./cmd/ipmi-vmware-bridge":
		return readmeCommand{kind: "build", args: words[1:]}, nil
	case skipREADME[words[0]] != "":
		return readmeCommand{kind: "skip", why: skipREADME[words[0]]}, nil
	case l.inline && len(words) == 1:
		return readmeCommand{}, nil // a name: ipmi-vmware-bridge.service, /etc/ipmi-vmware-bridge/
	}
	return readmeCommand{}, fmt.Errorf("%s: `%s` mentions ipmi-vmware-bridge in a way this test does not know; teach classify or add its program to skipREADME", l.where, l.text)
}

// expand turns `bmc stop|start|remove X` into the three commands it stands for.
func expand(args []string) [][]string {
	for i, a := range args {
		if regexp.MustCompile(`^[a-z-]+(\|[a-z-]+)+$`).MatchString(a) {
			var out [][]string
			for _, alt := range strings.Split(a, "|") {
				c := append(append(append([]string{}, args[:i]...), alt), args[i+1:]...)
				out = append(out, expand(c)...)
			}
			return out
		}
	}
	return [][]string{args}
}

// readmeEnv is the test's stand-in for the machine the README's reader has:
// a vCenter (the simulator), free ports on 127.0.0.1, temporary files.
type readmeEnv struct {
	t      *testing.T
	dir    string
	sim    *vsphere.Simulator
	pwFile string
	yaml   string // the README's bridge.yaml example
	daemon *serving
}

// clientCommands take --socket and --json.
var clientCommandNames = map[string]bool{"bmc": true, "vms": true, "bmh": true, "check": true, "reload": true, "console": true}

// adapt rewrites a README command line for this machine: BMC addresses
// on 127.0.0.1, free ports, the test's password file and socket.
func (e *readmeEnv) adapt(args []string) []string {
	out := append([]string{}, args...)
	for i := 0; i+1 < len(out); i++ {
		switch out[i] {
		case "--address":
			if ip := strings.TrimSpace(out[i+1]); !strings.HasPrefix(ip, "127.") {
				out[i+1] = "127.0.0.1"
			}
		case "--port", "--base-port":
			out[i+1] = strconv.Itoa(clienttest.FreeUDPPort(e.t))
		case "--password-file":
			out[i+1] = e.pwFile
		}
	}
	if clientCommandNames[out[0]] {
		out = append(out, "--socket", e.daemon.ep.Socket) // flags after arguments
	}
	return out
}

// serve starts the daemon a README `serve` line describes, on this
// machine's terms, in place of the one running, and checks that every
// BMC it has serves. A fake ESXi host connects the serial port of each VM
// whose BMC offers a console, so that the README's console lines show
// something.
func (e *readmeEnv) serve(args []string) {
	t := e.t
	if e.daemon != nil {
		e.daemon.stop(t)
	}
	args = append(append([]string{}, args...), "--socket", filepath.Join(t.TempDir(), "api.sock"), "--metrics-address", "127.0.0.1:0", "--redfish-address", "127.0.0.1:0")
	if indexOf(args, "--console-address") < 0 {
		args = append(args, "--console-address", "127.0.0.1:0")
	}
	simMode := true
	for i := range args {
		if args[i] == "--config" && i+1 < len(args) {
			args[i+1], simMode = e.config(), false
		}
	}
	if simMode {
		args = append(args, "--base-port", "0", "--sim-addr", "127.0.0.1:0", "--state-dir", t.TempDir())
	}
	e.daemon = startServe(t, args...)
	bmcs, err := api.NewClient(e.daemon.ep.Socket).BMCs(context.Background())
	if err != nil || len(bmcs) == 0 || !allRunning(bmcs) {
		t.Fatalf("daemon serves, but not every BMC: %v %+v\n%s", err, bmcs, e.daemon.stderr.String())
	}
	if !simMode {
		// The enrolment rule's BMC, for bmh --enrolled.
		clienttest.Eventually(t, "the tagged VM enrolled", func() bool {
			bmcs, err := api.NewClient(e.daemon.ep.Socket).BMCs(context.Background())
			return err == nil && slices.ContainsFunc(bmcs, func(b api.BMC) bool { return b.Source == "enrolled" && b.Status == "running" })
		})
	}
	if e.daemon.ep.Console != "" {
		connectHosts(t, e.daemon.ep)
	}
}

func allRunning(bmcs []api.BMC) bool {
	for _, b := range bmcs {
		if b.Status != "running" {
			return false
		}
	}
	return true
}

// config turns the README's bridge.yaml example into one for the
// simulator: its URL, user, password and CA, BMCs on 127.0.0.1 and free
// ports, state and listeners of the test's own.
func (e *readmeEnv) config() string {
	t := e.t
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(e.yaml), &cfg); err != nil {
		t.Fatalf("README's bridge.yaml: %v", err)
	}
	vc := cfg["vcenter"].(map[string]any)
	vc["url"], vc["username"], vc["password"], vc["caFile"] = e.sim.URL.String(), vsphere.SimulatorUser, vsphere.SimulatorPassword, e.sim.CAFile
	for _, b := range cfg["bmcs"].([]any) {
		bmc := b.(map[string]any)
		bmc["address"], bmc["port"] = "127.0.0.1", clienttest.FreeUDPPort(t)
	}
	cfg["stateDir"] = t.TempDir()
	cfg["enroll"] = []any{map[string]any{"tag": "cluster/skinner", "addresses": []any{"127.0.0.1"},
		"ports": fmt.Sprint(clienttest.FreeUDPPort(t)), "password": "bmc-pw-123"}}
	if c, ok := cfg["console"].(map[string]any); ok {
		c["address"] = "127.0.0.1:0"
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "bridge.yaml", string(data))
}

// readmeYAML returns the README's example bridge.yaml.
func readmeYAML(t *testing.T) string {
	data := readme(t)
	m := regexp.MustCompile("(?s)```yaml\n(vcenter:.*?)```").FindSubmatch(data)
	if m == nil {
		t.Fatal("README has no ```yaml block starting with vcenter:")
	}
	return string(m[1])
}

// prepareSimulator gives the simulator what the README's examples name:
// VMs skinner-worker-3, -4 and -5 (the simulator's last three, renamed),
// a folder /DC0/vm/ocp holding the VMs, and the tag cluster/skinner on
// skinner-vm-5, which the configuration's enrolment rule (see config)
// gives a BMC.
func prepareSimulator(t *testing.T, sim *vsphere.Simulator) {
	ctx := context.Background()
	u := *sim.URL
	u.User = url.UserPassword(vsphere.SimulatorUser, vsphere.SimulatorPassword)
	c, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Logout(ctx) }()
	f := find.NewFinder(c.Client)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	vms, err := f.VirtualMachineList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	renames := map[string]string{}
	for i, name := range []string{"skinner-worker-3", "skinner-worker-4", "skinner-worker-5"} {
		renames[sim.VMs[len(sim.VMs)-3+i]] = name
	}
	var refs []types.ManagedObjectReference
	for _, vm := range vms {
		refs = append(refs, vm.Reference())
		if name, ok := renames[vm.Name()]; ok {
			task, err := vm.Rename(ctx, name)
			if err == nil {
				err = task.Wait(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ocp, err := folders.VmFolder.CreateFolder(ctx, "ocp")
	if err != nil {
		t.Fatal(err)
	}
	task, err := ocp.MoveInto(ctx, refs)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	vcsimtest.NewOutside(t, sim).Tag(vsphere.VMName(5), "cluster", "skinner")
}

// TestREADMECommands runs every command line of the README (its ```sh
// blocks and inline commands) against a daemon bridging the simulator, so
// that the README cannot drift from the tool: a line added to the README
// is run here without a change to this test.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	sim := vcsimtest.Start(t, 9)
	prepareSimulator(t, sim)
	e := &readmeEnv{t: t, dir: t.TempDir(), sim: sim, yaml: readmeYAML(t)}
	e.pwFile = writeFile(t, "pw", "bmc-pw-123\n")
	defer func() {
		if e.daemon != nil {
			e.daemon.stop(t)
		}
	}()
	ran := 0
	for _, l := range readmeLines(t) {
		c, err := classify(l)
		if err != nil {
			t.Error(err)
			continue
		}
		switch c.kind {
		case "skip":
			t.Logf("%s: skipped (%s): %s", l.where, c.why, l.text)
		case "build":
			e.build(l, c.args)
			ran++
		case "run":
			for _, args := range expand(c.args) {
				e.runLine(l, args)
				ran++
			}
		}
	}
	if ran < 15 {
		t.Fatalf("only %d README command lines found; is the parser broken?", ran)
	}
	if data, err := os.ReadFile(filepath.Join(e.dir, "bmh.yaml")); err != nil || !strings.Contains(string(data), "kind: BareMetalHost") {
		t.Errorf("README's bmh > bmh.yaml: %v\n%s", err, data)
	}
	t.Run("duplicates", func(t *testing.T) { e.duplicates(t) })
}

// runLine runs one README command line and checks it succeeds, and its
// --json form too when it only reads.
func (e *readmeEnv) runLine(l readmeLine, args []string) {
	t := e.t
	if len(args) > 0 && args[0] == "serve" {
		t.Logf("%s: %s (as the test's daemon)", l.where, l.text)
		e.serve(args)
		return
	}
	var redirect string
	if i := indexOf(args, ">"); i >= 0 && i+1 < len(args) {
		redirect, args = filepath.Join(e.dir, filepath.Base(args[i+1])), append(args[:i:i], args[i+2:]...)
	}
	args = e.adapt(args)
	var stdout, stderr clienttest.Buffer
	code, err := run(context.Background(), args, &stdout, &stderr)
	t.Logf("%s: ipmi-vmware-bridge %s -> %d\n%s", l.where, strings.Join(args, " "), code, head(stdout.String(), 8))
	if code != 0 {
		t.Errorf("%s: `%s` exited %d: %v\n%s", l.where, l.text, code, err, stderr.String())
		return
	}
	if redirect != "" {
		if err := os.WriteFile(redirect, []byte(stdout.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if stdout.String() == "" {
		t.Errorf("%s: `%s` printed nothing", l.where, l.text)
	}
	// A flag after the VM counts: the BMC is where --port said.
	if i := indexOf(args, "--port"); i >= 0 && !strings.Contains(stdout.String(), ":"+args[i+1]+" ") {
		t.Errorf("%s: `%s`: no BMC on port %s:\n%s", l.where, l.text, args[i+1], stdout.String())
	}
	if readOnly(args) {
		stdout = clienttest.Buffer{}
		if code, err := run(context.Background(), append(args, "--json"), &stdout, &stderr); code != 0 || !json.Valid([]byte(stdout.String())) {
			t.Errorf("%s: `%s --json` exited %d (%v) with invalid JSON:\n%s", l.where, l.text, code, err, stdout.String())
		}
	}
}

// readOnly tells the commands that may run twice, once with --json.
func readOnly(args []string) bool {
	switch args[0] {
	case "vms", "bmh", "check":
		return true
	case "bmc":
		return len(args) > 1 && (args[1] == "list" || args[1] == "show")
	}
	return false
}

// head is s's first n lines, to keep the log short.
func head(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "") + "...\n"
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

// build runs a README `go build` line with its output in a temporary
// directory, then the binary's `version` and `--version`.
func (e *readmeEnv) build(l readmeLine, args []string) {
	t := e.t
	if testing.Short() {
		t.Logf("%s: skipped in -short mode: %s", l.where, l.text)
		return
	}
	bin := filepath.Join(t.TempDir(), "ipmi-vmware-bridge")
	args = append([]string{}, args...)
	if i := indexOf(args, "-o"); i >= 0 {
		args[i+1] = bin
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: %s: %v\n%s", l.where, l.text, err, out)
		return
	}
	for _, v := range []string{"version", "--version"} {
		out, err := exec.Command(bin, v).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "ipmi-vmware-bridge ") {
			t.Errorf("%s: the built binary's %s: %v %q", l.where, v, err, out)
		}
	}
}

// duplicates checks item 7 of issue 10 on the README's daemon: a VM gets
// a second BMC only when asked explicitly, and its name is then refused
// by the bmc subcommands, which say what to use instead.
func (e *readmeEnv) duplicates(t *testing.T) {
	bmc := func(args ...string) (int, string, error) {
		var stdout clienttest.Buffer
		code, err := run(context.Background(), append(append([]string{"bmc"}, args...), "--socket", e.daemon.ep.Socket), &stdout, &clienttest.Buffer{})
		return code, stdout.String(), err
	}
	first, err := api.NewClient(e.daemon.ep.Socket).BMC(context.Background(), "skinner-worker-2")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(clienttest.FreeUDPPort(t))
	add := []string{"add", "skinner-worker-2", "--port", port, "--address", "127.0.0.1", "--password-file", e.pwFile}
	if code, _, err := bmc(add...); code != 1 || err == nil || !strings.Contains(err.Error(), "--allow-duplicate") || !strings.Contains(err.Error(), first.Address) {
		t.Fatalf("a second BMC for a VM: exit %d, %v", code, err)
	} else {
		t.Logf("a second BMC for a VM: %v", err)
	}
	if code, out, err := bmc(append(add, "--allow-duplicate", "--json")...); code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("--allow-duplicate: exit %d, %v\n%s", code, err, out)
	}
	second := "127.0.0.1:" + port
	for _, verb := range []string{"show", "stop", "start", "remove"} {
		code, _, err := bmc(verb, "skinner-worker-2")
		if code != 1 || err == nil || !strings.Contains(err.Error(), first.Address) || !strings.Contains(err.Error(), second) {
			t.Errorf("bmc %s of an ambiguous name: exit %d, %v", verb, code, err)
		} else if verb == "show" {
			t.Logf("bmc show of an ambiguous name: %v", err)
		}
	}
	var r actionResult
	if code, out, err := bmc("stop", second, "--json"); code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Result != "stopped" {
		t.Fatalf("bmc stop by address: exit %d, %v, %q", code, err, out)
	}
	if code, _, err := bmc("remove", second); code != 0 {
		t.Fatalf("bmc remove by address: %v", err)
	}
	if code, out, err := bmc("show", "skinner-worker-2"); code != 0 || !strings.Contains(out, first.Address) {
		t.Fatalf("show once the duplicate is gone: exit %d, %v\n%s", code, err, out)
	}
}

// TestCLI checks the command line's conventions without a daemon: help
// and version exit 0, a wrong command line exits 2, a command that ran
// and failed exits 1, and flags count after arguments.
func TestCLI(t *testing.T) {
	t.Setenv(passwordEnv, "")
	sock := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"-h"}, 0, "Available Commands", ""},
		{[]string{"--help"}, 0, "serve", ""},
		{[]string{"help"}, 0, "bmh", ""},
		{[]string{"help", "bmc"}, 0, "remove", ""},
		{[]string{"bmc", "-h"}, 0, "show", ""},
		{[]string{"bmc", "add", "--help"}, 0, "--allow-duplicate", ""},
		{[]string{"serve", "-h"}, 0, "--base-port", ""},
		{[]string{"serve", "-h"}, 0, "--console-address", ""},
		{[]string{"bmc", "add", "--help"}, 0, "--console", ""},
		{[]string{"console", "--help"}, 0, "~. at the start of a line leaves", ""},
		{[]string{"console"}, 2, "", "one VM"},
		{[]string{"console", "a", "b"}, 2, "", "one VM"},
		{[]string{"console", "vm", "--socket", sock}, 1, "", "no daemon at " + sock},
		{[]string{"console", "vm", "--log", "--socket", sock}, 1, "", "no daemon at " + sock},
		{[]string{"--version"}, 0, "ipmi-vmware-bridge " + version().Version + " (go", ""},
		{[]string{"version"}, 0, version().String(), ""},
		{[]string{"version", "--json"}, 0, `"go": "go`, ""},
		{nil, 2, "", "missing command"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"serve", "--nope"}, 2, "", "unknown flag: --nope"},
		{[]string{"serve", "extra"}, 2, "", "unknown command"},
		{[]string{"bmc"}, 2, "", "say list, show"},
		{[]string{"bmc", "show"}, 2, "", "which BMC?"},
		{[]string{"bmc", "stop", "a", "b"}, 2, "", "one BMC at a time"},
		{[]string{"bmc", "add", "vm"}, 2, "", "give --port"},
		{[]string{"bmc", "add", "vm", "--port", "7000"}, 2, "", "give --password-file"},
		{[]string{"bmc", "add", "vm", "--all", "--base-port", "7000"}, 2, "", "not both"},
		{[]string{"bmc", "stop", "vm", "--socket", sock}, 1, "", "no daemon at " + sock},
		{[]string{"bmh", "--json", "--socket", sock}, 1, "", "no daemon at " + sock},
		{[]string{"vms", "--socket", sock, "--json", "--folder", "/DC0/vm"}, 1, "", "no daemon at " + sock},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr clienttest.Buffer
			code, err := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String(), tt.out) {
				t.Errorf("exit %d (want %d), err %v, stdout:\n%s", code, tt.code, err, stdout.String())
			}
			if tt.inErr != "" && (err == nil || !strings.Contains(err.Error(), tt.inErr)) {
				t.Errorf("err %v, want %q", err, tt.inErr)
			}
		})
	}
}

// TestYAMLToJSON: bmh --json prints several manifests as a List that
// kubectl takes, one as itself.
func TestYAMLToJSON(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a: 1\n---\nb: [x]\n", `{"apiVersion":"v1","items":[{"a":1},{"b":["x"]}],"kind":"List"}`},
		{"hosts:\n  - name: x\n", `{"hosts":[{"name":"x"}]}`},
		{"", `{"apiVersion":"v1","items":[],"kind":"List"}`},
	} {
		var out strings.Builder
		if err := yamlToJSON(&out, []byte(tt.in)); err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(out.String())); err != nil {
			t.Fatal(err)
		}
		if compact.String() != tt.want {
			t.Errorf("%q: got %s, want %s", tt.in, compact.String(), tt.want)
		}
	}
}
