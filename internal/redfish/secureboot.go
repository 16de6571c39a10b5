package redfish

import (
	"fmt"
	"net/http"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The SecureBoot resource (Systems/ID/SecureBoot): Ironic's UEFISecureBoot
// boot mode (Metal3's bootMode: UEFISecureBoot) reads it and PATCHes
// SecureBootEnable; without it Ironic only warns and deploys with secure
// boot off. SecureBootEnable is the setting for the next boot (vSphere
// applies a change while the VM is off, so one made while it runs waits
// for the next power-on); SecureBootCurrentBoot is the boot in progress.

func (s *Server) routeSecureBoot() {
	s.route("/redfish/v1/Systems/{id}/SecureBoot", map[string]op{
		http.MethodGet:   {oneSystem, s.getSecureBoot},
		http.MethodPatch: {oneSystem, s.patchSecureBoot},
	})
}

func secureBootPath(sysID string) string { return systemPath(sysID) + "/SecureBoot" }

func secureBootView(sysID string, id machine.Identity) map[string]any {
	current := "Disabled"
	if id.SecureBoot {
		current = "Enabled"
	}
	return map[string]any{
		"@odata.id":             secureBootPath(sysID),
		"@odata.type":           "#SecureBoot.v1_1_0.SecureBoot",
		"Id":                    "SecureBoot",
		"Name":                  "UEFI Secure Boot",
		"SecureBootEnable":      id.SecureBootNext,
		"SecureBootCurrentBoot": current,
		// VMware's firmware ships its keys enrolled and offers no key
		// management: it is always in deployed mode.
		"SecureBootMode": "DeployedMode",
	}
}

func (s *Server) getSecureBoot(q *request) error {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return err
	}
	return writeResource(q, http.StatusOK, secureBootView(q.sys.ID, id))
}

// patchSecureBoot sets SecureBootEnable; a VM with BIOS firmware refuses
// it with 400 (secure boot is a UEFI feature).
func (s *Server) patchSecureBoot(q *request) error {
	body, err := readPatch(q)
	if err != nil {
		return err
	}
	ctx := q.r.Context()
	id, err := q.sys.Machine.Identity(ctx)
	if err != nil {
		return err
	}
	cur := secureBootView(q.sys.ID, id)
	if err := precondition(q, etag(render(cur))); err != nil {
		return err
	}
	var enable *bool
	for _, k := range sortedKeys(body) {
		switch {
		case isAnnotation(k):
		case k == "SecureBootEnable":
			b, ok := jsonBool(body[k])
			if !ok {
				return errPropertyType("#/SecureBootEnable", k, rawValue(body[k]))
			}
			enable = &b
		default:
			return notWritable(cur[k] != nil, "#/"+k, k)
		}
	}
	if enable != nil && *enable != id.SecureBootNext {
		if err := q.sys.Machine.SetSecureBoot(ctx, *enable); err != nil {
			return fromMachine(fmt.Errorf("SecureBootEnable: %w", err), "", q.sys.ID)
		}
		s.change(q, "secure boot", "enable", *enable)
		if id, err = q.sys.Machine.Identity(ctx); err != nil {
			return err
		}
	}
	return writeResource(q, http.StatusOK, secureBootView(q.sys.ID, id))
}
