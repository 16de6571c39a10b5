package daemon

import (
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
)

// The API refuses what the configuration file refuses in a BMC, with the
// same limits, and makes Redfish-only BMCs without an address.
func TestSpec(t *testing.T) {
	t.Parallel()
	withRedfish := &Daemon{defaultAddress: "127.0.0.1", redfishAddr: "127.0.0.1:8000"}
	noRedfish := &Daemon{defaultAddress: "127.0.0.1"}
	for _, tc := range []struct {
		name    string
		d       *Daemon
		add     api.Add
		want    bridge.Spec
		wantErr string
	}{
		{"ipmi and redfish", withRedfish, api.Add{VM: "vm", Port: 623, Password: "pw"},
			bridge.Spec{VM: "vm", Address: "127.0.0.1:623", Username: "admin", Password: "pw"}, ""},
		{"redfish only", withRedfish, api.Add{VM: "vm", Password: "pw", NoIPMI: true},
			bridge.Spec{VM: "vm", Username: "admin", Password: "pw", NoIPMI: true}, ""},
		{"ipmi only", noRedfish, api.Add{VM: "vm", Port: 623, Password: "pw", NoRedfish: true},
			bridge.Spec{VM: "vm", Address: "127.0.0.1:623", Username: "admin", Password: "pw", NoRedfish: true}, ""},
		{"neither", withRedfish, api.Add{VM: "vm", Password: "pw", NoIPMI: true, NoRedfish: true}, bridge.Spec{}, "IPMI, Redfish or both"},
		{"redfish only with a port", withRedfish, api.Add{VM: "vm", Port: 623, Password: "pw", NoIPMI: true}, bridge.Spec{}, "give no port"},
		{"redfish only, redfish off", noRedfish, api.Add{VM: "vm", Password: "pw", NoIPMI: true}, bridge.Spec{}, "Redfish, which is off"},
		{"no port", withRedfish, api.Add{VM: "vm", Password: "pw"}, bridge.Spec{}, "port 0"},
		{"no vm", withRedfish, api.Add{Port: 623, Password: "pw"}, bridge.Spec{}, "VM name"},
		{"long password", withRedfish, api.Add{VM: "vm", Port: 623, Password: strings.Repeat("p", 21)}, bridge.Spec{}, "1 to 20 bytes"},
		{"long user", withRedfish, api.Add{VM: "vm", Port: 623, Username: strings.Repeat("u", 17), Password: "pw"}, bridge.Spec{}, "at most 16 bytes"},
		{"console without concentrator", withRedfish, api.Add{VM: "vm", Port: 623, Password: "pw", Console: true}, bridge.Spec{}, "console concentrator is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.d.spec(tc.add)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("spec: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || s != tc.want {
				t.Fatalf("spec = %+v, %v; want %+v", s, err, tc.want)
			}
		})
	}
}
