package redfish

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Boot source override: the Redfish names of machine.BootOverride, and the
// PATCH of ComputerSystem.Boot. The semantics are the machine's, shared
// with IPMI's boot flags: a Once override is consumed by the next boot,
// after which Enabled reads Disabled.

// enum is a Redfish enumeration over machine values, in the order
// advertised. It exists so that the boot targets and boot modes each keep
// one table for the AllowableValues a client reads, the names a resource
// shows and the names a PATCH accepts, looked up the same way both ways.
type enum[T comparable] []struct {
	name string
	v    T
}

// names lists the enumeration's names, for AllowableValues.
func (e enum[T]) names() []string {
	out := make([]string, 0, len(e))
	for _, n := range e {
		out = append(out, n.name)
	}
	return out
}

// value is the machine value called name, if there is one.
func (e enum[T]) value(name string) (T, bool) {
	for _, n := range e {
		if n.name == name {
			return n.v, true
		}
	}
	var zero T
	return zero, false
}

// name is the Redfish name of the machine value v, if it has one.
func (e enum[T]) name(v T) (string, bool) {
	for _, n := range e {
		if n.v == v {
			return n.name, true
		}
	}
	return "", false
}

// bootTargets are the BootSourceOverrideTarget values a VM honours.
var bootTargets = enum[machine.BootDevice]{
	{"None", machine.BootNone},
	{"Pxe", machine.BootPXE},
	{"Hdd", machine.BootDisk},
	{"Cd", machine.BootCD},
	{"BiosSetup", machine.BootBIOSSetup},
}

// bootModes are the BootSourceOverrideMode values.
var bootModes = enum[machine.BootMode]{
	{"UEFI", machine.BootModeUEFI},
	{"Legacy", machine.BootModeLegacy},
}

// BootSourceOverrideEnabled values.
const (
	overrideDisabled   = "Disabled"
	overrideOnce       = "Once"
	overrideContinuous = "Continuous"
)

// The AllowableValues annotations. sushy refuses a target missing from
// its list before sending it.
var (
	allowedTargets = bootTargets.names()
	allowedModes   = bootModes.names()
	allowedEnabled = []string{overrideDisabled, overrideOnce, overrideContinuous}
)

// bootView is ComputerSystem.Boot.
type bootView struct {
	BootSourceOverrideTarget  string
	TargetAllowed             []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
	BootSourceOverrideEnabled string
	EnabledAllowed            []string `json:"BootSourceOverrideEnabled@Redfish.AllowableValues"`
	BootSourceOverrideMode    string   `json:",omitempty"`
	ModeAllowed               []string `json:"BootSourceOverrideMode@Redfish.AllowableValues"`
}

// viewBoot presents an override. An override without a device (IPMI's
// valid bit with device "none", which only selects the firmware) is no
// override to Redfish: Target None, Enabled Disabled, which is also what
// Ironic must read to know the VM boots from its boot order.
func viewBoot(o machine.BootOverride) bootView {
	v := bootView{
		BootSourceOverrideTarget:  "None",
		TargetAllowed:             allowedTargets,
		BootSourceOverrideEnabled: overrideDisabled,
		EnabledAllowed:            allowedEnabled,
		ModeAllowed:               allowedModes,
	}
	v.BootSourceOverrideMode, _ = bootModes.name(o.Mode)
	if !o.Enabled || o.Device == machine.BootNone {
		return v
	}
	if name, ok := bootTargets.name(o.Device); ok {
		v.BootSourceOverrideTarget = name
		v.BootSourceOverrideEnabled = overrideOnce
		if o.Persistent {
			v.BootSourceOverrideEnabled = overrideContinuous
		}
	}
	return v
}

// bootPatch is what a PATCH sets in Boot; nil fields keep their value.
type bootPatch struct {
	target  *machine.BootDevice
	enabled *string
	mode    *machine.BootMode
}

func (p bootPatch) empty() bool { return p.target == nil && p.enabled == nil && p.mode == nil }

