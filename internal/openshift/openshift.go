// Package openshift renders the manifests that point an OpenShift/Metal3
// cluster at the bridge's BMCs: BareMetalHost resources with their credential
// Secrets for a running cluster, and the platform.baremetal.hosts list of
// install-config.yaml for a new one.
//
// It owns the translation from a bridged VM (its BMC address, credentials and
// provisioning NIC) to what Metal3 reads: the BMC URL, the Kubernetes object
// names and the YAML itself, and which hosts are a running cluster's control
// plane, which Metal3 must leave alone (see ControlPlane). Every host is
// validated before a byte is written, so a failed call writes nothing, and the
// output depends on nothing but the input, so it can be golden-tested.
package openshift

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultNamespace is where the Baremetal Operator watches BareMetalHosts in
// an OpenShift cluster.
const DefaultNamespace = "openshift-machine-api"

// Protocols, as the scheme of spec.bmc.address.
const (
	// ProtocolIPMI drives the BMC with Ironic's ipmitool driver; the address
	// is ipmi://HOST:PORT.
	ProtocolIPMI = "ipmi"
	// ProtocolRedfishVirtualMedia drives it with Ironic's redfish driver and
	// boots through virtual media; the address is
	// redfish-virtualmedia://HOST:PORT/redfish/v1/Systems/ID.
	ProtocolRedfishVirtualMedia = "redfish-virtualmedia"
)

// Boot modes, as the BareMetalHost's spec.bootMode and install-config.yaml's
// hosts[].bootMode spell them.
const (
	bootModeLegacy         = "legacy"
	bootModeUEFI           = "UEFI"
	bootModeUEFISecureBoot = "UEFISecureBoot"
)

// Roles a host can have in install-config.yaml.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
)

// Host is one bridged VM as the cluster sees it.
type Host struct {
	// Name is the VM's name. It becomes the BareMetalHost's name after
	// sanitising (see BareMetalHosts).
	Name string
	// BMCAddress is the BMC's HOST:PORT as the cluster reaches it, e.g.
	// 192.168.86.168:627 or [fd00::1]:623. HOST is an IP address or a DNS
	// name.
	BMCAddress string
	// Username and Password are the BMC's credentials; both are required
	// because Metal3 refuses a credentials Secret with either one empty.
	Username, Password string
	// BootMAC is the MAC address of the VM's provisioning NIC (EUI-48, in
	// any form net.ParseMAC accepts); the output has it lower-case with
	// colons.
	BootMAC string
	// UEFI selects bootMode UEFI; otherwise legacy (BIOS).
	UEFI bool
	// SecureBoot, with UEFI, selects bootMode UEFISecureBoot instead, so
	// that Ironic knows the firmware enforces secure boot, and keeps it on,
	// when it deploys the host. Without UEFI it is ignored: there is no
	// secure boot without UEFI firmware. Metal3 and the installer refuse
	// UEFISecureBoot for an ipmi:// address (their IPMI driver cannot
	// switch secure boot), so a secure-boot host must be driven through
	// Redfish (RedfishSystem or ProtocolRedfishVirtualMedia); otherwise it
	// is an error, not a bootMode UEFI that would hide the firmware's
	// secure boot from Ironic.
	SecureBoot bool
	// Online is the BareMetalHost's spec.online: whether Metal3 keeps the
	// VM powered on. A ControlPlane host is online whatever Online says.
	Online bool
	// ControlPlane marks a VM that already runs the cluster's control plane
	// (see ControlPlane.Match). BareMetalHosts are applied to a running
	// cluster, so its BareMetalHost gets, in its spec:
	//
	//   - externallyProvisioned: true. Metal3 registers the host (checking
	//     the BMC credentials, which is why its Secret stays) and moves it
	//     straight to the "externally provisioned" state: it never
	//     inspects, cleans or provisions it, and manages only its power.
	//   - online: true, whatever Online says. Power being the one thing
	//     Metal3 still manages, it makes the VM's power match online: false
	//     would power off a running master, true leaves a running one
	//     alone. A master found off is powered on, which is what a control
	//     plane wants.
	//   - automatedCleaningMode: disabled. Cleaning (erasing the disks'
	//     metadata) runs when a host is deprovisioned, and Metal3
	//     deprovisions an externally provisioned host as soon as
	//     externallyProvisioned is turned off without an image to
	//     provision, for example by applying manifests made with a pattern
	//     that no longer matches it. Disabled, that mistake powers the
	//     master off but keeps its disks.
	//
	// It gets no inspect.metal3.io: disabled annotation. Metal3 never
	// inspects an externally provisioned host (not after registration, and
	// a request to inspect again is only acted on for an available host),
	// so the annotation would change nothing while externallyProvisioned
	// holds; and once an operator hands the host to Metal3 it would go on
	// skipping inspection, leaving the host without hardware details,
	// unnoticed.
	//
	// InstallConfigHosts ignores ControlPlane: a cluster being installed
	// has no control plane to protect, and Role says which hosts the
	// installer makes masters.
	ControlPlane bool
	// Role is RoleMaster or RoleWorker for install-config.yaml. Empty means
	// master when the sanitised name contains "master", else worker.
	Role string
	// RedfishSystem is the VM's id in the bridge's Redfish service
	// (/redfish/v1/Systems/ID). When set, the host is driven with
	// ProtocolRedfishVirtualMedia whatever Options.Protocol says. Ironic
	// URL-quotes the id, so only unreserved URL characters
	// (A-Z a-z 0-9 - . _ ~) are accepted.
	RedfishSystem string
}

