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

// rootServices are the resources the service root links to by name, in
// the order of the OData service document, which lists the same ones
// (DSP0266 "OData service document": an entry for the service root and for
// each resource that is a direct child of it).
var rootServices = []struct{ name, path string }{
	{"Systems", "/redfish/v1/Systems"},
	{"Managers", "/redfish/v1/Managers"},
	{"Chassis", "/redfish/v1/Chassis"},
	{"SessionService", "/redfish/v1/SessionService"},
	{"AccountService", accountServicePath},
	// The Bios attribute registry (bios.go): sushy finds it here.
	{"Registries", "/redfish/v1/Registries"},
}

// getRoot answers the service root. sushy reads it before it authenticates
// (for Links.Sessions), so it is public; it needs Systems, Managers and
// Chassis links, RedfishVersion and UUID.
func (s *Server) getRoot(q *request) error {
	root := map[string]any{
		"@odata.id":      "/redfish/v1/",
		"@odata.type":    "#ServiceRoot.v1_5_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": redfishVersion,
		"UUID":           s.uuid,
		"Product":        "ipmi-vmware-bridge",
		"Vendor":         "ipmi-vmware-bridge",
		"Links":          map[string]any{"Sessions": ref(sessionsPath)},
	}
	for _, r := range rootServices {
		root[r.name] = ref(r.path)
	}
	return writeResource(q, http.StatusOK, root)
}

// getOData answers the OData service document (DSP0266 "OData service
// document"): the service root and the resources it links to, for generic
// OData clients, in the context of $metadata, whose Service entity
// container defines them.
func (s *Server) getOData(q *request) error {
	value := []map[string]string{{"name": "Service", "kind": "Singleton", "url": "/redfish/v1/"}}
	for _, r := range rootServices {
		value = append(value, map[string]string{"name": r.name, "kind": "Singleton", "url": r.path})
	}
	value = append(value, map[string]string{"name": "Sessions", "kind": "Singleton", "url": sessionsPath})
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.context": "/redfish/v1/$metadata",
		"value":          value,
	})
}
