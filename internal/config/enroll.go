package config

import (
	"fmt"
	"io"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
)

// EnrollRule gives a BMC to every VM of a vCenter that matches it, from
// an address and port pool; see the README's "Enrolment" section.
type EnrollRule struct {
	// Where names the rule's place in the file, for logs.
	Where string
	// VCenter is the vCenter whose VMs the rule matches (by name).
	VCenter string
	// Folder (an inventory path: VMs in it or below), Name (a glob over
	// the VM's name) and Tag (a vSphere tag the VM carries) select VMs;
	// every one given must match.
	Folder, Name string
	Tag          Tag
	// Addresses and Ports are the pool the BMCs' endpoints come from,
	// address by address, port by port; none for a Redfish-only rule.
	Addresses []netip.Addr
	Ports     [2]int
	Username  string
	// Password is every enrolled BMC's password; or, with PasswordSecret
	// set, each BMC's is derived from the secret and its VM's BIOS UUID
	// (machine-independent: `bmh` prints it, an operator can compute it).
	Password       string
	PasswordSecret []byte
	// UsernameTemplate and PasswordTemplate, when set, make each BMC's
	// user and password from its VM (see Credentials) instead.
	UsernameTemplate, PasswordTemplate *template.Template
	// NoIPMI, NoRedfish and Console: as a BMC's (ipmi: false, ...).
	NoIPMI, NoRedfish, Console bool
	// Grace is how long a VM that stopped matching (or was deleted) keeps
	// its BMC: a VM moved between folders, retagged or re-created by an
	// installer keeps its address and port meanwhile.
	Grace time.Duration
}

// Enrolment defaults and bounds.
const (
	DefaultEnrollGrace = 5 * time.Minute
	// maxPoolAddresses bounds a rule's addresses: a /16 is more BMCs than
	// a process serves.
	maxPoolAddresses = 1 << 16
	// minSecretBytes: a shorter secret would make the derived passwords
	// guessable from one another.
	minSecretBytes = 16
)

// enroll reads the optional enroll list.
func (p *parser) enroll(fields map[string]*yaml.Node, cfg *Config) error {
	list, ok := fields["enroll"]
	if !ok {
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		return p.err(list, "enroll", "must be a list of rules")
	}
	for i, n := range list.Content {
		r, err := p.enrollRule(n, fmt.Sprintf("enroll[%d].", i), cfg)
		if err != nil {
			return err
		}
		cfg.Enroll = append(cfg.Enroll, r)
	}
	return nil
}

func (p *parser) enrollRule(n *yaml.Node, pre string, cfg *Config) (EnrollRule, error) {
	r := EnrollRule{Where: fmt.Sprintf("%s:%d", p.file, n.Line), Grace: DefaultEnrollGrace}
	f, err := p.mapping(n, pre, "vcenter", "folder", "name", "tag", "addresses", "ports", "username",
		"password", "passwordFile", "passwordSecretFile", "usernameTemplate", "passwordTemplate", "ipmi", "redfish", "console", "grace")
	if err != nil {
		return r, err
	}
	if err := p.enrollMatch(n, f, pre, cfg, &r); err != nil {
		return r, err
	}
	b := BMC{}
	if err := p.bmcFlags(f, pre, &b); err != nil {
		return r, err
	}
	r.NoIPMI, r.NoRedfish, r.Console = b.NoIPMI, b.NoRedfish, b.Console
	if r.Console && cfg.Console.Address == "" {
		return r, p.err(f["console"], pre+"console", "needs console.address: the concentrator the VMs' serial ports connect to")
	}
	if r.NoIPMI && cfg.Redfish.Address == "" {
		return r, p.err(f["ipmi"], pre+"ipmi", "Redfish-only BMCs need redfish.address, which is empty")
	}
	if err := p.enrollPool(n, f, pre, &r); err != nil {
		return r, err
	}
	if err := p.enrollCredentials(n, f, pre, &r); err != nil {
		return r, err
	}
	if _, ok := f["grace"]; ok {
		if r.Grace, err = p.duration(f, pre, "grace"); err != nil {
			return r, err
		}
	}
	return r, nil
}

