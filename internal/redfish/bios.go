package redfish

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The Bios resource (Systems/ID/Bios) with a small set of attributes that
// are true of the VM's firmware, and the attribute registry describing
// them: Metal3's HostFirmwareSettings and Ironic's bios interface read
// both. Only SecureBoot can be changed (through Bios/Settings, applied as
// the SecureBoot resource applies it); BootMode follows the firmware
// (changed with Boot.BootSourceOverrideMode, as Ironic does) and BootOrder
// is vSphere's, so both are read-only.

// biosRegistry names the attribute registry, in Bios.AttributeRegistry and
// under /redfish/v1/Registries.
const biosRegistry = "BiosAttributeRegistry.v1_0_0"

func (s *Server) routeBios() {
	s.route("/redfish/v1/Systems/{id}/Bios", map[string]op{http.MethodGet: {oneSystem, s.getBios}})
	s.route("/redfish/v1/Systems/{id}/Bios/Settings", map[string]op{
		http.MethodGet:   {oneSystem, s.getBiosSettings},
		http.MethodPatch: {oneSystem, s.patchBiosSettings},
	})
	s.route("/redfish/v1/Registries", map[string]op{http.MethodGet: {anySystem, s.getRegistries}})
	s.route("/redfish/v1/Registries/BiosAttributeRegistry", map[string]op{http.MethodGet: {anySystem, s.getRegistryFile}})
	s.route("/redfish/v1/Registries/BiosAttributeRegistry/"+biosRegistry, map[string]op{http.MethodGet: {anySystem, s.getBiosRegistry}})
}

func biosPath(sysID string) string { return systemPath(sysID) + "/Bios" }

// biosAttributes are the VM's, with secure boot as of the current boot or,
// for the settings object, the next one.
func biosAttributes(id machine.Identity, fw machine.BootMode, next bool) map[string]any {
	mode := "Uefi"
	if fw == machine.BootModeLegacy {
		mode = "Bios"
	}
	sb := id.SecureBoot
	if next {
		sb = id.SecureBootNext
	}
	order := make([]string, 0, len(id.BootOrder))
	for _, c := range id.BootOrder {
		order = append(order, bootOrderNames[c])
	}
	return map[string]any{
		"BootMode":   mode,
		"SecureBoot": enabledText(sb),
		"BootOrder":  strings.Join(order, ","),
	}
}

// bootOrderNames are a boot order's device classes as BootSourceOverrideTarget
// names them.
var bootOrderNames = map[string]string{"disk": "Hdd", "ethernet": "Pxe", "cdrom": "Cd", "floppy": "Floppy"}

func enabledText(b bool) string {
	if b {
		return "Enabled"
	}
	return "Disabled"
}

func (s *Server) biosState(q *request) (machine.Identity, machine.BootMode, error) {
	ctx := q.r.Context()
	id, err := q.sys.Machine.Identity(ctx)
	if err != nil {
		return id, 0, err
	}
	boot, err := q.sys.Machine.BootOverride(ctx)
	if err != nil {
		return id, 0, fmt.Errorf("boot override: %w", err)
	}
	return id, boot.Mode, nil
}

func (s *Server) getBios(q *request) error {
	id, fw, err := s.biosState(q)
	if err != nil {
		return err
	}
	p := biosPath(q.sys.ID)
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":         p,
		"@odata.type":       "#Bios.v1_1_0.Bios",
		"Id":                "BIOS",
		"Name":              "BIOS Configuration",
		"AttributeRegistry": biosRegistry,
		"Attributes":        biosAttributes(id, fw, false),
		"@Redfish.Settings": map[string]any{
			"@odata.type":    "#Settings.v1_3_0.Settings",
			"SettingsObject": ref(p + "/Settings"),
		},
	})
}

func biosSettingsView(sysID string, id machine.Identity, fw machine.BootMode) map[string]any {
	return map[string]any{
		"@odata.id":   biosPath(sysID) + "/Settings",
		"@odata.type": "#Bios.v1_1_0.Bios",
		"Id":          "Settings",
		"Name":        "BIOS Configuration Pending Settings",
		"Attributes":  biosAttributes(id, fw, true),
	}
}

func (s *Server) getBiosSettings(q *request) error {
	id, fw, err := s.biosState(q)
	if err != nil {
		return err
	}
	return writeResource(q, http.StatusOK, biosSettingsView(q.sys.ID, id, fw))
}

