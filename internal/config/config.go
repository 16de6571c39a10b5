// Package config owns the bridge's YAML configuration: its shape, its
// defaults (in one place, here) and its validation. Every error names the
// file, the line and the key, so an operator can fix it without guessing.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
)

// PasswordEnv supplies the vCenter password when the file gives none, so that
// it can come from a Kubernetes Secret or a systemd credential.
const PasswordEnv = "IPMI_VMWARE_BRIDGE_VCENTER_PASSWORD"

// Defaults.
const (
	DefaultMetricsAddress  = "127.0.0.1:9623"
	DefaultOneTimeBootHold = 20 * time.Second
	DefaultRedfishAddress  = "0.0.0.0:8000"
	DefaultAddress         = "0.0.0.0"
	DefaultUsername        = "admin"
	// DefaultStateDir holds the state file unless systemd's StateDirectory=
	// (the environment variable STATE_DIRECTORY) or stateDir says otherwise.
	DefaultStateDir = "/var/lib/ipmi-vmware-bridge"
)

// Config is a loaded and validated configuration.
type Config struct {
	// VCenters are the vCenters bridged, in the file's order: the
	// vcenters list, or the single vcenter section as a list of one.
	VCenters []VCenter
	BMCs     []BMC
	// StateDir holds state.json: boot overrides that survive a restart.
	StateDir string
	// SoftOffTimeout, when positive, turns a guest shutdown that has not
	// finished in time, or that VMware Tools cannot do, into a hard off.
	SoftOffTimeout time.Duration
	// OneTimeBootHold is how long after a boot a one-time override's boot
	// order stays, so that the firmware reads it during POST.
	OneTimeBootHold time.Duration
	IPMI            IPMI
	// MetricsAddress serves /metrics, /healthz and /readyz; "" turns it off.
	MetricsAddress string
	Redfish        Redfish
	Media          Media
	Boot           Boot
	// Console is the serial console concentrator.
	Console Console
	// Enroll are the enrolment rules (enroll.go), in the file's order: a
	// VM matched by several gets its BMC from the first.
	Enroll []EnrollRule
}

// IPMI tunes every IPMI endpoint.
type IPMI struct {
	// SessionTimeout ends idle sessions (0: the IPMI default of 60 s).
	SessionTimeout time.Duration
	// SessionLimit caps each BMC's concurrent sessions (0: the default).
	SessionLimit int
	// LockoutFailures failed logins from one address within LockoutWindow
	// lock it out of that BMC for LockoutDuration (0 failures: no lockout).
	LockoutFailures int
	LockoutWindow   time.Duration
	LockoutDuration time.Duration
	// SessionSetupRate caps session-setup packets per address and BMC per
	// second (0: no limit).
	SessionSetupRate float64
}

// Redfish configures the Redfish service.
type Redfish struct {
	// Address is host:port to serve HTTPS on; "" turns Redfish off.
	Address string
	// CertFile and KeyFile; empty: a self-signed certificate kept in
	// StateDir.
	CertFile, KeyFile string
}

// Boot tunes boot overrides.
type Boot struct {
	// FollowEFIBit says which boot overrides change a VM's firmware (IPMI's
	// EFI bit, Redfish's BootSourceOverrideMode): "persistent" only
	// persistent ones, "always" one-time ones too (for their one boot),
	// "never" none. A one-time override puts back the firmware it changed.
	FollowEFIBit string
}

// FollowEFIBits are boot.followEfiBit's values, the default first
// (machine.FirmwarePolicies lists the same).
var FollowEFIBits = []string{"persistent", "always", "never"}

// VCenter says how to reach vCenter.
type VCenter struct {
	// Name tells the vCenters apart (bmcs[].vcenter, --vcenter, metrics
	// labels, Redfish ids of VMs whose names clash): letters, digits, '-',
	// '.' and '_'. DefaultVCenterName for the single vcenter section.
	Name     string
	URL      string
	Username string
	Password string
	Insecure bool
	CAFile   string
	// LoginFailures failed logins within LoginWindow at most: the bridge
	// then waits rather than lock its vCenter account (vCenter locks an
	// account after 5 failures by default).
	LoginFailures int
	LoginWindow   time.Duration
}

// DefaultVCenterName names the vCenter of a vcenter section without a
// name.
const DefaultVCenterName = "default"

