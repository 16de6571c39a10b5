package redfish

import (
	"encoding/base64"
	"encoding/json"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

const testUUID = "6f3c2d3e-8a7b-4c1d-9e2f-0a1b2c3d4e5f"

// env is a Server over Fake machines with a settable clock and a captured
// log. vm-0 and vm-2 open with admin/password, vm-1 with other/secret-1.
type env struct {
	t     *testing.T
	srv   *Server
	fakes map[string]*machinetest.Fake
	log   *clienttest.Buffer

	mu      sync.Mutex
	systems []System
	*clienttest.Clock
}

func newFake(name string) *machinetest.Fake {
	return &machinetest.Fake{ID: machine.Identity{
		Name:         name,
		UUID:         "42" + strings.Repeat("0", 6) + "-1111-2222-3333-444455556666",
		SerialNumber: "VMware-42 00 00 00 11 11 22 22-33 33 44 44 55 55 66 66",
		CPUs:         4,
		MemoryMiB:    16384,
		MACs:         []string{"00:50:56:aa:bb:01", "00:50:56:aa:bb:02"},
		GuestTools:   true,
		NMI:          true,
	}}
}

func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, fakes: map[string]*machinetest.Fake{}, log: &clienttest.Buffer{}, Clock: clienttest.ClockAt(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))}
	for _, s := range []struct{ id, user, pass string }{
		{"vm-0", "admin", "password"},
		{"vm-1", "other", "secret-1"},
		{"vm-2", "admin", "password"},
	} {
		f := newFake(s.id)
		e.fakes[s.id] = f
		e.systems = append(e.systems, System{ID: s.id, Machine: f, Username: s.user, Password: s.pass})
	}
	cfg := Config{
		Systems:     e.currentSystems,
		ServiceUUID: testUUID,
		Log:         slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:         e.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	return e
}

func (e *env) currentSystems() []System {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]System(nil), e.systems...)
}

func (e *env) setSystems(s []System) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.systems = s
}

// basic is an Authorization header value.
func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// admin are the credentials of vm-0 and vm-2.
var admin = []string{"Authorization", basic("admin", "password")}

// do sends one request; hdr holds header name/value pairs. A body is sent
// as JSON unless hdr sets Content-Type.
func (e *env) do(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	return w
}

// get fetches a resource as admin and fails the test unless it is 200.
func (e *env) get(path string) map[string]any {
	e.t.Helper()
	w := e.do("GET", path, "", admin...)
	if w.Code != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
	}
	return decode(e.t, w)
}

func decode(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, w.Body)
	}
	return m
}

// at walks a decoded JSON document along keys.
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// members returns the @odata.id of a collection's members.
func members(m map[string]any) []string {
	var out []string
	list, _ := m["Members"].([]any)
	for _, x := range list {
		out = append(out, at(x, "@odata.id").(string))
	}
	return out
}

// checkRedfishError fails unless w is a Redfish error body with MessageId
// Base.1.16.<id> (any when id is empty).
func checkRedfishError(t *testing.T, w *httptest.ResponseRecorder, id string) map[string]any {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	if v := w.Header().Get("OData-Version"); v != "4.0" {
		t.Errorf("OData-Version %q", v)
	}
	m := decode(t, w)
	code, _ := at(m, "error", "code").(string)
	if !strings.HasPrefix(code, "Base.1.16.") || (id != "" && code != "Base.1.16."+id) {
		t.Errorf("error.code %q, want Base.1.16.%s\n%s", code, id, w.Body)
	}
	if msg, _ := at(m, "error", "message").(string); msg == "" {
		t.Errorf("no error.message\n%s", w.Body)
	}
	info, _ := at(m, "error", "@Message.ExtendedInfo").([]any)
	if len(info) != 1 || at(info[0], "MessageId") != code || at(info[0], "RelatedProperties") == nil || at(info[0], "Message") == "" {
		t.Errorf("bad @Message.ExtendedInfo\n%s", w.Body)
	}
	return m
}