// Options apply to every host.
type Options struct {
	// Namespace of the BareMetalHosts and Secrets; empty means
	// DefaultNamespace.
	Namespace string
	// Protocol for hosts without a RedfishSystem: ProtocolIPMI (the default
	// when empty) or ProtocolRedfishVirtualMedia, which then requires every
	// host to have a RedfishSystem, because the bridge serves many systems
	// and Metal3 can omit the id only when there is exactly one.
	Protocol string
	// RedfishPort is the HTTPS port of the bridge's Redfish service. Zero
	// means the port of each host's BMCAddress.
	RedfishPort int
	// RedfishVerifyCertificate makes Ironic verify the Redfish service's TLS
	// certificate. Off by default because the bridge serves a self-signed
	// one; turn it on when its certificate is signed by a CA Ironic trusts.
	RedfishVerifyCertificate bool
}

// host is a validated Host, in the form the manifests use.
type host struct {
	name     string // DNS-1123 subdomain
	role     string
	address  string // spec.bmc.address
	insecure bool   // spec.bmc.disableCertificateVerification
	username string
	password string
	mac      string // lower-case, colon-separated
	bootMode string
	online   bool
	// controlPlane: see Host.ControlPlane.
	controlPlane bool
}

// secretSuffix names a host's credentials Secret.
const secretSuffix = "-bmc-secret"

func (h *host) secretName() string { return h.name + secretSuffix }

// resolve validates opts and every host, and returns the hosts in input order.
// It reports every problem, one error each, so an operator fixes a whole
// inventory in one round; only a problem with opts, which would make every
// host wrong, stops it before the hosts.
func resolve(hosts []Host, opts Options) ([]host, []error) {
	var errs []error
	switch opts.Protocol {
	case "", ProtocolIPMI, ProtocolRedfishVirtualMedia:
	default:
		errs = append(errs, fmt.Errorf("protocol %q is unknown (known: %s, %s)", opts.Protocol, ProtocolIPMI, ProtocolRedfishVirtualMedia))
	}
	if opts.RedfishPort < 0 || opts.RedfishPort > 65535 {
		errs = append(errs, fmt.Errorf("Redfish port %d is out of range 1-65535 (0 means the BMC address's port)", opts.RedfishPort))
	}
	if len(hosts) == 0 {
		errs = append(errs, errors.New("no hosts"))
	}
	if len(errs) > 0 {
		return nil, errs
	}

	out := make([]host, 0, len(hosts))
	firstUse := make(map[string]int, len(hosts)) // sanitised name -> index
	for i, in := range hosts {
		h, herrs := resolveHost(in, opts)
		if j, dup := firstUse[h.name]; dup {
			herrs = append(herrs, fmt.Errorf("name %q is already used by hosts[%d] %q", h.name, j, hosts[j].Name))
		} else if h.name != "" {
			firstUse[h.name] = i
		}
		for _, err := range herrs {
			// One line per problem, each naming its host.
			errs = append(errs, fmt.Errorf("hosts[%d] %q: %w", i, in.Name, err))
		}
		out = append(out, h)
	}
	return out, errs
}