// VCenterNamed returns the vCenter called name.
func (c *Config) VCenterNamed(name string) (VCenter, bool) {
	for _, vc := range c.VCenters {
		if vc.Name == name {
			return vc, true
		}
	}
	return VCenter{}, false
}

// Failed-login cap defaults: 3 failures per 15 minutes stay below
// vCenter's default lockout (5 failures within 3 minutes).
const (
	DefaultLoginFailures = 3
	DefaultLoginWindow   = 15 * time.Minute
)

// BMC is one virtual BMC.
type BMC struct {
	// VM is a name, an inventory path (/DC0/vm/name) or a BIOS UUID.
	VM       string
	Address  string
	Port     int
	Username string
	Password string
	// Where names the BMC's place in the file ("config.yaml:12") for
	// errors found later, such as a VM that does not exist.
	Where string
	// VCenter names the vCenter holding VM (bmcs[].vcenter): required
	// with several, else the only one's name.
	VCenter string
	// AllowDuplicate (allowDuplicate) lets this entry give a VM named by
	// an earlier entry a second BMC; without it that is an error, so that
	// a VM name names one BMC.
	AllowDuplicate bool
	// Console: the BMC offers its VM's serial console (IPMI SOL, the
	// management API's console), the VM's serial port pointed at the
	// concentrator (Config.Console).
	Console bool
	// SOLPort (solPort), when set, is the UDP port Serial-over-LAN
	// clients reach the BMC at, advertised instead of Port: ipmitool,
	// FreeIPMI and pyghmi refuse SOL on a port other than the one they
	// logged in to, so a BMC behind NAT or a container's port mapping
	// must name the port they see. 0: Port.
	SOLPort int
	// NoIPMI (ipmi: false) makes a Redfish-only BMC: no UDP port is
	// opened, and Address and Port are empty. Security teams switch IPMI
	// off where Redfish serves because IPMI 2.0's RAKP hands out a salted
	// hash of the password to anyone who asks (see the README).
	NoIPMI bool
	// NoRedfish (redfish: false) makes an IPMI-only BMC: its VM is not a
	// Redfish system.
	NoRedfish bool
}

// Endpoint is the BMC's host:port, "" for a Redfish-only BMC.
func (b BMC) Endpoint() string {
	if b.NoIPMI {
		return ""
	}
	return net.JoinHostPort(b.Address, strconv.Itoa(b.Port))
}

// Error is a configuration error at a place in a file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

// Load reads and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, Env{Password: os.Getenv(PasswordEnv), StateDirectory: os.Getenv("STATE_DIRECTORY")})
}

// Env is what the environment adds to a configuration file.
type Env struct {
	// Password is PasswordEnv's value.
	Password string
	// StateDirectory is set by systemd's StateDirectory= (colon-separated).
	StateDirectory string
}

// Parse validates data read from file.
func Parse(file string, data []byte, env Env) (*Config, error) {
	p := &parser{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Line: 1, Msg: "empty file: needs vcenter and bmcs"}
	}
	cfg := &Config{}
	root := doc.Content[0]
	fields, err := p.mapping(root, "", "vcenter", "vcenters", "bmcs", "stateDir", "softOffTimeout", "oneTimeBootHold", "ipmi", "metricsAddress", "redfish", "media", "boot", "console", "enroll")
	if err != nil {
		return nil, err
	}
	if err := p.sections(fields, cfg); err != nil {
		return nil, err
	}
	if err := p.stateAndTimings(fields, env.StateDirectory, cfg); err != nil {
		return nil, err
	}
	if cfg.VCenters, err = p.vcenters(root, fields, env.Password); err != nil { // vcenters.go
		return nil, err
	}
	if cfg.BMCs, err = p.bmcs(root, fields, cfg.VCenters); err != nil {
		return nil, err
	}
	if err := p.consoleBMCs(fields["bmcs"], cfg); err != nil { // console.go
		return nil, err
	}
	if err := p.redfishOnlyBMCs(fields["bmcs"], cfg); err != nil {
		return nil, err
	}
	if err := p.enroll(fields, cfg); err != nil { // enroll.go
		return nil, err
	}
	return cfg, nil
}

