package config

import (
	"strings"
	"testing"
)

// two is a configuration with two vCenters and a BMC in each.
const two = `vcenters:
  - name: lab
    url: https://lab.example.com/sdk
    username: u
    password: p1
  - name: prod-2
    url: https://prod.example.com
    username: u
    passwordFile: /nonexistent
bmcs:
  - vm: a
    vcenter: lab
    port: 623
    password: pw
  - vm: a
    vcenter: prod-2
    port: 624
    password: pw
`

func TestVCenters(t *testing.T) {
	good2 := strings.Replace(two, "passwordFile: /nonexistent", "password: p2", 1)
	cfg, err := Parse("f.yaml", []byte(good2), Env{Password: "from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.VCenters) != 2 || cfg.VCenters[0].Name != "lab" || cfg.VCenters[1].URL != "https://prod.example.com/sdk" || cfg.VCenters[1].Password != "p2" {
		t.Fatalf("vcenters %+v", cfg.VCenters)
	}
	if cfg.BMCs[0].VCenter != "lab" || cfg.BMCs[1].VCenter != "prod-2" {
		t.Fatalf("a VM of the same name in each vCenter: %+v", cfg.BMCs)
	}
	single, err := Parse("f.yaml", []byte(good), Env{})
	if err != nil || single.VCenters[0].Name != DefaultVCenterName || single.BMCs[0].VCenter != DefaultVCenterName {
		t.Fatalf("single vcenter section: %v %+v %+v", err, single.VCenters, single.BMCs)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"both forms", good + strings.Replace(two, "bmcs:\n", "x:\n", 1)[:strings.Index(two, "bmcs:")], "vcenters: give vcenter (one) or vcenters (a list), not both"},
		{"no name", strings.Replace(good2, "  - name: lab\n    url", "  - url", 1), "f.yaml:2: vcenters[0].name: missing"},
		{"bad name", strings.Replace(good2, "name: lab", "name: lab/1", 1), "f.yaml:2: vcenters[0].name: must be 1 to 63 letters"},
		{"same name", strings.Replace(good2, "name: prod-2", "name: lab", 1), `f.yaml:6: vcenters[1].name: "lab" is already the name of the vCenter at f.yaml:2`},
		{"bmc names none", strings.Replace(good2, "    vcenter: lab\n", "", 1), "f.yaml:11: bmcs[0].vcenter: missing: with several vCenters each entry names its own (one of lab, prod-2)"},
		{"bmc names an unknown one", strings.Replace(good2, "vcenter: lab", "vcenter: staging", 1), `f.yaml:12: bmcs[0].vcenter: "staging" is not a configured vCenter (lab, prod-2)`},
		{"env password for a list", strings.Replace(good2, "    password: p1\n", "", 1), "vcenters[0].password: missing: give password or passwordFile (IPMI_VMWARE_BRIDGE_VCENTER_PASSWORD serves a single vcenter section only)"},
		{"password file", two, "f.yaml:9: vcenters[1].passwordFile"},
		{"bad url", strings.Replace(good2, "https://lab.example.com/sdk", "lab", 1), "f.yaml:3: vcenters[0].url: must be an https URL"},
		{"empty list", "vcenters: []\nbmcs: []\n", "f.yaml:1: vcenters: must be a list of vCenters"},
		{"duplicate BMC of a VM", strings.Replace(good2, "vcenter: prod-2", "vcenter: lab", 1), "bmcs[1].vm: a already has a BMC at f.yaml:11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.yaml), Env{Password: "from-env"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
