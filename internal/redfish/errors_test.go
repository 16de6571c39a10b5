package redfish

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// TestErrorStatuses sends every kind of bad request and checks the status,
// the Base MessageId and the headers that go with them.
func TestErrorStatuses(t *testing.T) {
	const sys = "/redfish/v1/Systems/vm-0"
	const reset = sys + "/Actions/ComputerSystem.Reset"
	const insert = "/redfish/v1/Managers/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"
	tests := []struct {
		name         string
		setup        func(e *env)
		method, path string
		body         string
		hdr          []string
		status       int
		id           string
		header       map[string]string // wanted headers
		message      string            // wanted in error.message
	}{
		{name: "no credentials", method: "GET", path: "/redfish/v1/Systems", status: 401, id: "NoValidSession",
			header: map[string]string{"WWW-Authenticate": `Basic realm="Redfish", charset="UTF-8"`}},
		{name: "wrong password", method: "GET", path: sys, hdr: []string{"Authorization", basic("admin", "wrong")}, status: 401, id: "NoValidSession"},
		{name: "unknown user", method: "GET", path: "/redfish/v1/Managers", hdr: []string{"Authorization", basic("nobody", "password")}, status: 401, id: "NoValidSession"},
		{name: "unknown session token", method: "GET", path: sys, hdr: []string{"X-Auth-Token", "not-a-token"}, status: 401, id: "NoValidSession"},
		{name: "no credentials on an action", method: "POST", path: reset, body: `{"ResetType":"On"}`, status: 401, id: "NoValidSession"},

		{name: "unknown path", method: "GET", path: "/redfish/v1/Fabrics", hdr: admin, status: 404, id: "InvalidURI"},
		{name: "outside redfish", method: "GET", path: "/index.html", status: 404, id: "InvalidURI"},
		{name: "unknown system", method: "GET", path: "/redfish/v1/Systems/vm-9", hdr: admin, status: 404, id: "ResourceNotFound", message: "vm-9"},
		{name: "system of other credentials", method: "GET", path: "/redfish/v1/Systems/vm-1", hdr: admin, status: 404, id: "ResourceNotFound"},
		{name: "unknown manager", method: "GET", path: "/redfish/v1/Managers/vm-9", hdr: admin, status: 404, id: "ResourceNotFound", message: "Manager"},
		{name: "unknown media", method: "GET", path: "/redfish/v1/Managers/vm-0/VirtualMedia/Floppy", hdr: admin, status: 404, id: "ResourceNotFound"},
		{name: "unknown processor", method: "GET", path: sys + "/Processors/CPU2", hdr: admin, status: 404, id: "ResourceNotFound"},
		{name: "unknown NIC", method: "GET", path: sys + "/EthernetInterfaces/NIC3", hdr: admin, status: 404, id: "ResourceNotFound"},
		{name: "unknown log entry", method: "GET", path: sys + "/LogServices/SEL/Entries/7", hdr: admin, status: 404, id: "ResourceNotFound"},
		{name: "unknown session", method: "GET", path: "/redfish/v1/SessionService/Sessions/nope", hdr: admin, status: 404, id: "ResourceNotFound"},
		{name: "machine gone", setup: func(e *env) { e.fakes["vm-0"].Err = fmt.Errorf("vm lookup: %w", machine.ErrNotFound) },
			method: "GET", path: sys, hdr: admin, status: 404, id: "ResourceNotFound"},

		{name: "DELETE system", method: "DELETE", path: sys, hdr: admin, status: 405, id: "OperationNotAllowed",
			header: map[string]string{"Allow": "GET, HEAD, PATCH"}},
		{name: "GET action", method: "GET", path: reset, hdr: admin, status: 405, id: "OperationNotAllowed",
			header: map[string]string{"Allow": "POST"}},
		{name: "POST root", method: "POST", path: "/redfish/v1/", body: `{}`, status: 405, id: "OperationNotAllowed",
			header: map[string]string{"Allow": "GET, HEAD"}},
		{name: "PATCH media image", method: "PATCH", path: "/redfish/v1/Systems/vm-0/VirtualMedia/Cd", body: `{"Image":null}`, hdr: admin, status: 400, id: "PropertyNotWritable"},
		{name: "PUT media", method: "PUT", path: "/redfish/v1/Systems/vm-0/VirtualMedia/Cd", body: `{}`, hdr: admin, status: 405,
			header: map[string]string{"Allow": "GET, HEAD, PATCH"}},
		{name: "PUT sessions", method: "PUT", path: "/redfish/v1/SessionService/Sessions", body: `{}`, status: 405,
			header: map[string]string{"Allow": "GET, HEAD, POST"}},

		{name: "malformed JSON", method: "PATCH", path: sys, body: `{"Boot": {`, hdr: admin, status: 400, id: "MalformedJSON"},
		{name: "JSON array", method: "PATCH", path: sys, body: `[1]`, hdr: admin, status: 400, id: "MalformedJSON"},
		{name: "JSON null", method: "PATCH", path: sys, body: `null`, hdr: admin, status: 400, id: "MalformedJSON"},
		{name: "trailing data", method: "PATCH", path: sys, body: `{} {}`, hdr: admin, status: 400, id: "MalformedJSON"},
		{name: "empty PATCH", method: "PATCH", path: sys, hdr: admin, status: 400, id: "MalformedJSON"},
		{name: "boot target not in list", method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`, hdr: admin,
			status: 400, id: "PropertyValueNotInList", message: "Floppy"},
		{name: "boot enabled not in list", method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideEnabled":"Always"}}`, hdr: admin,
			status: 400, id: "PropertyValueNotInList"},
		{name: "boot mode not in list", method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideMode":"uefi"}}`, hdr: admin,
			status: 400, id: "PropertyValueNotInList"},
		{name: "boot target type", method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget":4}}`, hdr: admin,
			status: 400, id: "PropertyValueTypeError"},
		{name: "boot target null", method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget":null}}`, hdr: admin,
			status: 400, id: "PropertyValueTypeError"},
		{name: "boot not an object", method: "PATCH", path: sys, body: `{"Boot":"Pxe"}`, hdr: admin, status: 400, id: "PropertyValueTypeError"},
		{name: "read-only property", method: "PATCH", path: sys, body: `{"PowerState":"On"}`, hdr: admin, status: 400, id: "PropertyNotWritable"},
		{name: "read-only boot annotation", method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget@Redfish.AllowableValues":[]}}`, hdr: admin,
			status: 400, id: "PropertyNotWritable"},
		{name: "unknown property", method: "PATCH", path: sys, body: `{"AssetTag":"x"}`, hdr: admin, status: 400, id: "PropertyUnknown"},
		{name: "unknown boot property", method: "PATCH", path: sys, body: `{"Boot":{"BootNext":"0001"}}`, hdr: admin, status: 400, id: "PropertyUnknown"},
		{name: "reset without ResetType", method: "POST", path: reset, body: `{}`, hdr: admin, status: 400, id: "ActionParameterMissing"},
		{name: "reset with no body", method: "POST", path: reset, hdr: admin, status: 400, id: "ActionParameterMissing"},
		{name: "reset type unknown", method: "POST", path: reset, body: `{"ResetType":"Suspend"}`, hdr: admin, status: 400, id: "ActionParameterValueNotInList"},
		{name: "reset type not a string", method: "POST", path: reset, body: `{"ResetType":true}`, hdr: admin, status: 400, id: "ActionParameterValueTypeError"},
		{name: "reset unknown parameter", method: "POST", path: reset, body: `{"ResetType":"On","Force":1}`, hdr: admin, status: 400, id: "ActionParameterUnknown"},
		{name: "insert without image", method: "POST", path: insert, body: `{"Inserted":true}`, hdr: admin, status: 400, id: "ActionParameterMissing"},
		{name: "insert ftp image", method: "POST", path: insert, body: `{"Image":"ftp://host/x.iso"}`, hdr: admin, status: 400, id: "ActionParameterValueFormatError"},
		{name: "insert relative image", method: "POST", path: insert, body: `{"Image":"x.iso"}`, hdr: admin, status: 400, id: "ActionParameterValueFormatError"},
		{name: "insert not inserted", method: "POST", path: insert, body: `{"Image":"http://h/x.iso","Inserted":false}`, hdr: admin, status: 400, id: "ActionParameterValueConflict"},
		{name: "insert writable", method: "POST", path: insert, body: `{"Image":"http://h/x.iso","WriteProtected":false}`, hdr: admin, status: 400, id: "ActionParameterValueConflict"},
		{name: "insert protocol mismatch", method: "POST", path: insert, body: `{"Image":"http://h/x.iso","TransferProtocolType":"HTTPS"}`, hdr: admin,
			status: 400, id: "ActionParameterValueConflict"},
		{name: "insert protocol NFS", method: "POST", path: insert, body: `{"Image":"http://h/x.iso","TransferProtocolType":"NFS"}`, hdr: admin,
			status: 400, id: "ActionParameterValueNotInList"},
		{name: "insert unfetchable image", setup: func(e *env) { e.fakes["vm-0"].BadMedia = map[string]bool{"http://h/bad.iso": true} },
			method: "POST", path: insert, body: `{"Image":"http://h/bad.iso"}`, hdr: admin, status: 400, id: "GeneralError", message: "fetch http://h/bad.iso"},
		{name: "eject with parameters", method: "POST", path: "/redfish/v1/Systems/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia", body: `{"Image":"x"}`,
			hdr: admin, status: 400, id: "ActionParameterUnknown"},
		{name: "session without password", method: "POST", path: sessionsPath, body: `{"UserName":"admin"}`, status: 400, id: "CreateFailedMissingReqProperties"},
		{name: "session unknown property", method: "POST", path: sessionsPath, body: `{"UserName":"admin","Password":"password","Role":"x"}`, status: 400, id: "PropertyUnknown"},

		{name: "restart while off", method: "POST", path: reset, body: `{"ResetType":"ForceRestart"}`, hdr: admin, status: 409, id: "GeneralError",
			message: "not possible in the present state"},
		{name: "nmi while off", method: "POST", path: reset, body: `{"ResetType":"Nmi"}`, hdr: admin, status: 400, id: "ActionParameterValueNotInList"},

		{name: "stale If-Match", method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget":"Pxe"}}`, hdr: append([]string{"If-Match", `W/"0123456789abcdef"`}, admin...),
			status: 412, id: "PreconditionFailed"},

		{name: "PATCH as text", method: "PATCH", path: sys, body: `{"Boot":{}}`, hdr: append([]string{"Content-Type", "text/plain"}, admin...), status: 415, id: "HeaderInvalid"},
		{name: "form POST", method: "POST", path: reset, body: `ResetType=On`, hdr: append([]string{"Content-Type", "application/x-www-form-urlencoded"}, admin...),
			status: 415, id: "HeaderInvalid"},

		{name: "body too large", method: "PATCH", path: sys, body: `{"Boot":"` + strings.Repeat("x", maxBody) + `"}`, hdr: admin, status: 413, id: "PayloadTooLarge"},

		{name: "vCenter away", setup: func(e *env) { e.fakes["vm-0"].Err = fmt.Errorf("vcenter: %w", machine.ErrUnavailable) },
			method: "GET", path: sys, hdr: admin, status: 503, id: "ServiceTemporarilyUnavailable", header: map[string]string{"Retry-After": "3"}},
		{name: "VM busy", setup: func(e *env) { e.fakes["vm-0"].Err = machine.ErrBusy },
			method: "POST", path: reset, body: `{"ResetType":"On"}`, hdr: admin, status: 503, header: map[string]string{"Retry-After": "3"}},
		{name: "nmi where vCenter cannot", setup: func(e *env) {
			f := e.fakes["vm-0"]
			f.State = machine.PowerOn
			f.SetIdentity(func(id *machine.Identity) { id.NMI = false })
		}, method: "POST", path: reset, body: `{"ResetType":"Nmi"}`, hdr: admin, status: 400, id: "ActionParameterValueNotInList"},
		{name: "unexpected machine error", setup: func(e *env) { e.fakes["vm-0"].Err = errors.New("soap: internal fault 0x42") },
			method: "GET", path: "/redfish/v1/Chassis/vm-0", hdr: admin, status: 500, id: "InternalError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			w := e.do(tc.method, tc.path, tc.body, tc.hdr...)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d\n%s", w.Code, tc.status, w.Body)
			}
			m := checkRedfishError(t, w, tc.id)
			for k, v := range tc.header {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if msg := at(m, "error", "message").(string); !strings.Contains(msg, tc.message) {
				t.Errorf("message %q lacks %q", msg, tc.message)
			}
			if tc.status == 500 && strings.Contains(w.Body.String(), "soap") {
				t.Errorf("a 500 reveals its cause: %s", w.Body)
			}
			if tc.status == 500 && !strings.Contains(e.log.String(), "soap: internal fault") {
				t.Errorf("the cause of a 500 is not logged:\n%s", e.log)
			}
		})
	}
}