// redfishOnlyBMCs refuses a Redfish-only BMC while Redfish is off: it
// would serve nothing at all.
func (p *parser) redfishOnlyBMCs(list *yaml.Node, cfg *Config) error {
	if cfg.Redfish.Address != "" {
		return nil
	}
	for i, b := range cfg.BMCs {
		if b.NoIPMI {
			return p.err(valueOf(list.Content[i], "ipmi"), fmt.Sprintf("bmcs[%d].ipmi", i), "a Redfish-only BMC needs redfish.address, which is empty: set it, or give this BMC a port and ipmi: true")
		}
	}
	return nil
}

// valueOf is the value of key in the mapping n, or n when it has none,
// for an error's line number.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == key {
			return n.Content[j+1]
		}
	}
	return n
}

// stateAndTimings reads stateDir (default: systemd's first
// StateDirectory, else DefaultStateDir), softOffTimeout and
// oneTimeBootHold.
func (p *parser) stateAndTimings(fields map[string]*yaml.Node, envStateDir string, cfg *Config) error {
	var err error
	if cfg.StateDir, err = p.str(fields, "", "stateDir"); err != nil {
		return err
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
		if d, _, _ := strings.Cut(envStateDir, ":"); d != "" {
			cfg.StateDir = d
		}
	}
	if cfg.SoftOffTimeout, err = p.duration(fields, "", "softOffTimeout"); err != nil {
		return err
	}
	cfg.OneTimeBootHold = DefaultOneTimeBootHold
	if _, ok := fields["oneTimeBootHold"]; ok {
		if cfg.OneTimeBootHold, err = p.duration(fields, "", "oneTimeBootHold"); err != nil {
			return err
		}
	}
	return nil
}

// bmcs reads the list of BMCs: one per address, and one per VM unless an
// entry allows a duplicate.
func (p *parser) bmcs(root *yaml.Node, fields map[string]*yaml.Node, vcs []VCenter) ([]BMC, error) {
	list, ok := fields["bmcs"]
	if _, enrol := fields["enroll"]; !ok && enrol {
		return nil, nil // the rules give the BMCs
	} else if !ok {
		return nil, p.err(root, "bmcs", "missing (or enroll, rules that give VMs BMCs)")
	}
	if list.Kind != yaml.SequenceNode {
		return nil, p.err(list, "bmcs", "must be a list")
	}
	var out []BMC
	seen := map[string]string{}
	vms := map[string]string{} // by vCenter and VM
	for i, n := range list.Content {
		b, err := p.bmc(n, fmt.Sprintf("bmcs[%d]", i))
		if err != nil {
			return nil, err
		}
		if err := p.vcenterOf(n, fmt.Sprintf("bmcs[%d].vcenter", i), &b.VCenter, vcs); err != nil { // vcenters.go
			return nil, err
		}
		// A BMC is known by its UDP endpoint, a Redfish-only one by its VM.
		key, what, msg := b.Endpoint(), fmt.Sprintf("bmcs[%d].port", i), b.Endpoint()+" is already used at "
		if b.NoIPMI {
			key, what, msg = "redfish-only "+b.VCenter+"/"+b.VM, fmt.Sprintf("bmcs[%d].ipmi", i), b.VM+" already has a Redfish-only BMC (a VM is one Redfish system) at "
		}
		if where, dup := seen[key]; dup {
			return nil, p.err(n, what, msg+where)
		}
		seen[key] = b.Where
		if where, dup := vms[b.VCenter+"/"+b.VM]; dup && !b.AllowDuplicate {
			return nil, p.err(n, fmt.Sprintf("bmcs[%d].vm", i), fmt.Sprintf("%s already has a BMC at %s; set allowDuplicate: true on this entry for a second one", b.VM, where))
		} else if !dup {
			vms[b.VCenter+"/"+b.VM] = b.Where
		}
		out = append(out, b)
	}
	return out, nil
}

type parser struct{ file string }

func (p *parser) err(n *yaml.Node, key, msg string) error {
	return &Error{File: p.file, Line: n.Line, Key: key, Msg: msg}
}

