package redfish

import (
	"fmt"
	"net/http"
)

func (s *Server) getChassisCollection(q *request) error {
	var members []link
	for _, sys := range q.visible {
		members = append(members, ref(chassisPath(sys.ID)))
	}
	return writeResource(q, http.StatusOK, collection("/redfish/v1/Chassis", "#ChassisCollection.ChassisCollection", "Chassis Collection", members))
}

// getChassis answers the chassis of a system, which Ironic follows from
// Links.Chassis (for LEDs and sensors). A VM has no enclosure of its own:
// ChassisType is Other.
func (s *Server) getChassis(q *request) error {
	ctx := q.r.Context()
	id, err := q.sys.Machine.Identity(ctx)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	ps, err := q.sys.Machine.PowerState(ctx)
	if err != nil {
		return fmt.Errorf("power state: %w", err)
	}
	name := id.Name
	if name == "" {
		name = q.sys.ID
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":    chassisPath(q.sys.ID),
		"@odata.type":  "#Chassis.v1_14_0.Chassis",
		"Id":           q.sys.ID,
		"Name":         name,
		"ChassisType":  "Other",
		"Manufacturer": id.Manufacturer,
		"Model":        id.Model,
		"SerialNumber": id.SerialNumber,
		"UUID":         id.UUID,
		"PowerState":   powerState(ps),
		"Status":       enabled,
		"Links": map[string]any{
			"ComputerSystems": []link{ref(systemPath(q.sys.ID))},
			"ManagedBy":       []link{ref(managerPath(q.sys.ID))},
		},
	})
}
