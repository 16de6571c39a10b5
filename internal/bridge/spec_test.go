package bridge

import "testing"

// Spec.Key is a BMC's address, or for a Redfish-only BMC, which has none,
// "redfish:" and its VM, prefixed by its vCenter when it has one: two
// vCenters may hold VMs of one name (or UUID), but one process binds an
// address once, whatever the vCenter.
func TestSpecKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"an IPMI BMC", Spec{VM: "vm0", Address: "10.0.0.5:623"}, "10.0.0.5:623"},
		{"an IPMI BMC of another vCenter", Spec{VM: "vm0", VCenter: "vc2", Address: "10.0.0.5:623"}, "10.0.0.5:623"},
		{"an IPv6 address", Spec{VM: "vm0", Address: "[::1]:6230"}, "[::1]:6230"},
		{"an IPMI-only BMC", Spec{VM: "vm0", Address: "10.0.0.5:623", NoRedfish: true}, "10.0.0.5:623"},
		{"a Redfish-only BMC", Spec{VM: "vm0", NoIPMI: true}, "redfish:vm0"},
		{"a Redfish-only BMC of another vCenter", Spec{VM: "vm0", VCenter: "vc2", NoIPMI: true}, "redfish:vc2/vm0"},
		{"a Redfish-only BMC by UUID", Spec{VM: "42000000-0000-4000-8000-000000000001", NoIPMI: true}, "redfish:42000000-0000-4000-8000-000000000001"},
		{"a Redfish-only BMC's address is ignored", Spec{VM: "vm0", Address: "10.0.0.5:623", NoIPMI: true}, "redfish:vm0"},
		{"nothing but credentials", Spec{Username: "admin", Password: "password"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.spec.Key(); got != tc.want {
				t.Fatalf("Key() = %q, want %q", got, tc.want)
			}
		})
	}
}