// mapping checks that n is a mapping with only the known keys, each once,
// and returns the value nodes by key.
func (p *parser) mapping(n *yaml.Node, prefix string, known ...string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.err(n, strings.TrimSuffix(prefix, "."), "must be a mapping")
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(known, k.Value) {
			return nil, p.err(k, prefix+k.Value, "unknown key (known: "+strings.Join(known, ", ")+")")
		}
		if _, dup := out[k.Value]; dup {
			return nil, p.err(k, prefix+k.Value, "given twice")
		}
		out[k.Value] = v
	}
	return out, nil
}

func (p *parser) str(fields map[string]*yaml.Node, prefix, key string) (string, error) {
	n, ok := fields[key]
	if !ok {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.err(n, prefix+key, "must be a string")
	}
	return n.Value, nil
}

// secret returns the value of key, or the contents of keyFile, never both.
func (p *parser) secret(fields map[string]*yaml.Node, prefix, key string) (string, error) {
	v, err := p.str(fields, prefix, key)
	if err != nil {
		return "", err
	}
	file, err := p.str(fields, prefix, key+"File")
	if err != nil || file == "" {
		return v, err
	}
	if v != "" {
		return "", p.err(fields[key+"File"], prefix+key+"File", "give "+key+" or "+key+"File, not both")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		// The path is not secret; the contents are never shown.
		return "", p.err(fields[key+"File"], prefix+key+"File", errors.Unwrap(err).Error()+": "+file)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

func (p *parser) duration(fields map[string]*yaml.Node, prefix, key string) (time.Duration, error) {
	n, ok := fields[key]
	if !ok {
		return 0, nil
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode || d < 0 {
		return 0, p.err(n, prefix+key, "must be a duration such as 2m or 90s")
	}
	return d, nil
}

// caFile checks that file (the value of key at n) is a readable PEM
// bundle of certificates, at validation rather than at first use.
func (p *parser) caFile(n *yaml.Node, key, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return p.err(n, key, err.Error())
	}
	rest, certs := data, 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return p.err(n, key, fmt.Sprintf("%s: certificate %d: %v", file, certs+1, err))
		}
		certs++
	}
	if certs == 0 {
		return p.err(n, key, file+": no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
	}
	return nil
}

// sections reads the optional ipmi, metricsAddress, redfish, media, boot
// and console settings, with their defaults.
func (p *parser) sections(fields map[string]*yaml.Node, cfg *Config) error {
	var err error
	if cfg.MetricsAddress, err = p.listenAddress(fields, "", "metricsAddress", DefaultMetricsAddress, "metrics"); err != nil {
		return err
	}
	if cfg.IPMI, err = p.ipmi(fields); err != nil {
		return err
	}
	if cfg.Redfish, err = p.redfish(fields); err != nil {
		return err
	}
	if err := p.media(fields, &cfg.Media); err != nil { // media.go
		return err
	}
	if cfg.Boot, err = p.boot(fields); err != nil {
		return err
	}
	return p.console(fields, &cfg.Console) // console.go
}

// listenAddress reads the host:port at key, def when absent; "" turns
// what listens there off.
func (p *parser) listenAddress(fields map[string]*yaml.Node, prefix, key, def, what string) (string, error) {
	n, ok := fields[key]
	if !ok {
		return def, nil
	}
	a, err := p.str(fields, prefix, key)
	if err != nil {
		return "", err
	}
	if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
		return "", p.err(n, prefix+key, "must be host:port, or empty to turn "+what+" off")
	}
	return a, nil
}

// ipmi reads the ipmi section.
func (p *parser) ipmi(fields map[string]*yaml.Node) (IPMI, error) {
	// The lockout and setup-rate defaults are the guard's, which owns them.
	g := guard.Default
	c := IPMI{LockoutFailures: g.Failures, LockoutWindow: g.Window, LockoutDuration: g.Lockout, SessionSetupRate: g.SetupRate}
	n, ok := fields["ipmi"]
	if !ok {
		return c, nil
	}
	f, err := p.mapping(n, "ipmi.", "sessionTimeout", "sessionLimit", "lockoutFailures", "lockoutWindow", "lockoutDuration", "sessionSetupRate")
	if err != nil {
		return c, err
	}
	if err := p.lockout(f, &c); err != nil {
		return c, err
	}
	if r, ok := f["sessionSetupRate"]; ok {
		if err := r.Decode(&c.SessionSetupRate); err != nil || (r.Tag != "!!int" && r.Tag != "!!float") || c.SessionSetupRate < 0 {
			return c, p.err(r, "ipmi.sessionSetupRate", "must be a number of packets per second, 0 for no limit")
		}
	}
	if c.SessionTimeout, err = p.duration(f, "ipmi.", "sessionTimeout"); err != nil {
		return c, err
	}
	if l, ok := f["sessionLimit"]; ok {
		if err := l.Decode(&c.SessionLimit); err != nil || l.Tag != "!!int" || c.SessionLimit < 1 || c.SessionLimit > 63 {
			return c, p.err(l, "ipmi.sessionLimit", "must be a whole number from 1 to 63")
		}
	}
	return c, nil
}

