package redfish

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// login opens a session as sushy does and returns its token and Location.
func (e *env) login(user, pass string) (token, location string) {
	e.t.Helper()
	w := e.do("POST", sessionsPath, `{"UserName":"`+user+`","Password":"`+pass+`"}`)
	if w.Code != http.StatusCreated {
		e.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	token, location = w.Header().Get("X-Auth-Token"), w.Header().Get("Location")
	if token == "" || !strings.HasPrefix(location, sessionsPath+"/") {
		e.t.Fatalf("login: token %q, Location %q", token, location)
	}
	m := decode(e.t, w)
	if m["@odata.id"] != location || m["UserName"] != user || m["Password"] != nil {
		e.t.Errorf("session body %v", m)
	}
	return token, location
}

func TestSessionLifecycle(t *testing.T) {
	e := newEnv(t)
	token, loc := e.login("admin", "password")
	auth := []string{"X-Auth-Token", token}

	if w := e.do("GET", "/redfish/v1/Systems/vm-0", "", auth...); w.Code != http.StatusOK {
		t.Fatalf("GET with token: %d", w.Code)
	}
	if w := e.do("GET", "/redfish/v1/Systems/vm-1", "", auth...); w.Code != http.StatusNotFound {
		t.Errorf("system of other credentials: %d", w.Code)
	}
	w := e.do("GET", sessionsPath, "", auth...)
	if got := members(decode(t, w)); !slices.Equal(got, []string{loc}) {
		t.Errorf("sessions %v, want [%s]", got, loc)
	}
	if w := e.do("GET", loc, "", auth...); w.Code != http.StatusOK {
		t.Errorf("GET session: %d", w.Code)
	}
	// Another user sees neither the session nor may end it.
	other := []string{"Authorization", basic("other", "secret-1")}
	if got := members(decode(t, e.do("GET", sessionsPath, "", other...))); len(got) != 0 {
		t.Errorf("other user sees %v", got)
	}
	if w := e.do("DELETE", loc, "", other...); w.Code != http.StatusNotFound {
		t.Errorf("other user's DELETE: %d", w.Code)
	}

	if w := e.do("DELETE", loc, "", auth...); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	if w := e.do("GET", "/redfish/v1/Systems/vm-0", "", auth...); w.Code != http.StatusUnauthorized {
		t.Errorf("token after DELETE: %d", w.Code)
	}
	if strings.Contains(e.log.String(), token) {
		t.Error("a session token reached the log")
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	e := newEnv(t)
	token, _ := e.login("admin", "password")
	auth := []string{"X-Auth-Token", token}
	for range 3 { // each use restarts the idle timer
		e.Advance(29 * time.Minute)
		if w := e.do("GET", "/redfish/v1/Systems", "", auth...); w.Code != http.StatusOK {
			t.Fatalf("after 29 min idle: %d", w.Code)
		}
	}
	e.Advance(30 * time.Minute)
	w := e.do("GET", "/redfish/v1/Systems", "", auth...)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("after 30 min idle: %d", w.Code)
	}
	checkRedfishError(t, w, "NoValidSession")
}

func TestSessionTimeoutConfigurable(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionTimeout = 90 * time.Second })
	if got := e.get("/redfish/v1/SessionService")["SessionTimeout"]; got != 90.0 {
		t.Errorf("SessionTimeout %v", got)
	}
	token, _ := e.login("admin", "password")
	e.Advance(90 * time.Second)
	if w := e.do("GET", "/redfish/v1/Systems", "", "X-Auth-Token", token); w.Code != http.StatusUnauthorized {
		t.Errorf("after the timeout: %d", w.Code)
	}
}

func TestSessionService(t *testing.T) {
	e := newEnv(t)
	m := e.get("/redfish/v1/SessionService")
	if m["ServiceEnabled"] != true || m["SessionTimeout"] != 1800.0 || at(m, "Sessions", "@odata.id") != sessionsPath {
		t.Errorf("SessionService %v", m)
	}
}

// TestSessionEndsWithPasswordChange: a session stands for the credentials
// it was opened with; when the owner changes the BMC's password, it opens
// nothing any more.
func TestSessionEndsWithPasswordChange(t *testing.T) {
	e := newEnv(t)
	token, _ := e.login("other", "secret-1")
	sys := e.currentSystems()
	sys[1].Password = "secret-2"
	e.setSystems(sys)
	if w := e.do("GET", "/redfish/v1/Systems/vm-1", "", "X-Auth-Token", token); w.Code != http.StatusUnauthorized {
		t.Errorf("status %d", w.Code)
	}
}

func TestSessionLoginFailures(t *testing.T) {
	e := newEnv(t)
	w := e.do("POST", sessionsPath, `{"UserName":"admin","Password":"wrong"}`)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", w.Code)
	}
	checkRedfishError(t, w, "NoValidSession")
	if w.Header().Get("X-Auth-Token") != "" {
		t.Error("token on a failed login")
	}
	w = e.do("POST", sessionsPath, `{"UserName":"admin","Password":1234567}`)
	if w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "1234567") {
		t.Errorf("a password of the wrong type is echoed or accepted: %d %s", w.Code, w.Body)
	}
	w = e.do("POST", sessionsPath, `{"UserName":"admin","Password":"pass`)
	if w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "pass") {
		t.Errorf("malformed login body echoed: %d %s", w.Code, w.Body)
	}
}

// One system's user cannot take every session: past its quota it gets 503
// SessionLimitExceeded (sushy then falls back to Basic auth), while
// another system's user still logs in.
func TestSessionLimit(t *testing.T) {
	e := newEnv(t)
	for range maxSessionsPerUser {
		e.login("admin", "password")
	}
	w := e.do("POST", sessionsPath, `{"UserName":"admin","Password":"password"}`)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", w.Code)
	}
	checkRedfishError(t, w, "SessionLimitExceeded")
	e.login("other", "secret-1")
	e.Advance(DefaultSessionTimeout)
	e.login("admin", "password") // expired sessions make room
}
