package redfish

import "net/http"

// firmwareVersion is the virtual BMC's firmware version, the one IPMI's
// Get Device ID reports.
const firmwareVersion = "1.00"

func (s *Server) getManagers(q *request) error {
	var members []link
	for _, sys := range q.visible {
		members = append(members, ref(managerPath(sys.ID)))
	}
	return writeResource(q, http.StatusOK, collection("/redfish/v1/Managers", "#ManagerCollection.ManagerCollection", "Manager Collection", members))
}

// getManager answers the virtual BMC of a system: one Manager per system,
// linking the VirtualMedia that Ironic up to 2023.1 looks for here. It
// reads nothing from vCenter, so it answers while vCenter is away.
func (s *Server) getManager(q *request) error {
	path := managerPath(q.sys.ID)
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":             path,
		"@odata.type":           "#Manager.v1_10_0.Manager",
		"Id":                    q.sys.ID,
		"Name":                  "Virtual BMC of " + q.sys.ID,
		"ManagerType":           "BMC",
		"Model":                 "ipmi-vmware-bridge",
		"FirmwareVersion":       firmwareVersion,
		"ServiceEntryPointUUID": s.uuid,
		"PowerState":            "On",
		"Status":                enabled,
		"SerialConsole":         serialConsole(q.sys.Machine.SerialConsole() != nil),
		"VirtualMedia":          ref(path + "/VirtualMedia"),
		"Links": map[string]any{
			"ManagerForServers": []link{ref(systemPath(q.sys.ID))},
			"ManagerForChassis": []link{ref(chassisPath(q.sys.ID))},
		},
	})
}

// serialConsole is the Manager's SerialConsole (Manager.v1_0_0 and
// later): a BMC whose VM's serial port reaches the bridge offers it by
// IPMI Serial-over-LAN alone, one session at a time as IPMI allows one
// SOL payload instance; the others say honestly that there is none.
func serialConsole(offered bool) map[string]any {
	if !offered {
		return map[string]any{"ServiceEnabled": false, "MaxConcurrentSessions": 0, "ConnectTypesSupported": []string{}}
	}
	return map[string]any{"ServiceEnabled": true, "MaxConcurrentSessions": 1, "ConnectTypesSupported": []string{"IPMI"}}
}