// lockout reads the ipmi section's lockout settings into c.
func (p *parser) lockout(f map[string]*yaml.Node, c *IPMI) error {
	if l, ok := f["lockoutFailures"]; ok {
		if err := l.Decode(&c.LockoutFailures); err != nil || l.Tag != "!!int" || c.LockoutFailures < 0 {
			return p.err(l, "ipmi.lockoutFailures", "must be a whole number, 0 to turn the lockout off")
		}
	}
	durations := []struct {
		key string
		dst *time.Duration
	}{{"lockoutWindow", &c.LockoutWindow}, {"lockoutDuration", &c.LockoutDuration}}
	for _, d := range durations {
		if _, ok := f[d.key]; ok {
			var err error
			if *d.dst, err = p.duration(f, "ipmi.", d.key); err != nil {
				return err
			}
		}
	}
	// With failures counted, a zero window would count nothing (each
	// failure is out of the window at once) and a zero duration would
	// lock out for no time: the lockout silently off.
	if c.LockoutFailures > 0 {
		for _, d := range durations {
			if n, ok := f[d.key]; ok && *d.dst == 0 {
				return p.err(n, "ipmi."+d.key, "must be more than 0 while lockoutFailures is above 0 (set lockoutFailures: 0 to turn the lockout off)")
			}
		}
	}
	return nil
}

// redfish reads the redfish section.
func (p *parser) redfish(fields map[string]*yaml.Node) (Redfish, error) {
	r := Redfish{Address: DefaultRedfishAddress}
	n, ok := fields["redfish"]
	if !ok {
		return r, nil
	}
	f, err := p.mapping(n, "redfish.", "address", "certFile", "keyFile")
	if err != nil {
		return r, err
	}
	if r.Address, err = p.listenAddress(f, "redfish.", "address", DefaultRedfishAddress, "Redfish"); err != nil {
		return r, err
	}
	if r.CertFile, err = p.str(f, "redfish.", "certFile"); err != nil {
		return r, err
	}
	if r.KeyFile, err = p.str(f, "redfish.", "keyFile"); err != nil {
		return r, err
	}
	if (r.CertFile == "") != (r.KeyFile == "") {
		return r, p.err(n, "redfish", "give both certFile and keyFile, or neither for a self-signed certificate")
	}
	if r.CertFile != "" {
		// Checked here, not when Redfish starts: a daemon that exits
		// after logging in to vCenter costs a failed login at each
		// restart when the password is wrong.
		if _, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile); err != nil {
			return r, p.err(f["certFile"], "redfish.certFile", fmt.Sprintf("%s with keyFile %s: not a usable PEM certificate and key pair: %v", r.CertFile, r.KeyFile, err))
		}
	}
	return r, nil
}

// boot reads the boot section.
func (p *parser) boot(fields map[string]*yaml.Node) (Boot, error) {
	b := Boot{FollowEFIBit: FollowEFIBits[0]}
	n, ok := fields["boot"]
	if !ok {
		return b, nil
	}
	f, err := p.mapping(n, "boot.", "followEfiBit")
	if err != nil {
		return b, err
	}
	if v, ok := f["followEfiBit"]; ok {
		if v.Kind != yaml.ScalarNode || !slices.Contains(FollowEFIBits, v.Value) {
			return b, p.err(v, "boot.followEfiBit", "must be one of "+strings.Join(FollowEFIBits, ", ")+" (default "+FollowEFIBits[0]+": only persistent boot overrides change the firmware)")
		}
		b.FollowEFIBit = v.Value
	}
	return b, nil
}