// enrollMatch reads which vCenter's VMs a rule matches, and how.
func (p *parser) enrollMatch(n *yaml.Node, f map[string]*yaml.Node, pre string, cfg *Config, r *EnrollRule) error {
	var err error
	if r.VCenter, err = p.str(f, pre, "vcenter"); err != nil {
		return err
	}
	if err := p.vcenterOf(n, pre+"vcenter", &r.VCenter, cfg.VCenters); err != nil { // vcenters.go
		return err
	}
	if r.Folder, err = p.str(f, pre, "folder"); err != nil {
		return err
	}
	if r.Folder != "" && !strings.HasPrefix(r.Folder, "/") {
		return p.err(f["folder"], pre+"folder", "must be an inventory path such as /DC0/vm/ocp")
	}
	if r.Name, err = p.str(f, pre, "name"); err != nil {
		return err
	}
	if _, err := path.Match(r.Name, ""); err != nil {
		return p.err(f["name"], pre+"name", "is not a glob: "+err.Error())
	}
	tag, err := p.str(f, pre, "tag")
	if err != nil {
		return err
	}
	if _, ok := f["tag"]; ok {
		if r.Tag, err = ParseTag(tag); err != nil {
			return p.err(f["tag"], pre+"tag", err.Error())
		}
	}
	if r.Folder == "" && r.Name == "" && tag == "" {
		return p.err(n, pre+"folder", "missing: a rule matches by folder, name, tag or any of them together (name: \"*\" for every VM)")
	}
	return nil
}

// enrollPool reads a rule's addresses and ports, which a Redfish-only
// rule does not give.
func (p *parser) enrollPool(n *yaml.Node, f map[string]*yaml.Node, pre string, r *EnrollRule) error {
	if r.NoIPMI {
		for _, key := range []string{"addresses", "ports"} {
			if in, ok := f[key]; ok {
				return p.err(in, pre+key, "Redfish-only BMCs (ipmi: false) open no UDP port: remove "+key)
			}
		}
		return nil
	}
	pn, ok := f["ports"]
	if !ok {
		return p.err(n, pre+"ports", "missing: a range such as 6230-6999")
	}
	lo, hi, found := strings.Cut(pn.Value, "-")
	a, errA := strconv.Atoi(strings.TrimSpace(lo))
	b, errB := strconv.Atoi(strings.TrimSpace(hi))
	if !found {
		b, errB = a, errA
	}
	if errA != nil || errB != nil || a < 1 || b > 65535 || a > b {
		return p.err(pn, pre+"ports", "must be a range of ports such as 6230-6999 (or one port)")
	}
	r.Ports = [2]int{a, b}
	al, ok := f["addresses"]
	if !ok {
		r.Addresses = []netip.Addr{netip.MustParseAddr(DefaultAddress)}
		return nil
	}
	prefixes, err := p.networks(al, pre+"addresses") // media.go
	if err != nil {
		return err
	}
	return p.expand(al, pre+"addresses", prefixes, r)
}

// expand lists the addresses of prefixes, in order, at most
// maxPoolAddresses.
func (p *parser) expand(n *yaml.Node, key string, prefixes []netip.Prefix, r *EnrollRule) error {
	for _, pfx := range prefixes {
		for a := pfx.Addr(); pfx.Contains(a); a = a.Next() {
			if len(r.Addresses) == maxPoolAddresses {
				return p.err(n, key, fmt.Sprintf("more than %d addresses", maxPoolAddresses))
			}
			r.Addresses = append(r.Addresses, a)
		}
	}
	return nil
}

