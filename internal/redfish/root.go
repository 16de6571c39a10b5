package redfish

import "net/http"

// redfishVersion is the version of the Redfish specification the service
// follows.
const redfishVersion = "1.11.0"

// getVersions answers /redfish, which names the protocol versions served
// (DSP0266 §6.3).
func (s *Server) getVersions(q *request) error {
	return writeResource(q, http.StatusOK, map[string]string{"v1": "/redfish/v1/"})
}

// getRoot answers the service root. sushy reads it before it authenticates
// (for Links.Sessions), so it is public; it needs Systems, Managers and
// Chassis links, RedfishVersion and UUID.
func (s *Server) getRoot(q *request) error {
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":      "/redfish/v1/",
		"@odata.type":    "#ServiceRoot.v1_5_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": redfishVersion,
		"UUID":           s.uuid,
		"Product":        "ipmi-vmware-bridge",
		"Vendor":         "ipmi-vmware-bridge",
		"Systems":        ref("/redfish/v1/Systems"),
		"Managers":       ref("/redfish/v1/Managers"),
		"Chassis":        ref("/redfish/v1/Chassis"),
		"SessionService": ref("/redfish/v1/SessionService"),
		"Links":          map[string]any{"Sessions": ref(sessionsPath)},
	})
}

// getOData answers the OData service document (DSP0266 §8.2): the
// top-level resources, for generic OData clients.
func (s *Server) getOData(q *request) error {
	var value []map[string]string
	for _, r := range []struct{ name, url string }{
		{"Service", "/redfish/v1/"},
		{"Systems", "/redfish/v1/Systems"},
		{"Managers", "/redfish/v1/Managers"},
		{"Chassis", "/redfish/v1/Chassis"},
		{"SessionService", "/redfish/v1/SessionService"},
		{"Sessions", sessionsPath},
	} {
		value = append(value, map[string]string{"name": r.name, "kind": "Singleton", "url": r.url})
	}
	return writeResource(q, http.StatusOK, map[string]any{"value": value})
}