// vcenter reads one vCenter's section, its keys prefixed pre
// ("vcenter." or "vcenters[1]."); envPassword is the password when the
// file gives none.
func (p *parser) vcenter(n *yaml.Node, pre, envPassword string) (VCenter, error) {
	var vc VCenter
	f, err := p.mapping(n, pre, "name", "url", "username", "password", "passwordFile", "insecure", "caFile", "loginFailures", "loginWindow")
	if err != nil {
		return vc, err
	}
	if vc.Name, err = p.vcenterName(n, f, pre); err != nil { // vcenters.go
		return vc, err
	}
	if vc.URL, err = p.vcenterURL(n, f, pre); err != nil {
		return vc, err
	}
	if vc.Username, err = p.str(f, pre, "username"); err != nil {
		return vc, err
	}
	if vc.Username == "" {
		return vc, p.err(n, pre+"username", "missing")
	}
	if vc.Password, err = p.secret(f, pre, "password"); err != nil {
		return vc, err
	}
	if vc.Password == "" {
		vc.Password = envPassword
	}
	if vc.Password == "" && pre != singleVCenter {
		return vc, p.err(n, pre+"password", "missing: give password or passwordFile ("+PasswordEnv+" serves a single vcenter section only)")
	}
	if vc.Password == "" {
		return vc, p.err(n, pre+"password", "missing: give password, passwordFile or the environment variable "+PasswordEnv)
	}
	if in, ok := f["insecure"]; ok {
		if err := in.Decode(&vc.Insecure); err != nil || in.Tag != "!!bool" {
			return vc, p.err(in, pre+"insecure", "must be true or false")
		}
	}
	if vc.CAFile, err = p.str(f, pre, "caFile"); err != nil {
		return vc, err
	}
	if vc.CAFile != "" {
		if err := p.caFile(f["caFile"], pre+"caFile", vc.CAFile); err != nil {
			return vc, err
		}
	}
	vc.LoginFailures, vc.LoginWindow, err = p.loginCap(f, pre)
	return vc, err
}

// vcenterURL reads the url of the vCenter section n, the SDK endpoint.
func (p *parser) vcenterURL(n *yaml.Node, f map[string]*yaml.Node, pre string) (string, error) {
	key := pre + "url"
	raw, err := p.str(f, pre, "url")
	if err != nil {
		return "", err
	}
	u, perr := url.Parse(raw)
	switch {
	case raw == "":
		return "", p.err(n, key, "missing")
	case perr != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "", p.err(f["url"], key, "must be an https URL such as https://vcenter.example.com/sdk")
	case u.User != nil:
		return "", p.err(f["url"], key, "must not contain credentials; use username and password")
	case u.Path == "" || u.Path == "/":
		// The SDK endpoint is /sdk on every vCenter and ESXi; a bare host
		// is what people paste, so it is completed rather than refused.
		u.Path = "/sdk"
		return u.String(), nil
	case u.Path != "/sdk" && u.Path != "/sdk/":
		return "", p.err(f["url"], key, fmt.Sprintf("path %q is not the SDK endpoint: use https://%s/sdk", u.Path, u.Host))
	}
	return raw, nil
}

// loginCap reads a vCenter's loginFailures and loginWindow, with their
// defaults.
func (p *parser) loginCap(f map[string]*yaml.Node, pre string) (int, time.Duration, error) {
	failures, window := DefaultLoginFailures, DefaultLoginWindow
	if l, ok := f["loginFailures"]; ok {
		if err := l.Decode(&failures); err != nil || l.Tag != "!!int" || failures < 1 || failures > 4 {
			return 0, 0, p.err(l, pre+"loginFailures", "must be a whole number from 1 to 4 (vCenter locks an account after 5 failures by default)")
		}
	}
	if _, ok := f["loginWindow"]; ok {
		var err error
		if window, err = p.duration(f, pre, "loginWindow"); err != nil {
			return 0, 0, err
		}
		if window < 5*time.Minute {
			return 0, 0, p.err(f["loginWindow"], pre+"loginWindow", "must be at least 5m (vCenter counts failures over 3 minutes and locks for 5 by default)")
		}
	}
	return failures, window, nil
}

