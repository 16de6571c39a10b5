package redfish

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// TestSystemResource checks the fields Ironic reads and that every link it
// follows resolves.
func TestSystemResource(t *testing.T) {
	e := newEnv(t)
	e.fakes["vm-0"].State = machine.PowerOn
	m := e.get("/redfish/v1/Systems/vm-0")
	want := map[string]any{
		"Id":                                     "vm-0",
		"Name":                                   "vm-0",
		"PowerState":                             "On",
		"Manufacturer":                           "VMware, Inc.",
		"Model":                                  "VMware Virtual Platform",
		"UUID":                                   "42000000-1111-2222-3333-444455556666",
		"SerialNumber":                           "VMware-42 00 00 00 11 11 22 22-33 33 44 44 55 55 66 66",
		"BiosVersion":                            "VMware EFI",
		"MemorySummary/TotalSystemMemoryGiB":     16.0,
		"ProcessorSummary/Count":                 1.0,
		"ProcessorSummary/LogicalProcessorCount": 4.0,
		"Boot/BootSourceOverrideTarget":          "None",
		"Boot/BootSourceOverrideEnabled":         "Disabled",
		"Boot/BootSourceOverrideMode":            "UEFI",
		"Status/State":                           "Enabled",
		"@odata.type":                            "#ComputerSystem.v1_13_0.ComputerSystem",
		"@odata.id":                              "/redfish/v1/Systems/vm-0",
		"Actions/#ComputerSystem.Reset/target":   "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset",
	}
	for k, v := range want {
		if got := at(m, strings.Split(k, "/")...); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	allowed := func(keys ...string) []string {
		var out []string
		for _, v := range at(m, keys...).([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := allowed("Boot", "BootSourceOverrideTarget@Redfish.AllowableValues"); !slices.Equal(got, []string{"None", "Pxe", "Hdd", "Cd", "BiosSetup"}) {
		t.Errorf("target AllowableValues %v", got)
	}
	if got := allowed("Boot", "BootSourceOverrideMode@Redfish.AllowableValues"); !slices.Equal(got, []string{"UEFI", "Legacy"}) {
		t.Errorf("mode AllowableValues %v", got)
	}
	resets := allowed("Actions", "#ComputerSystem.Reset", "ResetType@Redfish.AllowableValues")
	if want := []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton", "PowerCycle"}; !slices.Equal(resets, want) {
		t.Errorf("ResetType AllowableValues %v, want %v", resets, want)
	}

	// Links Ironic follows.
	for _, k := range [][]string{{"Processors"}, {"EthernetInterfaces"}, {"VirtualMedia"}, {"LogServices"}} {
		e.get(at(m, append(k, "@odata.id")...).(string))
	}
	for _, k := range []string{"ManagedBy", "Chassis"} {
		links := at(m, "Links", k).([]any)
		if len(links) != 1 {
			t.Fatalf("Links.%s: %v", k, links)
		}
		e.get(at(links[0], "@odata.id").(string))
	}

	// Processors: Ironic's CPU count is the sum of TotalThreads.
	procs := e.get("/redfish/v1/Systems/vm-0/Processors")
	threads := 0.0
	for _, p := range members(procs) {
		cpu := e.get(p)
		if cpu["ProcessorArchitecture"] != "x86" || cpu["InstructionSet"] != "x86-64" {
			t.Errorf("%s: %v", p, cpu)
		}
		threads += cpu["TotalThreads"].(float64)
	}
	if threads != 4 {
		t.Errorf("TotalThreads sum %v, want 4", threads)
	}

	// One NIC per MAC, in order.
	var macs []string
	for _, n := range members(e.get("/redfish/v1/Systems/vm-0/EthernetInterfaces")) {
		nic := e.get(n)
		if at(nic, "Status", "State") != "Enabled" {
			t.Errorf("%s: %v", n, nic)
		}
		macs = append(macs, nic["MACAddress"].(string))
	}
	if !slices.Equal(macs, e.fakes["vm-0"].ID.MACs) {
		t.Errorf("MACs %v", macs)
	}
}

func TestSuspendedReadsOff(t *testing.T) {
	e := newEnv(t)
	e.fakes["vm-0"].State = machine.PowerSuspended
	if ps := e.get("/redfish/v1/Systems/vm-0")["PowerState"]; ps != "Off" {
		t.Errorf("PowerState %v", ps)
	}
	if ps := e.get("/redfish/v1/Chassis/vm-0")["PowerState"]; ps != "Off" {
		t.Errorf("chassis PowerState %v", ps)
	}
}

func TestCollectionsListVisibleSystems(t *testing.T) {
	e := newEnv(t)
	for _, c := range []string{"Systems", "Managers", "Chassis"} {
		got := members(e.get("/redfish/v1/" + c))
		want := []string{"/redfish/v1/" + c + "/vm-0", "/redfish/v1/" + c + "/vm-2"}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", c, got, want)
		}
		w := e.do("GET", "/redfish/v1/"+c, "", "Authorization", basic("other", "secret-1"))
		if got := members(decode(t, w)); !slices.Equal(got, []string{"/redfish/v1/" + c + "/vm-1"}) {
			t.Errorf("%s as other: %v", c, got)
		}
	}
}

// TestSystemsChangeAtRuntime: the owner adds and removes BMCs; the next
// request sees it.
func TestSystemsChangeAtRuntime(t *testing.T) {
	e := newEnv(t)
	f := newFake("new-vm")
	e.setSystems(append(e.currentSystems(), System{ID: "new-vm", Machine: f, Username: "admin", Password: "password"}))
	if got := members(e.get("/redfish/v1/Systems")); !slices.Contains(got, "/redfish/v1/Systems/new-vm") {
		t.Errorf("added system not listed: %v", got)
	}
	e.get("/redfish/v1/Systems/new-vm")
	e.setSystems(e.currentSystems()[:1])
	if w := e.do("GET", "/redfish/v1/Systems/new-vm", "", admin...); w.Code != http.StatusNotFound {
		t.Errorf("removed system: %d", w.Code)
	}
	e.setSystems(nil)
	if w := e.do("GET", "/redfish/v1/Systems", "", admin...); w.Code != http.StatusUnauthorized {
		t.Errorf("no systems: %d", w.Code)
	}
}

func TestSystemWithoutCredentialsIsNotServed(t *testing.T) {
	e := newEnv(t)
	e.setSystems([]System{{ID: "open", Machine: newFake("open"), Username: "admin"}})
	if w := e.do("GET", "/redfish/v1/Systems/open", "", "Authorization", basic("admin", "")); w.Code != http.StatusUnauthorized {
		t.Errorf("status %d", w.Code)
	}
}

// TestEscapedID: a VM name that is not URL-safe is escaped in links and
// found again from the escaped path, as Ironic quotes it.
func TestEscapedID(t *testing.T) {
	e := newEnv(t)
	const id = "web 01/blue"
	e.setSystems([]System{{ID: id, Machine: newFake(id), Username: "admin", Password: "password"}})
	got := members(e.get("/redfish/v1/Systems"))
	if !slices.Equal(got, []string{"/redfish/v1/Systems/web%2001%2Fblue"}) {
		t.Fatalf("members %v", got)
	}
	m := e.get(got[0])
	if m["Id"] != id {
		t.Errorf("Id %v", m["Id"])
	}
	if target := at(m, "Actions", "#ComputerSystem.Reset", "target"); target != "/redfish/v1/Systems/web%2001%2Fblue/Actions/ComputerSystem.Reset" {
		t.Errorf("reset target %v", target)
	}
	e.get("/redfish/v1/Managers/web%2001%2Fblue/VirtualMedia/Cd")
}

func TestReset(t *testing.T) {
	tests := []struct {
		resetType string
		from      machine.PowerState
		actions   []machine.PowerAction
		after     machine.PowerState
	}{
		{"On", machine.PowerOff, []machine.PowerAction{machine.On}, machine.PowerOn},
		{"On", machine.PowerOn, []machine.PowerAction{machine.On}, machine.PowerOn}, // idempotent
		{"On", machine.PowerSuspended, []machine.PowerAction{machine.On}, machine.PowerOn},
		{"ForceOn", machine.PowerOff, []machine.PowerAction{machine.On}, machine.PowerOn},
		{"ForceOff", machine.PowerOn, []machine.PowerAction{machine.Off}, machine.PowerOff},
		{"ForceOff", machine.PowerOff, []machine.PowerAction{machine.Off}, machine.PowerOff}, // idempotent
		{"GracefulShutdown", machine.PowerOn, []machine.PowerAction{machine.SoftOff}, machine.PowerOff},
		{"ForceRestart", machine.PowerOn, []machine.PowerAction{machine.Reset}, machine.PowerOn},
		{"PowerCycle", machine.PowerOn, []machine.PowerAction{machine.Cycle}, machine.PowerOn},
		{"Nmi", machine.PowerOn, []machine.PowerAction{machine.NMI}, machine.PowerOn},
		{"PushPowerButton", machine.PowerOff, []machine.PowerAction{machine.On}, machine.PowerOn},
		{"PushPowerButton", machine.PowerOn, []machine.PowerAction{machine.SoftOff}, machine.PowerOff},
	}
	for _, tc := range tests {
		t.Run(tc.resetType+"/from-"+tc.from.String(), func(t *testing.T) {
			e := newEnv(t)
			f := e.fakes["vm-0"]
			f.State = tc.from
			w := e.do("POST", "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset", `{"ResetType":"`+tc.resetType+`"}`, admin...)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d\n%s", w.Code, w.Body)
			}
			if !slices.Equal(f.Actions, tc.actions) || f.State != tc.after {
				t.Errorf("actions %v state %v, want %v %v", f.Actions, f.State, tc.actions, tc.after)
			}
			if !strings.Contains(e.log.String(), `msg="redfish change" system=vm-0`) || !strings.Contains(e.log.String(), "reset_type="+tc.resetType) {
				t.Errorf("no change line:\n%s", e.log)
			}
		})
	}
}

// GracefulRestart is a guest reboot (machine.SoftReset), refused with 409
// when the system is off, and not offered (nor done) without VMware Tools.
func TestGracefulRestart(t *testing.T) {
	e := newEnv(t)
	f := e.fakes["vm-0"]
	w := e.do("POST", "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset", `{"ResetType":"GracefulRestart"}`, admin...)
	if w.Code != http.StatusConflict || len(f.Actions) != 0 {
		t.Errorf("off: status %d, actions %v", w.Code, f.Actions)
	}
	f.State = machine.PowerOn
	w = e.do("POST", "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset", `{"ResetType":"GracefulRestart"}`, admin...)
	if w.Code != http.StatusNoContent || len(f.Actions) != 1 || f.Actions[0] != machine.SoftReset {
		t.Errorf("on: status %d, actions %v", w.Code, f.Actions)
	}
	f.SetIdentity(func(id *machine.Identity) { id.GuestTools = false })
	w = e.do("POST", "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset", `{"ResetType":"GracefulRestart"}`, admin...)
	if w.Code != http.StatusBadRequest || len(f.Actions) != 1 {
		t.Errorf("without Tools: status %d, actions %v", w.Code, f.Actions)
	}
	checkRedfishError(t, w, "ActionParameterValueNotInList")
}

// AllowableValues lists what the system can do now, by one rule
// (machine.Identity.Allows), which also decides the answer.
func TestAllowedResetTypes(t *testing.T) {
	always := []string{"On", "ForceOff", "ForceRestart", "ForceOn", "PowerCycle"}
	with := func(extra ...string) []string {
		var out []string
		for _, r := range resetTypes {
			if slices.Contains(always, r.name) || slices.Contains(extra, r.name) {
				out = append(out, r.name)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		id   machine.Identity
		ps   machine.PowerState
		want []string
	}{
		{"off, no Tools", machine.Identity{}, machine.PowerOff, with("PushPowerButton")},
		{"on, no Tools", machine.Identity{}, machine.PowerOn, with()},
		{"on, Tools", machine.Identity{GuestTools: true}, machine.PowerOn, with("GracefulShutdown", "GracefulRestart", "PushPowerButton")},
		{"on, fallback", machine.Identity{SoftOffFallback: true}, machine.PowerOn, with("GracefulShutdown", "PushPowerButton")},
		{"on, NMI", machine.Identity{NMI: true}, machine.PowerOn, with("Nmi")},
	} {
		if got := allowedResetTypes(tc.id, tc.ps); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
