package redfish

import (
	"fmt"
	"net/http"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// resetActionName names the action in messages.
const resetActionName = "ComputerSystem.Reset"

// resetTypes maps ResetType to power actions, in the order advertised.
// Ironic sends On, ForceOff, GracefulShutdown, GracefulRestart (soft
// reboot), ForceRestart and Nmi; sushy refuses values the list lacks.
var resetTypes = []struct {
	name string
	// act is the power action; 0 means a rule in resetAction decides.
	act machine.PowerAction
}{
	{"On", machine.On},
	{"ForceOff", machine.Off},
	{"GracefulShutdown", machine.SoftOff},
	{"GracefulRestart", machine.SoftReset},
	{"ForceRestart", machine.Reset},
	{"Nmi", machine.NMI},
	{"ForceOn", machine.On},
	{"PushPowerButton", 0},
	{"PowerCycle", machine.Cycle},
}

func resetTypeNames() []string {
	out := make([]string, len(resetTypes))
	for i, t := range resetTypes {
		out[i] = t.name
	}
	return out
}

// reset performs ComputerSystem.Reset {"ResetType": X}, answered 204. On
// and ForceOff of a system already in that state succeed (the machine makes
// them idempotent), because Ironic's power sync sends them without reading
// the state first.
//
// GracefulRestart is a guest reboot through VMware Tools (Ironic's soft
// reboot); without Tools it answers 409, rather than silently becoming a
// hard reset that loses what the guest had not written.
func (s *Server) reset(q *request) error {
	body, err := readBody(q)
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(body) {
		if k != "ResetType" && !isAnnotation(k) {
			return errActionParameterUnknown(resetActionName, k)
		}
	}
	raw, ok := body["ResetType"]
	if !ok {
		return errActionParameterMissing(resetActionName, "ResetType")
	}
	name, ok := jsonString(raw)
	if !ok {
		return errActionParameterType(resetActionName, "ResetType", rawValue(raw))
	}
	act, known := machine.PowerAction(0), false
	for _, t := range resetTypes {
		if t.name == name {
			act, known = t.act, true
		}
	}
	ctx := q.r.Context()
	switch {
	case !known:
		return errActionParameterNotInList(resetActionName, "ResetType", name)
	case name == "PushPowerButton":
		// A power button: on when off, an ACPI shutdown request when on.
		ps, err := q.sys.Machine.PowerState(ctx)
		if err != nil {
			return fmt.Errorf("power state: %w", err)
		}
		act = machine.On
		if ps.IsOn() {
			act = machine.SoftOff
		}
	}
	if err := q.sys.Machine.Power(ctx, act); err != nil {
		return fromMachine(fmt.Errorf("%s %s (%s): %w", resetActionName, name, act, err), resetActionName+" "+name, q.sys.ID)
	}
	s.change(q, "power", "reset_type", name, "action", act.String())
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}
