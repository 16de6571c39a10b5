package redfish

import (
	"net/http"
	"net/url"
)

// The AccountService, read-only. A BMC's user name and password are set in
// the bridge's configuration (or its management API), not through Redfish:
// every write here is answered 405 with the Allow header, as on the other
// read-only routes. DSP0266 "Roles" requires the Administrator, Operator
// and ReadOnly roles, and the Protocol Validator reads the accounts and
// roles through this service.

const (
	accountServicePath = "/redfish/v1/AccountService"
	accountsPath       = accountServicePath + "/Accounts"
	rolesPath          = accountServicePath + "/Roles"
)

// accountRole is the role of every account: a BMC's credentials do all the
// service offers (power, boot, media on their systems).
const accountRole = "Administrator"

// roles are the standard roles with the privileges the Redfish privilege
// registry (DSP8011) assigns them; the Protocol Validator compares the
// sets.
var roles = []struct {
	id         string
	privileges []string
}{
	{"Administrator", []string{"Login", "ConfigureManager", "ConfigureUsers", "ConfigureSelf", "ConfigureComponents"}},
	{"Operator", []string{"Login", "ConfigureSelf", "ConfigureComponents"}},
	{"ReadOnly", []string{"Login", "ConfigureSelf"}},
}

func (s *Server) getAccountService(q *request) error {
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":      accountServicePath,
		"@odata.type":    "#AccountService.v1_3_0.AccountService",
		"Id":             "AccountService",
		"Name":           "Account Service",
		"Description":    "The accounts of the bridged BMCs, read-only: each is set with its BMC.",
		"ServiceEnabled": true,
		// Local accounts only: the configured ones (v1_3_0).
		"LocalAccountAuth": "Enabled",
		"Status":           enabled,
		"Accounts":         ref(accountsPath),
		"Roles":            ref(rolesPath),
	})
}

// callerUser is the user name of the caller's credentials. Systems open to
// one principal share their user name and password (the principal is a
// digest of both), so the first visible system's is the caller's.
func callerUser(q *request) string {
	return q.visible[0].Username
}

// accountPath is the account of a user name, which is its Id: a caller
// sees its own account only, the one of the credentials it sent.
func accountPath(user string) string { return accountsPath + "/" + url.PathEscape(user) }

// getAccounts lists the caller's account: the credentials of other systems
// are not the caller's to see, as their systems are not (auth.go).
func (s *Server) getAccounts(q *request) error {
	return writeResource(q, http.StatusOK, collection(accountsPath, "#ManagerAccountCollection.ManagerAccountCollection", "Accounts Collection",
		[]link{ref(accountPath(callerUser(q)))}))
}

// getAccount answers the caller's account. The password is never shown,
// not even as the null ManagerAccount allows.
func (s *Server) getAccount(q *request) error {
	user := callerUser(q)
	if aid := q.r.PathValue("aid"); aid != user {
		return errNotFound("ManagerAccount", aid)
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":   accountPath(user),
		"@odata.type": "#ManagerAccount.v1_7_0.ManagerAccount",
		"Id":          user,
		"Name":        "User Account",
		"UserName":    user,
		"RoleId":      accountRole,
		"Enabled":     true,
		// Failed logins lock out the address they come from, not the
		// account (auth.go, guardRule).
		"Locked": false,
		// The same credentials open the BMC's IPMI endpoint (the IPMI
		// account type is of v1_7_0).
		"AccountTypes": []string{"Redfish", "IPMI"},
		"Links":        map[string]any{"Role": ref(rolesPath + "/" + accountRole)},
	})
}

func (s *Server) getRoles(q *request) error {
	members := make([]link, 0, len(roles))
	for _, r := range roles {
		members = append(members, ref(rolesPath+"/"+r.id))
	}
	return writeResource(q, http.StatusOK, collection(rolesPath, "#RoleCollection.RoleCollection", "Roles Collection", members))
}

// getRole answers a standard role. They are predefined, so their
// privileges are not modifiable (DSP0266 "Roles"): PATCH gets 405.
func (s *Server) getRole(q *request) error {
	rid := q.r.PathValue("rid")
	for _, r := range roles {
		if r.id == rid {
			return writeResource(q, http.StatusOK, map[string]any{
				"@odata.id":          rolesPath + "/" + r.id,
				"@odata.type":        "#Role.v1_2_0.Role",
				"Id":                 r.id,
				"Name":               r.id + " Role",
				"RoleId":             r.id,
				"IsPredefined":       true,
				"AssignedPrivileges": r.privileges,
			})
		}
	}
	return errNotFound("Role", rid)
}