func (p *parser) bmc(n *yaml.Node, name string) (BMC, error) {
	b := BMC{Where: fmt.Sprintf("%s:%d", p.file, n.Line)}
	pre := name + "."
	f, err := p.mapping(n, pre, "vm", "vcenter", "address", "port", "username", "password", "passwordFile", "allowDuplicate", "console", "solPort", "ipmi", "redfish")
	if err != nil {
		return b, err
	}
	if b.VM, err = p.str(f, pre, "vm"); err != nil {
		return b, err
	}
	if b.VCenter, err = p.str(f, pre, "vcenter"); err != nil {
		return b, err
	}
	if b.VM == "" {
		return b, p.err(n, pre+"vm", "missing: a VM name, inventory path or BIOS UUID")
	}
	if err := p.bmcFlags(f, pre, &b); err != nil {
		return b, err
	}
	if err := p.bmcProtocols(n, f, pre, &b); err != nil {
		return b, err
	}
	if b.Username, err = p.str(f, pre, "username"); err != nil {
		return b, err
	}
	if b.Username == "" {
		b.Username = DefaultUsername
	}
	if len(b.Username) > ipmi.MaxUsername {
		return b, p.err(f["username"], pre+"username", fmt.Sprintf("longer than %d bytes (IPMI's limit)", ipmi.MaxUsername))
	}
	if b.Password, err = p.secret(f, pre, "password"); err != nil {
		return b, err
	}
	switch {
	case b.Password == "":
		return b, p.err(n, pre+"password", "missing: give password or passwordFile")
	case len(b.Password) > ipmi.MaxPassword:
		return b, p.err(n, pre+"password", fmt.Sprintf("longer than %d bytes (IPMI's limit)", ipmi.MaxPassword))
	}
	return b, nil
}

// bmcFlags reads a BMC's switches: allowDuplicate, console, and ipmi and
// redfish (true unless set false, stored negated so that a zero BMC
// serves both).
func (p *parser) bmcFlags(f map[string]*yaml.Node, pre string, b *BMC) error {
	ipmiOn, redfishOn := true, true
	for _, flag := range []struct {
		key string
		dst *bool
	}{{"allowDuplicate", &b.AllowDuplicate}, {"console", &b.Console}, {"ipmi", &ipmiOn}, {"redfish", &redfishOn}} {
		if in, ok := f[flag.key]; ok {
			if err := in.Decode(flag.dst); err != nil || in.Tag != "!!bool" {
				return p.err(in, pre+flag.key, "must be true or false")
			}
		}
	}
	b.NoIPMI, b.NoRedfish = !ipmiOn, !redfishOn
	if b.NoIPMI && b.NoRedfish {
		return p.err(f["ipmi"], pre+"ipmi", "ipmi and redfish are both false: a BMC serves IPMI, Redfish or both; remove the entry instead")
	}
	return nil
}

// bmcProtocols reads where a BMC serves IPMI: address, port and solPort,
// which a Redfish-only BMC (ipmi: false) must not give, since it opens no
// UDP port.
func (p *parser) bmcProtocols(n *yaml.Node, f map[string]*yaml.Node, pre string, b *BMC) error {
	if b.NoIPMI {
		for _, key := range []string{"address", "port", "solPort"} {
			if in, ok := f[key]; ok {
				return p.err(in, pre+key, "a Redfish-only BMC (ipmi: false) opens no UDP port: remove "+key+", or set ipmi: true")
			}
		}
		return nil
	}
	var err error
	if b.Address, err = p.str(f, pre, "address"); err != nil {
		return err
	}
	if b.Address == "" {
		b.Address = DefaultAddress
	} else if net.ParseIP(b.Address) == nil {
		return p.err(f["address"], pre+"address", "must be an IP address")
	}
	pn, ok := f["port"]
	if !ok {
		return p.err(n, pre+"port", "missing (or ipmi: false for a Redfish-only BMC)")
	}
	if err := pn.Decode(&b.Port); err != nil || pn.Tag != "!!int" || b.Port < 1 || b.Port > 65535 {
		return p.err(pn, pre+"port", "must be a whole number from 1 to 65535")
	}
	if sn, ok := f["solPort"]; ok {
		if err := sn.Decode(&b.SOLPort); err != nil || sn.Tag != "!!int" || b.SOLPort < 1 || b.SOLPort > 65535 {
			return p.err(sn, pre+"solPort", "must be a whole number from 1 to 65535: the port SOL clients reach this BMC at")
		}
	}
	return nil
}