// enrollCredentials reads a rule's user and its password: shared,
// derived per VM, or made per VM by templates.
func (p *parser) enrollCredentials(n *yaml.Node, f map[string]*yaml.Node, pre string, r *EnrollRule) error {
	var err error
	if r.UsernameTemplate, err = p.credentialTemplate(f, pre, "usernameTemplate", "username"); err != nil {
		return err
	}
	if r.PasswordTemplate, err = p.credentialTemplate(f, pre, "passwordTemplate", "password", "passwordFile"); err != nil {
		return err
	}
	if r.Username, err = p.str(f, pre, "username"); err != nil {
		return err
	}
	if r.Username == "" {
		r.Username = DefaultUsername
	}
	if len(r.Username) > ipmi.MaxUsername {
		return p.err(f["username"], pre+"username", fmt.Sprintf("longer than %d bytes (IPMI's limit)", ipmi.MaxUsername))
	}
	if r.Password, err = p.secret(f, pre, "password"); err != nil {
		return err
	}
	secret, err := p.secret(f, pre, "passwordSecret")
	r.PasswordSecret = []byte(secret)
	switch {
	case err != nil:
		return err
	case secret != "" && len(secret) < minSecretBytes:
		return p.err(f["passwordSecretFile"], pre+"passwordSecretFile", fmt.Sprintf("the secret must be at least %d bytes", minSecretBytes))
	case r.PasswordTemplate != nil:
		return nil
	case secret != "" && r.Password != "":
		return p.err(f["passwordSecretFile"], pre+"passwordSecretFile", "give password (or passwordFile) or passwordSecretFile, not both")
	case secret == "" && r.Password == "":
		return p.err(n, pre+"password", "missing: give password, passwordFile, passwordSecretFile (a password per VM) or passwordTemplate")
	case len(r.Password) > ipmi.MaxPassword:
		return p.err(n, pre+"password", fmt.Sprintf("longer than %d bytes (IPMI's limit)", ipmi.MaxPassword))
	}
	r.PasswordSecret = []byte(secret)
	return nil
}

// Tag is a vSphere tag by its category's name and its own.
type Tag struct{ Category, Name string }

func (t Tag) String() string { return t.Category + "/" + t.Name }

// ParseTag reads CATEGORY/NAME (the category ends at the first "/"), as
// enrolment rules and the CLI's --tag give a tag.
func ParseTag(s string) (Tag, error) {
	c, n, ok := strings.Cut(s, "/")
	if !ok || c == "" || n == "" {
		return Tag{}, fmt.Errorf("tag %q: give CATEGORY/NAME, e.g. cluster/skinner", s)
	}
	return Tag{Category: c, Name: n}, nil
}

// CredentialData is what a credential template sees of a VM.
type CredentialData struct {
	// Name is the VM's name when it was first enrolled: a rename later
	// changes no credential.
	Name string
	// UUID is its BIOS UUID in lower case, and VCenter its vCenter's name.
	UUID, VCenter string
	// Derived is the password passwordSecretFile derives for the VM ("" if
	// the rule has none): what keeps a password template from being made
	// of facts anyone who can read vCenter knows.
	Derived string
}

// Credential renders a credential template for a VM and checks the
// result against IPMI's limit (limit bytes, at least one).
func Credential(t *template.Template, d CredentialData, limit int) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("%s fails for VM %s (%s)", t.Name(), d.Name, templateErrorAt(err))
	}
	if n := b.Len(); n == 0 || n > limit {
		return "", fmt.Errorf("%s gives %d bytes for VM %s; IPMI takes 1 to %d", t.Name(), n, d.Name, limit)
	}
	return b.String(), nil
}

// credentialTemplate reads the Go template key, which replaces the keys
// instead, and tries it on an example VM so that a mistake is found now.
func (p *parser) credentialTemplate(f map[string]*yaml.Node, pre, key string, instead ...string) (*template.Template, error) {
	src, err := p.str(f, pre, key)
	if err != nil || src == "" {
		return nil, err
	}
	for _, k := range instead {
		if _, ok := f[k]; ok {
			return nil, p.err(f[k], pre+k, "give "+k+" or "+key+", not both")
		}
	}
	t, err := template.New(key).Option("missingkey=error").Parse(src)
	if err == nil {
		err = t.Execute(io.Discard, CredentialData{Name: "vm", UUID: "00000000-0000-0000-0000-000000000000",
			VCenter: DefaultVCenterName, Derived: strings.Repeat("x", ipmi.MaxPassword)})
	}
	if err != nil {
		return nil, p.err(f[key], pre+key, "is not a template of .Name, .UUID, .VCenter and .Derived ("+templateErrorAt(err)+")")
	}
	return t, nil
}

// templateAt finds where text/template says an error is.
var templateAt = regexp.MustCompile(`^template: [^:]*:(\d+(?::\d+)?):`)

// templateErrorAt words a template's error by its place alone: the error
// quotes the failing text, which may hold a secret.
func templateErrorAt(err error) string {
	if m := templateAt.FindStringSubmatch(err.Error()); m != nil {
		return "at " + m[1] + "; its text is not repeated, as it may hold a secret"
	}
	return "its text is not repeated, as it may hold a secret"
}