// namespace is opts.Namespace or its default.
func namespace(opts Options) (string, error) {
	ns := opts.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if !isDNSLabel(ns) {
		return "", fmt.Errorf("namespace %q is not a valid Kubernetes namespace (lower-case letters, digits and '-', at most 63)", ns)
	}
	return ns, nil
}

func wrap(errs []error) error { return fmt.Errorf("openshift: %w", errors.Join(errs...)) }

// resolveHost validates one host; it returns every problem it finds.
func resolveHost(in Host, opts Options) (host, []error) {
	var errs []error
	h := host{
		name:         kubeName(in.Name),
		username:     in.Username,
		password:     in.Password,
		online:       in.Online,
		bootMode:     bootModeLegacy,
		controlPlane: in.ControlPlane,
	}
	switch {
	case in.UEFI && in.SecureBoot:
		h.bootMode = bootModeUEFISecureBoot
	case in.UEFI:
		h.bootMode = bootModeUEFI
	}
	if h.name == "" {
		errs = append(errs, errors.New("name has no letter or digit to make a Kubernetes name from"))
	}
	var err error
	if h.role, err = role(in.Role, h.name); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, credentialErrors(in)...)
	if h.mac, err = bootMAC(in.BootMAC); err != nil {
		errs = append(errs, err)
	}
	addr, redfish, err := bmcAddress(in, opts)
	if err != nil {
		errs = append(errs, err)
	}
	h.address = addr
	h.insecure = redfish && !opts.RedfishVerifyCertificate
	if h.bootMode == bootModeUEFISecureBoot && err == nil && !redfish {
		// Checked here because both consumers would refuse the output, one
		// host at a time and long after: Metal3's webhook the
		// BareMetalHost, the installer the whole install-config.yaml.
		errs = append(errs, fmt.Errorf("secure boot is on, and Metal3 takes bootMode %s only with a Redfish BMC address, not %s:// (use protocol %s, or turn secure boot off)",
			bootModeUEFISecureBoot, ProtocolIPMI, ProtocolRedfishVirtualMedia))
	}
	return h, errs
}

// role is the install-config role asked for, or by default the one the
// sanitised name suggests.
func role(asked, name string) (string, error) {
	switch asked {
	case RoleMaster, RoleWorker:
		return asked, nil
	case "":
		if strings.Contains(name, RoleMaster) {
			return RoleMaster, nil
		}
		return RoleWorker, nil
	}
	return "", fmt.Errorf("role %q is unknown (known: %s, %s)", asked, RoleMaster, RoleWorker)
}

// credentialErrors are the problems of a host's BMC credentials. The
// password is never quoted in an error: errors end up in logs.
func credentialErrors(in Host) []error {
	var errs []error
	switch {
	case in.Username == "":
		errs = append(errs, errors.New("username is empty"))
	case !utf8.ValidString(in.Username):
		errs = append(errs, errors.New("username is not valid UTF-8"))
	}
	switch {
	case in.Password == "":
		errs = append(errs, errors.New("password is empty"))
	case !utf8.ValidString(in.Password):
		// install-config.yaml carries it as text, and YAML text is UTF-8.
		errs = append(errs, errors.New("password is not valid UTF-8"))
	}
	return errs
}

