// Package api owns the daemon's local management API: JSON over HTTP on a
// unix socket whose file permissions (0600 in a 0700 directory) are the
// authentication, so only the daemon's user and root can manage BMCs and
// reach their VMs' serial consoles. The CLI subcommands (bmc, vms, bmh,
// check, reload, console) are its client.
package api

import (
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// DefaultSocket is where the daemon listens and the CLI connects unless
// told otherwise: systemd's RuntimeDirectory= when set, /run for root, the
// user's runtime directory otherwise.
func DefaultSocket() string {
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		return filepath.Join(filepath.SplitList(d)[0], "api.sock")
	}
	if os.Geteuid() == 0 {
		return "/run/ipmi-vmware-bridge/api.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "ipmi-vmware-bridge", "api.sock")
	}
	return filepath.Join(os.TempDir(), "ipmi-vmware-bridge-"+strconv.Itoa(os.Geteuid()), "api.sock")
}

// BMC is a BMC as the API shows it.
type BMC struct {
	// VM is the configured reference (name, path or UUID); Name the VM's
	// current name once bound.
	VM      string `json:"vm"`
	Name    string `json:"name,omitempty"`
	Address string `json:"address"`
	// Source is "config" or "runtime".
	Source   string    `json:"source"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Power    string    `json:"power,omitempty"`
	Requests uint64    `json:"requests"`
	Sessions []Session `json:"sessions"`
	// Console is the BMC's serial console, when it offers one.
	Console *ConsoleState `json:"console,omitempty"`
	// IPMI and Redfish say which protocols the BMC serves; Address is
	// empty for a Redfish-only BMC.
	IPMI    bool `json:"ipmi"`
	Redfish bool `json:"redfish"`
	// VCenter names the vCenter of the VM.
	VCenter string `json:"vcenter"`
}

// Session is an open IPMI session.
type Session struct {
	Client       string    `json:"client"`
	User         string    `json:"user"`
	Privilege    string    `json:"privilege"`
	Opened       time.Time `json:"opened"`
	LastActivity time.Time `json:"lastActivity"`
	Requests     uint64    `json:"requests"`
}

// Add asks for a new BMC. The password travels in the request body, never
// on a command line.
type Add struct {
	VM string `json:"vm"`
	// VCenter names the VM's vCenter; required when several are bridged.
	VCenter  string `json:"vcenter,omitempty"`
	Address  string `json:"address"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	// AllowDuplicate asks for a second BMC for a VM that has one; without
	// it such a request is refused (409), so that a VM name names one BMC.
	AllowDuplicate bool `json:"allowDuplicate,omitempty"`
	// Console asks for the VM's serial console (bmcs[].console).
	Console bool `json:"console,omitempty"`
	// NoIPMI asks for a Redfish-only BMC (bmcs[].ipmi: false): no port;
	// NoRedfish for an IPMI-only one (bmcs[].redfish: false).
	NoIPMI    bool `json:"noIpmi,omitempty"`
	NoRedfish bool `json:"noRedfish,omitempty"`
}

// AddAll asks for a BMC for each VM matching Filter (and Folder and
// Tag), on consecutive ports from BasePort, skipping VMs already bridged.
type AddAll struct {
	Filter string `json:"filter"`
	Folder string `json:"folder"`
	// Tag is a vSphere tag, CATEGORY/NAME.
	Tag string `json:"tag,omitempty"`
	// VCenter names the vCenter to list; required when several are
	// bridged.
	VCenter  string `json:"vcenter,omitempty"`
	Address  string `json:"address"`
	BasePort int    `json:"basePort"`
	Username string `json:"username"`
	Password string `json:"password"`
	// Console asks for each VM's serial console (bmcs[].console).
	Console bool `json:"console,omitempty"`
}

// Check is the outcome of one RMCP+ session opened to a BMC.
type Check struct {
	VM       string        `json:"vm"`
	Endpoint string        `json:"endpoint"`
	Power    string        `json:"power,omitempty"`
	Latency  time.Duration `json:"latency"`
	Error    string        `json:"error,omitempty"`
}

// Error is the body of every failed request.
type Error struct {
	Error string `json:"error"`
}

// VMQuery selects VMs: by name glob, inventory folder, vSphere tag
// (CATEGORY/NAME) and vCenter (any when empty).
type VMQuery struct {
	Filter, Folder, Tag, VCenter string
}

// VM is a vCenter VM as discovery shows it.
type VM struct {
	Name string `json:"name"`
	// VCenter names the vCenter holding it.
	VCenter string `json:"vcenter"`
	// InstanceUUID is vCenter's id of the VM, which ESXi also names it by
	// on a serial port connection.
	InstanceUUID string   `json:"instanceUuid"`
	Power        string   `json:"power"`
	UUID         string   `json:"uuid"`
	Firmware     string   `json:"firmware"`
	MACs         []string `json:"macs"`
	// BMC is the address of the VM's BMC, when bridged.
	BMC string `json:"bmc,omitempty"`
}

// BMH asks for OpenShift manifests of the bridged VMs.
type BMH struct {
	// Host is the address the cluster reaches the BMCs at; empty means each
	// BMC's own address (which must then not be a wildcard).
	Host          string `json:"host"`
	Namespace     string `json:"namespace"`
	InstallConfig bool   `json:"installConfig"`
	Redfish       bool   `json:"redfish"`
	Offline       bool   `json:"offline"`
	// Filter limits the output to VMs whose name matches (glob).
	Filter string `json:"filter"`
	// VCenter limits the output to one vCenter's VMs (all when empty).
	VCenter string `json:"vcenter,omitempty"`
	// Enrolled limits the output to the BMCs enrolment rules gave
	// (enroll:), so that a cluster's hosts can follow its rules.
	Enrolled bool `json:"enrolled,omitempty"`
	// ControlPlane names the VMs that run the cluster's control plane, by
	// glob over the VM name (see openshift.ParseControlPlane: an element
	// may also hold several, comma-separated); their BareMetalHosts are
	// externally provisioned, online and never cleaned, so that Metal3
	// leaves the running masters alone. Absent or null means the default,
	// openshift.DefaultControlPlane, so that a client that never heard of
	// the field still gets its masters protected; an empty list means
	// none. Hence no omitempty: a client must be able to send []. A
	// malformed glob is ErrInvalid. Ignored with InstallConfig, whose
	// cluster has no control plane yet.
	ControlPlane []string `json:"controlPlane"`
}
