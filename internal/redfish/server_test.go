package redfish

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

// TestPublicResources: sushy reads the service root before it
// authenticates.
func TestPublicResources(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/redfish", "/redfish/", "/redfish/v1", "/redfish/v1/", "/redfish/v1/odata"} {
		w := e.do("GET", p, "")
		if w.Code != http.StatusOK {
			t.Errorf("%s: %d", p, w.Code)
			continue
		}
		if w.Header().Get("OData-Version") != "4.0" || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Errorf("%s: headers %v", p, w.Header())
		}
	}
	root := decode(t, e.do("GET", "/redfish/v1/", ""))
	for k, v := range map[string]any{
		"RedfishVersion":           "1.11.0",
		"UUID":                     testUUID,
		"Systems/@odata.id":        "/redfish/v1/Systems",
		"Managers/@odata.id":       "/redfish/v1/Managers",
		"Chassis/@odata.id":        "/redfish/v1/Chassis",
		"SessionService/@odata.id": "/redfish/v1/SessionService",
		"Links/Sessions/@odata.id": sessionsPath,
		"@odata.type":              "#ServiceRoot.v1_5_0.ServiceRoot",
	} {
		if got := at(root, strings.Split(k, "/")...); got != v {
			t.Errorf("root %s = %v, want %v", k, got, v)
		}
	}
}

// TestEveryResourceIsTyped walks the tree from the root and checks that
// every resource has @odata.id (its own path) and @odata.type.
func TestEveryResourceIsTyped(t *testing.T) {
	e := newEnv(t)
	f := e.fakes["vm-0"]
	f.Power(context.Background(), machine.On) // one SEL entry
	seen := map[string]bool{}
	var walk func(path string)
	walk = func(path string) {
		if seen[path] || !strings.HasPrefix(path, "/redfish/v1") {
			return
		}
		seen[path] = true
		m := e.get(path)
		if path != "/redfish/v1/odata" {
			if id, _ := m["@odata.id"].(string); strings.TrimSuffix(id, "/") != strings.TrimSuffix(path, "/") {
				t.Errorf("%s: @odata.id %q", path, id)
			}
			if typ, _ := m["@odata.type"].(string); !strings.HasPrefix(typ, "#") {
				t.Errorf("%s: @odata.type %q", path, typ)
			}
		}
		var links func(v any)
		links = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if s, ok := x.(string); ok && k == "@odata.id" {
						walk(s)
					}
					links(x)
				}
			case []any:
				for _, x := range v {
					links(x)
				}
			}
		}
		links(m)
	}
	walk("/redfish/v1/")
	for _, p := range []string{
		"/redfish/v1/Systems/vm-0", "/redfish/v1/Managers/vm-0", "/redfish/v1/Chassis/vm-0",
		"/redfish/v1/Systems/vm-0/VirtualMedia/Cd", "/redfish/v1/Managers/vm-0/VirtualMedia/Cd",
		"/redfish/v1/Systems/vm-0/Processors/CPU1", "/redfish/v1/Systems/vm-0/EthernetInterfaces/NIC2",
		"/redfish/v1/Systems/vm-0/LogServices/SEL/Entries/1", "/redfish/v1/SessionService",
	} {
		if !seen[p] {
			t.Errorf("%s not reached from the root", p)
		}
	}
}

func TestManagerAndChassis(t *testing.T) {
	e := newEnv(t)
	m := e.get("/redfish/v1/Managers/vm-0")
	for k, v := range map[string]any{
		"Id": "vm-0", "ManagerType": "BMC", "FirmwareVersion": "1.00", "Status/State": "Enabled",
		"VirtualMedia/@odata.id": "/redfish/v1/Managers/vm-0/VirtualMedia",
	} {
		if got := at(m, strings.Split(k, "/")...); got != v {
			t.Errorf("manager %s = %v, want %v", k, got, v)
		}
	}
	if l := at(m, "Links", "ManagerForServers").([]any); len(l) != 1 || at(l[0], "@odata.id") != "/redfish/v1/Systems/vm-0" {
		t.Errorf("ManagerForServers %v", l)
	}
	c := e.get("/redfish/v1/Chassis/vm-0")
	for k, v := range map[string]any{
		"Id": "vm-0", "Name": "vm-0", "ChassisType": "Other", "Manufacturer": "VMware, Inc.", "Model": "VMware Virtual Platform",
		"PowerState": "Off", "SerialNumber": e.fakes["vm-0"].ID.SerialNumber,
	} {
		if got := at(c, k); got != v {
			t.Errorf("chassis %s = %v, want %v", k, got, v)
		}
	}
	for _, k := range []string{"ComputerSystems", "ManagedBy"} {
		for _, l := range at(c, "Links", k).([]any) {
			e.get(at(l, "@odata.id").(string))
		}
	}
}