// TestActionParameterMissingNamesProperty: sushy reads RelatedProperties of
// an ActionParameterMissing to decide whether to resend InsertMedia with
// TransferProtocolType.
func TestActionParameterMissingNamesProperty(t *testing.T) {
	e := newEnv(t)
	w := e.do("POST", "/redfish/v1/Managers/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", `{}`, admin...)
	info := at(checkRedfishError(t, w, "ActionParameterMissing"), "error", "@Message.ExtendedInfo").([]any)
	if rp := at(info[0], "RelatedProperties").([]any); len(rp) != 1 || rp[0] != "#/Image" {
		t.Errorf("RelatedProperties %v", rp)
	}
	if sev := at(info[0], "Severity"); sev != "Critical" {
		t.Errorf("Severity %v: sushy reports only Critical and Warning messages", sev)
	}
}

// TestFromMachine covers the one mapping of machine errors.
func TestFromMachine(t *testing.T) {
	tests := []struct {
		err    error
		status int
		id     string
	}{
		{fmt.Errorf("x: %w", machine.ErrInvalidState), 409, "GeneralError"},
		{fmt.Errorf("x: %w", machine.ErrInvalidArgument), 400, "GeneralError"},
		{fmt.Errorf("x: %w", machine.ErrNotFound), 404, "ResourceNotFound"},
		{fmt.Errorf("x: %w", machine.ErrUnavailable), 503, "ServiceTemporarilyUnavailable"},
		{fmt.Errorf("x: %w", machine.ErrBusy), 503, "ServiceTemporarilyUnavailable"},
		{fmt.Errorf("x: %w", machine.ErrUnsupported), 400, "ActionNotSupported"},
		{errors.New("x"), 500, "InternalError"},
		{newError(412, "PreconditionFailed", nil), 412, "PreconditionFailed"},
		{fmt.Errorf("wrapped: %w", errNotFound("VirtualMedia", "Floppy")), 404, "ResourceNotFound"},
	}
	for _, tc := range tests {
		e := fromMachine(tc.err, "ComputerSystem.Reset Nmi", "vm-0")
		if e.status != tc.status || e.id != tc.id {
			t.Errorf("%v: %d %s, want %d %s", tc.err, e.status, e.id, tc.status, tc.id)
		}
		if tc.status == http.StatusServiceUnavailable && e.header.Get("Retry-After") == "" {
			t.Errorf("%v: no Retry-After", tc.err)
		}
	}
}