// patchBiosSettings takes {"Attributes": {"SecureBoot": "Enabled"}};
// other attributes are read-only and unknown ones are refused, each with
// the property's path.
func (s *Server) patchBiosSettings(q *request) error {
	body, err := readPatch(q)
	if err != nil {
		return err
	}
	var attrs map[string]json.RawMessage
	for _, k := range sortedKeys(body) {
		switch {
		case isAnnotation(k):
		case k == "Attributes":
			if err := json.Unmarshal(body[k], &attrs); err != nil || attrs == nil {
				return errPropertyType("#/Attributes", k, rawValue(body[k]))
			}
		default:
			_, shown := biosSettingsView("", machine.Identity{}, 0)[k]
			return notWritable(shown, "#/"+k, k)
		}
	}
	id, fw, err := s.biosState(q)
	if err != nil {
		return err
	}
	cur := biosAttributes(id, fw, true)
	var enable *bool
	for _, k := range sortedKeys(attrs) {
		pointer := "#/Attributes/" + k
		switch v, _ := jsonString(attrs[k]); {
		case k == "SecureBoot" && (v == "Enabled" || v == "Disabled"):
			b := v == "Enabled"
			enable = &b
		case k == "SecureBoot":
			return errPropertyNotInList(pointer, k, rawValue(attrs[k]))
		default:
			return notWritable(cur[k] != nil, pointer, k)
		}
	}
	ctx := q.r.Context()
	if enable != nil && *enable != id.SecureBootNext {
		if err := q.sys.Machine.SetSecureBoot(ctx, *enable); err != nil {
			return fromMachine(fmt.Errorf("SecureBoot: %w", err), "", q.sys.ID)
		}
		s.change(q, "secure boot", "enable", *enable)
		if id, fw, err = s.biosState(q); err != nil {
			return err
		}
	}
	return writeResource(q, http.StatusOK, biosSettingsView(q.sys.ID, id, fw))
}

func (s *Server) getRegistries(q *request) error {
	return writeResource(q, http.StatusOK, collection("/redfish/v1/Registries", "#MessageRegistryFileCollection.MessageRegistryFileCollection",
		"Registry File Collection", []link{ref("/redfish/v1/Registries/BiosAttributeRegistry")}))
}

func (s *Server) getRegistryFile(q *request) error {
	p := "/redfish/v1/Registries/BiosAttributeRegistry"
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":   p,
		"@odata.type": "#MessageRegistryFile.v1_1_0.MessageRegistryFile",
		"Id":          "BiosAttributeRegistry",
		"Name":        "BIOS Attribute Registry File",
		"Languages":   []string{"en"},
		"Registry":    biosRegistry,
		"Location":    []map[string]string{{"Language": "en", "Uri": p + "/" + biosRegistry}},
	})
}

// getBiosRegistry describes the attributes: names, types, the values an
// enumeration takes, and which are read-only.
func (s *Server) getBiosRegistry(q *request) error {
	enum := func(name, help string, readOnly bool, values ...string) map[string]any {
		vs := make([]map[string]string, len(values))
		for i, v := range values {
			vs[i] = map[string]string{"ValueName": v, "ValueDisplayName": v}
		}
		return map[string]any{"AttributeName": name, "DisplayName": name, "HelpText": help, "Type": "Enumeration", "ReadOnly": readOnly, "Value": vs}
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":       "/redfish/v1/Registries/BiosAttributeRegistry/" + biosRegistry,
		"@odata.type":     "#AttributeRegistry.v1_3_0.AttributeRegistry",
		"Id":              biosRegistry,
		"Name":            "VMware virtual firmware attribute registry",
		"Language":        "en",
		"OwningEntity":    "ipmi-vmware-bridge",
		"RegistryVersion": "1.0.0",
		"RegistryEntries": map[string]any{"Attributes": []map[string]any{
			enum("BootMode", "The VM's firmware; change it with Boot.BootSourceOverrideMode.", true, "Uefi", "Bios"),
			enum("SecureBoot", "UEFI secure boot (vSphere's efiSecureBootEnabled), from the next boot.", false, "Enabled", "Disabled"),
			{"AttributeName": "BootOrder", "DisplayName": "BootOrder", "HelpText": "The VM's boot order by device class, first to last; empty: the firmware's default.",
				"Type": "String", "ReadOnly": true},
		}},
	})
}