func TestSELShowsEvents(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{`{"ResetType":"On"}`, `{"ResetType":"ForceOff"}`} {
		if w := e.do("POST", "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset", body, admin...); w.Code != http.StatusNoContent {
			t.Fatal(w.Code)
		}
	}
	entries := e.get("/redfish/v1/Systems/vm-0/LogServices/SEL/Entries")
	list := entries["Members"].([]any)
	if len(list) != 2 || at(list[0], "Message") != "power-on" || at(list[1], "Message") != "power-off" || at(list[0], "EntryType") != "SEL" {
		t.Errorf("entries %v", list)
	}
	if one := e.get("/redfish/v1/Systems/vm-0/LogServices/SEL/Entries/2"); one["Message"] != "power-off" {
		t.Errorf("entry 2 %v", one)
	}
}

// TestHeadAndTrailingSlash: HEAD answers like GET without a body; a
// trailing slash names the same resource.
func TestHeadAndTrailingSlash(t *testing.T) {
	e := newEnv(t)
	w := e.do("HEAD", "/redfish/v1/Systems/vm-0/", "", admin...)
	if w.Code != http.StatusOK || w.Header().Get("ETag") == "" {
		t.Errorf("HEAD: %d %v", w.Code, w.Header())
	}
	e.get("/redfish/v1/Systems/")
}

// panicky is a machine whose Identity panics: a bug in a backend.
type panicky struct{ machinetest.Fake }

func (*panicky) Identity(context.Context) (machine.Identity, error) { panic("boom") }

func TestPanicIsFenced(t *testing.T) {
	e := newEnv(t)
	e.setSystems([]System{{ID: "bad", Machine: &panicky{}, Username: "admin", Password: "password"}})
	w := e.do("GET", "/redfish/v1/Systems/bad", "", admin...)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", w.Code)
	}
	checkRedfishError(t, w, "InternalError")
	if n := strings.Count(e.log.String(), "panicked"); n != 1 {
		t.Errorf("%d panic lines:\n%s", n, e.log)
	}
	// The server lives on.
	e.get("/redfish/v1/Managers/bad")
}

// TestRequestLog: one debug line per request with method, path, status and
// client, and no credentials.
func TestRequestLog(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/redfish/v1/Systems/vm-0", "", admin...)
	e.do("GET", "/redfish/v1/Systems/vm-0", "", "Authorization", basic("admin", "wrongpass"))
	e.login("admin", "password")
	log := e.log.String()
	for _, want := range []string{
		`msg="redfish request" method=GET path=/redfish/v1/Systems/vm-0 status=200`,
		`method=GET path=/redfish/v1/Systems/vm-0 status=401`,
		`method=POST path=/redfish/v1/SessionService/Sessions status=201`,
		"client=192.0.2.1:1234",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, `msg="redfish request"`); n != 3 {
		t.Errorf("%d request lines", n)
	}
	for _, secret := range []string{"password", "wrongpass", "Basic ", "YWRtaW46"} {
		if strings.Contains(log, secret) {
			t.Errorf("log holds %q:\n%s", secret, log)
		}
	}
}

func TestNewValidates(t *testing.T) {
	systems := func() []System { return nil }
	for name, cfg := range map[string]Config{
		"no systems":       {ServiceUUID: testUUID},
		"no UUID":          {Systems: systems},
		"bad UUID":         {Systems: systems, ServiceUUID: "6f3c2d3e-8a7b-4c1d-9e2f-0a1b2c3d4e5g"},
		"negative timeout": {Systems: systems, ServiceUUID: testUUID, SessionTimeout: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	s, err := New(Config{Systems: systems, ServiceUUID: strings.ToUpper(testUUID)})
	if err != nil || s.uuid != testUUID {
		t.Errorf("upper-case UUID: %v %q", err, s.uuid)
	}
}