// bootMAC is mac lower-case and colon-separated, if it is an Ethernet MAC.
func bootMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return "", fmt.Errorf("boot MAC %q is not a MAC address", mac)
	}
	if len(hw) != 6 {
		// ParseMAC also takes EUI-64 and InfiniBand addresses; a vSphere NIC
		// has neither, and Metal3 matches the MAC against an Ethernet NIC.
		return "", fmt.Errorf("boot MAC %q is not a 6-byte Ethernet MAC address", mac)
	}
	return hw.String(), nil
}

// bmcAddress is the spec.bmc.address URL for a host, and whether it is a
// Redfish one.
func bmcAddress(in Host, opts Options) (string, bool, error) {
	hostname, port, err := net.SplitHostPort(in.BMCAddress)
	if err != nil {
		return "", false, fmt.Errorf("BMC address %q is not HOST:PORT: %v", in.BMCAddress, err)
	}
	if net.ParseIP(hostname) == nil && !isDNSName(hostname) {
		return "", false, fmt.Errorf("BMC address %q: %q is neither an IP address nor a DNS name", in.BMCAddress, hostname)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", false, fmt.Errorf("BMC address %q: port %q is not a number in 1-65535", in.BMCAddress, port)
	}
	port = strconv.Itoa(n) // Atoi takes "+623" and "0623"; a URL wants 623

	if in.RedfishSystem == "" {
		if opts.Protocol == ProtocolRedfishVirtualMedia {
			return "", false, fmt.Errorf("protocol %s needs the host's Redfish system id", ProtocolRedfishVirtualMedia)
		}
		return ProtocolIPMI + "://" + net.JoinHostPort(hostname, port), false, nil
	}
	if !isSystemID(in.RedfishSystem) {
		return "", false, fmt.Errorf("Redfish system id %q must be made of A-Z a-z 0-9 - . _ ~ only", in.RedfishSystem)
	}
	if opts.RedfishPort != 0 {
		port = strconv.Itoa(opts.RedfishPort)
	}
	return ProtocolRedfishVirtualMedia + "://" + net.JoinHostPort(hostname, port) + "/redfish/v1/Systems/" + in.RedfishSystem, true, nil
}

// maxNameLen keeps "<name>-bmc-secret" within a DNS-1123 subdomain's 253
// characters, so the Secret's name is valid whenever the host's is.
const maxNameLen = 253 - len(secretSuffix)

// kubeName makes a VM name a DNS-1123 subdomain, as Kubernetes requires of
// object names: ASCII letters are lower-cased, every other character that is
// not a letter, digit, '.' or '-' becomes '-', each dot-separated label is
// trimmed of '-' (a label must begin and end with a letter or digit), empty
// labels are dropped and the result is cut to maxNameLen. It returns "" when
// nothing is left.
func kubeName(s string) string {
	mapped := strings.Map(func(r rune) rune {
		switch {
		case 'A' <= r && r <= 'Z':
			return r + ('a' - 'A')
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.', r == '-':
			return r
		default:
			return '-'
		}
	}, s)
	labels := strings.Split(mapped, ".")
	kept := labels[:0]
	for _, l := range labels {
		if l = strings.Trim(l, "-"); l != "" {
			kept = append(kept, l)
		}
	}
	name := strings.Join(kept, ".")
	if len(name) > maxNameLen {
		name = strings.TrimRight(name[:maxNameLen], "-.")
	}
	return name
}

// isDNSLabel reports whether s is a DNS-1123 label, as a namespace must be.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isDNSName reports whether s is a host name that an ipmi:// or
// redfish-virtualmedia:// URL can carry: dot-separated labels of letters,
// digits and '-', not beginning or ending with '-' (RFC 1123 §2.1), the last
// not all digits (RFC 3696 §2), which also rejects a mistyped IPv4 address
// such as 192.168.86.300.
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !isDNSLabel(strings.ToLower(l)) {
			return false
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// isSystemID reports whether s is a path segment that needs no escaping and
// that URL normalisation leaves alone.
func isSystemID(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return false
		}
	}
	return true
}
