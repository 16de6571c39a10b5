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

// allowedResetTypes are the reset types the system can do now, by
// machine.Identity.Allows: a client must be able to trust AllowableValues
// (sushy refuses a value it lacks before sending), so GracefulShutdown and
// GracefulRestart need VMware Tools (or, for a shutdown, softOffTimeout)
// and Nmi a running VM on a vCenter that can send one.
func allowedResetTypes(id machine.Identity, ps machine.PowerState) []string {
	var out []string
	for _, t := range resetTypes {
		if id.Allows(actionOf(t.act, ps)) {
			out = append(out, t.name)
		}
	}
	return out
}

// actionOf is the power action of a reset type in power state ps:
// PushPowerButton (act 0) is a power-on when off, an ACPI shutdown
// request when on.
func actionOf(act machine.PowerAction, ps machine.PowerState) machine.PowerAction {
	if act != 0 {
		return act
	}
	if ps.IsOn() {
		return machine.SoftOff
	}
	return machine.On
}

// reset performs ComputerSystem.Reset {"ResetType": X}, answered 204. On
// and ForceOff of a system already in that state succeed (the machine makes
// them idempotent), because Ironic's power sync sends them without reading
// the state first.
//
// A type the system cannot do now (allowedResetTypes) is refused as a
// value not in the list, before vCenter is asked: GracefulRestart is a
// guest reboot through VMware Tools (Ironic's soft reboot), never
// silently a hard reset that loses what the guest had not written.
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
	if !known {
		return errActionParameterNotInList(resetActionName, "ResetType", name)
	}
	ctx := q.r.Context()
	st, err := readSystem(ctx, q.sys)
	if err != nil {
		return err
	}
	if act = actionOf(act, st.power); !st.id.Allows(act) {
		return errActionParameterNotInList(resetActionName, "ResetType", name)
	}
	if err := q.sys.Machine.Power(ctx, act); err != nil {
		return fromMachine(fmt.Errorf("%s %s (%s): %w", resetActionName, name, act, err), resetActionName+" "+name, q.sys.ID)
	}
	s.change(q, "power", "reset_type", name, "action", act.String())
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}