// mergeBoot applies a partial PATCH to the override in force. Ironic sends
// BootSourceOverrideEnabled only when it differs from what it read, and
// BootSourceOverrideMode alone to change the firmware, so absent fields
// keep the values the resource shows. A mode change without a device
// override becomes a persistent override with device none, which on the
// machine (as in IPMI) selects the firmware and nothing else: it is how
// Ironic sets a node's boot mode, which must outlast the next boot and is
// therefore not subject to the rule that a one-time override (Once) leaves
// the firmware alone (vsphere.FirmwarePolicy, boot.followEfiBit).
func mergeBoot(cur machine.BootOverride, p bootPatch) machine.BootOverride {
	v := viewBoot(cur)
	target, ok := bootTargets.value(v.BootSourceOverrideTarget)
	if !ok {
		target = machine.BootNone
	}
	en := v.BootSourceOverrideEnabled
	mode := cur.Mode
	if p.target != nil {
		target = *p.target
	}
	if p.enabled != nil {
		en = *p.enabled
	}
	if p.mode != nil {
		mode = *p.mode
	}
	switch {
	case en != overrideDisabled && target != machine.BootNone:
		return machine.BootOverride{Enabled: true, Persistent: en == overrideContinuous, Device: target, Mode: mode}
	case p.mode != nil && *p.mode != cur.Mode:
		return machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootNone, Mode: mode}
	}
	return machine.BootOverride{Device: machine.BootNone, Mode: mode}
}

// parseSystemPatch reads a PATCH of a ComputerSystem. Only Boot's three
// override properties are writable; any other property the resource shows
// is answered PropertyNotWritable, one it lacks PropertyUnknown, so a
// client learns which of its changes failed. current is the resource's
// rendering before the PATCH.
func parseSystemPatch(body map[string]json.RawMessage, current []byte) (bootPatch, error) {
	var p bootPatch
	var shown map[string]json.RawMessage
	if err := json.Unmarshal(current, &shown); err != nil {
		return p, err
	}
	for _, k := range sortedKeys(body) {
		switch {
		case isAnnotation(k):
		case k == "Boot":
			var shownBoot map[string]json.RawMessage
			if err := json.Unmarshal(shown["Boot"], &shownBoot); err != nil {
				return p, err
			}
			if err := p.parse(body[k], shownBoot); err != nil {
				return p, err
			}
		default:
			return p, readOnly(shown, "", k)
		}
	}
	return p, nil
}

// readOnly refuses a property that cannot be written.
func readOnly(shown map[string]json.RawMessage, prefix, k string) error {
	_, ok := shown[k]
	return notWritable(ok, "#/"+prefix+k, prefix+k)
}

func (p *bootPatch) parse(raw json.RawMessage, shown map[string]json.RawMessage) error {
	var boot map[string]json.RawMessage
	if err := json.Unmarshal(raw, &boot); err != nil || boot == nil {
		return errPropertyType("#/Boot", "Boot", rawValue(raw))
	}
	for _, k := range sortedKeys(boot) {
		if isAnnotation(k) {
			continue
		}
		pointer, prop := "#/Boot/"+k, "Boot/"+k
		switch k {
		case "BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode":
		default:
			return readOnly(shown, "Boot/", k)
		}
		v, ok := jsonString(boot[k])
		if !ok {
			return errPropertyType(pointer, prop, rawValue(boot[k]))
		}
		found := false
		switch k {
		case "BootSourceOverrideTarget":
			if d, ok := bootTargets.value(v); ok {
				p.target, found = &d, true
			}
		case "BootSourceOverrideEnabled":
			switch v {
			case overrideDisabled, overrideOnce, overrideContinuous:
				p.enabled, found = &v, true
			}
		case "BootSourceOverrideMode":
			if m, ok := bootModes.value(v); ok {
				p.mode, found = &m, true
			}
		}
		if !found {
			return errPropertyNotInList(pointer, prop, v)
		}
	}
	return nil
}

// patchSystem changes the boot override: PATCH /redfish/v1/Systems/{id}
// with a partial {"Boot": {...}}, answered 200 with the resource. If-Match,
// when sent, must match the ETag of the resource as it is (412 otherwise).
func (s *Server) patchSystem(q *request) error {
	body, err := readPatch(q)
	if err != nil {
		return err
	}
	ctx := q.r.Context()
	st, err := readSystem(ctx, q.sys)
	if err != nil {
		return err
	}
	cur, tag := s.renderSystem(q.sys, st)
	if err := precondition(q, tag); err != nil {
		return err
	}
	p, err := parseSystemPatch(body, cur)
	if err != nil {
		return err
	}
	if !p.empty() {
		o := mergeBoot(st.boot, p)
		if err := q.sys.Machine.SetBootOverride(ctx, o); err != nil {
			return fmt.Errorf("set boot override %s: %w", o, err)
		}
		s.change(q, "boot override", "override", o.String())
		if st, err = readSystem(ctx, q.sys); err != nil {
			return err
		}
	}
	return writeResource(q, http.StatusOK, st.view(q.sys))
}
