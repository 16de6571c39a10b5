package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// fakeBackend answers every call with err, and with a BMC for VM "vm".
type fakeBackend struct{ err error }

func (f fakeBackend) BMCs() []BMC                   { return []BMC{{VM: "vm"}} }
func (f fakeBackend) BMC(string) (BMC, error)       { return BMC{VM: "vm"}, f.err }
func (f fakeBackend) Remove(string) error           { return f.err }
func (f fakeBackend) Stop(string) error             { return f.err }
func (f fakeBackend) Start(string) error            { return f.err }
func (f fakeBackend) Reload() error                 { return f.err }
func (f fakeBackend) Check(context.Context) []Check { return []Check{{VM: "vm"}} }
func (f fakeBackend) Add(_ context.Context, a Add) (BMC, error) {
	return BMC{VM: a.VM, Address: "127.0.0.1:623"}, f.err
}
func (f fakeBackend) AddAll(context.Context, AddAll) ([]BMC, error) { return []BMC{{VM: "vm"}}, f.err }
func (f fakeBackend) VMs(context.Context, VMQuery) ([]VM, error) {
	return []VM{{Name: "vm"}}, f.err
}
func (f fakeBackend) BMH(context.Context, BMH) ([]byte, error) {
	return []byte("kind: BareMetalHost\n"), f.err
}
func (f fakeBackend) ConsoleLog(context.Context, string) ([]byte, error) {
	return []byte("boot \x00\xff log"), f.err
}
func (f fakeBackend) Console(context.Context, string) (machine.SerialConsole, error) {
	return newBootedConsole(), f.err
}

// TestHandler: each route's status, with the backend succeeding and
// failing, the errors' classes as HTTP statuses, a body that does not
// decode refused, and the changes logged.
func TestHandler(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		method, path, body string
		err                error
		status             int
		inBody, logged     string
	}{
		{"GET", "/v1/bmcs", "", nil, http.StatusOK, `"vm":"vm"`, ""},
		{"GET", "/v1/bmcs/x", "", nil, http.StatusOK, `"vm":"vm"`, ""},
		{"GET", "/v1/bmcs/x", "", ErrNotFound, http.StatusNotFound, `{"error":"not found"}`, ""},
		{"POST", "/v1/bmcs", `{"vm":"a"}`, nil, http.StatusCreated, `"vm":"a"`, "msg=\"bmc added\" vm=a address=127.0.0.1:623"},
		{"POST", "/v1/bmcs", `{"vm":"a"}`, ErrConflict, http.StatusConflict, "conflict", ""},
		{"POST", "/v1/bmcs", `{"vm":"a","extra":1}`, nil, http.StatusBadRequest, "unknown field", ""},
		{"POST", "/v1/bmcs", `{`, nil, http.StatusBadRequest, "invalid request: body", ""},
		{"POST", "/v1/bmcs:all", `{"filter":"*"}`, nil, http.StatusCreated, `"vm":"vm"`, ""},
		{"POST", "/v1/bmcs:all", `{"filter":"*"}`, ErrInvalid, http.StatusBadRequest, "invalid request", ""},
		{"DELETE", "/v1/bmcs/x", "", nil, http.StatusNoContent, "", "msg=\"bmc removed\" bmc=x"},
		{"DELETE", "/v1/bmcs/x", "", errors.New("state file: disk full"), http.StatusInternalServerError, "disk full", ""},
		{"POST", "/v1/bmcs/x/stop", "", nil, http.StatusNoContent, "", "msg=\"bmc stop\" bmc=x"},
		{"POST", "/v1/bmcs/x/start", "", nil, http.StatusNoContent, "", "msg=\"bmc start\" bmc=x"},
		{"POST", "/v1/bmcs/x/start", "", ErrNotFound, http.StatusNotFound, "not found", ""},
		{"GET", "/v1/vms?filter=a", "", nil, http.StatusOK, `"name":"vm"`, ""},
		{"POST", "/v1/check", "", nil, http.StatusOK, `"vm":"vm"`, ""},
		{"POST", "/v1/bmh", `{"host":"h"}`, nil, http.StatusOK, "kind: BareMetalHost", ""},
		{"POST", "/v1/bmh", `{"host":"h"}`, ErrInvalid, http.StatusBadRequest, "invalid request", ""},
		{"POST", "/v1/reload", "", nil, http.StatusNoContent, "", ""},
		{"GET", "/v1/bmcs/x/console/log", "", nil, http.StatusOK, "boot \x00\xff log", ""},
		{"GET", "/v1/bmcs/x/console/log", "", ErrNotFound, http.StatusNotFound, "not found", ""},
		{"GET", "/v1/bmcs/x/console/log", "", ErrConflict, http.StatusConflict, "conflict", ""},
		{"GET", "/v1/bmcs/x/console", "", nil, http.StatusUpgradeRequired, "", ""},
		{"GET", "/v1/bmcs/x/console", "", ErrConflict, http.StatusConflict, "conflict", ""},
		{"GET", "/v1/reload", "", nil, http.StatusMethodNotAllowed, "", ""},
	} {
		t.Run(tt.method+" "+tt.path+" "+tt.body+" "+errString(tt.err), func(t *testing.T) {
			var log clienttest.Buffer
			h := Handler(fakeBackend{tt.err}, slog.New(slog.NewTextHandler(&log, nil)))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.inBody) {
				t.Errorf("%d %q, want %d with %q", w.Code, w.Body.String(), tt.status, tt.inBody)
			}
			if !strings.Contains(log.String(), tt.logged) || (tt.logged == "" && log.String() != "") {
				t.Errorf("logged %q, want %q", log.String(), tt.logged)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
