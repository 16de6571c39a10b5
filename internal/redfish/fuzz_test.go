package redfish

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// fuzzTargets are the endpoints that parse a JSON body.
var fuzzTargets = []struct{ method, path string }{
	{"PATCH", "/redfish/v1/Systems/vm-0"},
	{"POST", "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset"},
	{"POST", "/redfish/v1/Managers/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"},
	{"POST", "/redfish/v1/Systems/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia"},
	{"POST", sessionsPath},
}

// FuzzRequestBodies sends arbitrary bodies to the PATCH of a System, Reset,
// InsertMedia, EjectMedia and session login. Every answer must be a success
// or a Redfish error with a client-error status, never a panic (which the
// fence would turn into a 500), and the system must stay readable.
func FuzzRequestBodies(f *testing.F) {
	seeds := []struct {
		target int
		body   string
	}{
		{0, `{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once"}}`},
		{0, `{"Boot":{"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Continuous"}}`},
		{0, `{"Boot":{"BootSourceOverrideMode":"Legacy"}}`},
		{0, `{"Boot":{"BootSourceOverrideTarget":"Pxe"},"@odata.etag":"x"}`},
		{0, `{"Boot":null}`},
		{1, `{"ResetType":"On"}`},
		{1, `{"ResetType":"ForceOff"}`},
		{1, `{"ResetType":"GracefulShutdown"}`},
		{1, `{"ResetType":"PushPowerButton"}`},
		{1, `{"ResetType":["On"]}`},
		{2, `{"Image":"http://10.0.0.5/boot.iso"}`},
		{2, `{"Image":"https://h/x.iso","Inserted":true,"WriteProtected":true,"TransferProtocolType":"HTTPS","UserName":"u","Password":"p"}`},
		{2, `{"Image":"http://h/x.iso","TransferMethod":"Stream"}`},
		{3, ``},
		{3, `{}`},
		{4, `{"UserName":"admin","Password":"password"}`},
		{4, `{"UserName":"admin","Password":null}`},
	}
	for _, s := range seeds {
		f.Add(uint8(s.target), []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, target uint8, body []byte) {
		e := newEnv(t)
		e.fakes["vm-0"].State = machine.PowerOn
		tgt := fuzzTargets[int(target)%len(fuzzTargets)]
		w := e.do(tgt.method, tgt.path, string(body), admin...)
		switch w.Code {
		case http.StatusOK, http.StatusCreated, http.StatusNoContent:
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusConflict, http.StatusRequestEntityTooLarge:
			checkRedfishError(t, w, "")
		default:
			t.Fatalf("%s %s %q: status %d\n%s", tgt.method, tgt.path, body, w.Code, w.Body)
		}
		if strings.Contains(e.log.String(), "panicked") {
			t.Fatalf("panic:\n%s", e.log)
		}
		e.get("/redfish/v1/Systems/vm-0")
	})
}
