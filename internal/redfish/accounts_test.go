package redfish

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestAccountService: linked from the root, read by any credentials, with
// the caller's account and the standard roles.
func TestAccountService(t *testing.T) {
	e := newEnv(t)
	if got := at(e.get("/redfish/v1"), "AccountService", "@odata.id"); got != accountServicePath {
		t.Errorf("root AccountService %v", got)
	}
	as := e.get(accountServicePath)
	for k, v := range map[string]any{
		"@odata.type": "#AccountService.v1_3_0.AccountService", "Id": "AccountService", "ServiceEnabled": true,
		"LocalAccountAuth": "Enabled", "Accounts/@odata.id": accountsPath, "Roles/@odata.id": rolesPath,
	} {
		if got := at(as, strings.Split(k, "/")...); got != v {
			t.Errorf("AccountService %s = %v, want %v", k, got, v)
		}
	}
	if w := e.do("GET", accountServicePath, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d", w.Code)
	}
}

// TestAccounts: each caller sees its own account, the one of the
// credentials it sent (Basic or a session), never another's nor any
// password.
func TestAccounts(t *testing.T) {
	e := newEnv(t)
	token, _ := e.login("other", "secret-1")
	for _, tc := range []struct {
		name     string
		hdr      []string
		user     string
		password string
		notMine  string
	}{
		{"admin by Basic", admin, "admin", "password", "other"},
		{"other by Basic", []string{"Authorization", basic("other", "secret-1")}, "other", "secret-1", "admin"},
		{"other by session", []string{"X-Auth-Token", token}, "other", "secret-1", "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do("GET", accountsPath, "", tc.hdr...)
			if w.Code != http.StatusOK {
				t.Fatalf("accounts: %d %s", w.Code, w.Body)
			}
			c := decode(t, w)
			path := accountsPath + "/" + tc.user
			if got := members(c); !slices.Equal(got, []string{path}) || c["@odata.type"] != "#ManagerAccountCollection.ManagerAccountCollection" {
				t.Errorf("accounts %v (%v), want [%s]", got, c["@odata.type"], path)
			}
			w = e.do("GET", path, "", tc.hdr...)
			if w.Code != http.StatusOK {
				t.Fatalf("account: %d %s", w.Code, w.Body)
			}
			if strings.Contains(w.Body.String(), tc.password) {
				t.Errorf("the account shows the password: %s", w.Body)
			}
			a := decode(t, w)
			for k, v := range map[string]any{
				"@odata.id": path, "@odata.type": "#ManagerAccount.v1_7_0.ManagerAccount", "Id": tc.user, "UserName": tc.user,
				"RoleId": "Administrator", "Enabled": true, "Locked": false, "Links/Role/@odata.id": rolesPath + "/Administrator",
			} {
				if got := at(a, strings.Split(k, "/")...); got != v {
					t.Errorf("account %s = %v, want %v", k, got, v)
				}
			}
			if _, ok := a["Password"]; ok {
				t.Errorf("the account has a Password property: %v", a)
			}
			if types, _ := a["AccountTypes"].([]any); !slices.Equal(types, []any{"Redfish", "IPMI"}) {
				t.Errorf("AccountTypes %v", a["AccountTypes"])
			}
			for _, p := range []string{accountsPath + "/" + tc.notMine, accountsPath + "/nobody"} {
				if w := e.do("GET", p, "", tc.hdr...); w.Code != http.StatusNotFound {
					t.Errorf("%s: %d", p, w.Code)
				}
			}
		})
	}
}

// TestAccountIDEscaped: a user name that is not a URL segment is escaped
// in the account's path and found through it.
func TestAccountIDEscaped(t *testing.T) {
	e := newEnv(t)
	e.setSystems([]System{{ID: "vm-9", Machine: newFake("vm-9"), Username: "ops/team a", Password: "pw"}})
	hdr := []string{"Authorization", basic("ops/team a", "pw")}
	c := decode(t, e.do("GET", accountsPath, "", hdr...))
	want := accountsPath + "/ops%2Fteam%20a"
	if got := members(c); !slices.Equal(got, []string{want}) {
		t.Fatalf("accounts %v, want [%s]", got, want)
	}
	w := e.do("GET", want, "", hdr...)
	if w.Code != http.StatusOK || decode(t, w)["UserName"] != "ops/team a" {
		t.Errorf("%s: %d %s", want, w.Code, w.Body)
	}
}

// TestRoles: the standard roles with the privilege registry's privileges.
func TestRoles(t *testing.T) {
	e := newEnv(t)
	c := e.get(rolesPath)
	if got, want := members(c), []string{rolesPath + "/Administrator", rolesPath + "/Operator", rolesPath + "/ReadOnly"}; !slices.Equal(got, want) {
		t.Errorf("roles %v, want %v", got, want)
	}
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{"Administrator", []string{"ConfigureComponents", "ConfigureManager", "ConfigureSelf", "ConfigureUsers", "Login"}},
		{"Operator", []string{"ConfigureComponents", "ConfigureSelf", "Login"}},
		{"ReadOnly", []string{"ConfigureSelf", "Login"}},
	} {
		r := e.get(rolesPath + "/" + tc.id)
		var got []string
		for _, p := range r["AssignedPrivileges"].([]any) {
			got = append(got, p.(string))
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: privileges %v, want %v", tc.id, got, tc.want)
		}
		if r["Id"] != tc.id || r["RoleId"] != tc.id || r["IsPredefined"] != true || r["@odata.type"] != "#Role.v1_2_0.Role" {
			t.Errorf("%s: %v", tc.id, r)
		}
	}
	if w := e.do("GET", rolesPath+"/Superuser", "", admin...); w.Code != http.StatusNotFound {
		t.Errorf("unknown role: %d", w.Code)
	}
}

// TestAccountServiceRefusesWrites: accounts and roles are read-only; every
// write is 405 with the Allow header, and changes nothing.
func TestAccountServiceRefusesWrites(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ method, path, body string }{
		{"PATCH", accountServicePath, `{"AccountLockoutThreshold":5}`},
		{"PUT", accountServicePath, `{}`},
		{"POST", accountsPath, `{"UserName":"new","Password":"Passw0rd.","RoleId":"ReadOnly"}`},
		{"PATCH", accountsPath + "/admin", `{"Password":"changed"}`},
		{"DELETE", accountsPath + "/admin", ""},
		{"POST", rolesPath, `{"RoleId":"Custom","AssignedPrivileges":["Login"]}`},
		{"PATCH", rolesPath + "/ReadOnly", `{"AssignedPrivileges":["Login","ConfigureManager"]}`},
		{"DELETE", rolesPath + "/Operator", ""},
	} {
		w := e.do(tc.method, tc.path, tc.body, admin...)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: %d, Allow %q", tc.method, tc.path, w.Code, w.Header().Get("Allow"))
		}
		checkRedfishError(t, w, "OperationNotAllowed")
	}
	if got := e.get(rolesPath + "/ReadOnly")["AssignedPrivileges"].([]any); len(got) != 2 {
		t.Errorf("ReadOnly privileges now %v", got)
	}
	// The password still opens the service.
	e.get(accountsPath + "/admin")
}
