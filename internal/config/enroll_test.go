package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// enrollBase is a configuration whose BMCs come from rules alone.
const enrollBase = `vcenter:
  url: https://vcenter.example.com/sdk
  username: u
  password: p
enroll:
`

func TestEnrollRules(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("f.yaml", []byte(enrollBase+`  - folder: /DC0/vm/ocp
    addresses: [10.0.0.0/31, 10.0.1.5]
    ports: 6230-6231
    password: pw
  - name: "lab-*"
    ipmi: false
    passwordSecretFile: `+secret+`
    grace: 30s
  - tag: cluster/skinner/blue
    ports: "7000"
    usernameTemplate: "{{printf \"%.16s\" .Name}}"
    passwordTemplate: "pw-{{slice .UUID 0 8}}"
  - name: "d-*"
    ports: "7001"
    passwordSecretFile: `+secret+`
    passwordTemplate: "{{.Name}}-{{slice .Derived 0 8}}"
`), Env{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.BMCs) != 0 || len(cfg.Enroll) != 4 {
		t.Fatalf("bmcs %v, rules %d", cfg.BMCs, len(cfg.Enroll))
	}
	r := cfg.Enroll[0]
	want := []netip.Addr{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.5")}
	if r.VCenter != DefaultVCenterName || r.Folder != "/DC0/vm/ocp" || r.Ports != [2]int{6230, 6231} || len(r.Addresses) != 3 || r.Addresses[2] != want[2] || r.Grace != DefaultEnrollGrace || r.Username != "admin" {
		t.Fatalf("rule 0: %+v", r)
	}
	if r := cfg.Enroll[1]; !r.NoIPMI || string(r.PasswordSecret) != "0123456789abcdef0123" || r.Grace != 30*time.Second || r.Addresses != nil {
		t.Fatalf("rule 1: %+v", r)
	}
	r = cfg.Enroll[2]
	if r.Tag != (Tag{Category: "cluster", Name: "skinner/blue"}) || r.Ports != [2]int{7000, 7000} {
		t.Fatalf("rule 2: %+v", r)
	}
	d := CredentialData{Name: "a-very-long-vm-name-indeed", UUID: "4210abcd-0000"}
	if u, err := Credential(r.UsernameTemplate, d, 16); u != "a-very-long-vm-n" || err != nil {
		t.Errorf("username %q, %v", u, err)
	}
	if pw, err := Credential(r.PasswordTemplate, d, 20); pw != "pw-4210abcd" || err != nil {
		t.Errorf("password %q, %v", pw, err)
	}
	if _, err := Credential(r.PasswordTemplate, CredentialData{UUID: "short"}, 20); err == nil {
		t.Error("a template failing on a VM: no error")
	}
	r = cfg.Enroll[3]
	if pw, err := Credential(r.PasswordTemplate, CredentialData{Name: "d-1", Derived: "0123456789abcdefghij"}, 20); pw != "d-1-01234567" || err != nil || len(r.PasswordSecret) == 0 {
		t.Errorf("a template with the derived password: %q, %v", pw, err)
	}
	for _, tc := range []struct{ name, rule, want string }{
		{"matches everything unasked", "  - ports: 1-2\n    password: pw\n", "f.yaml:6: enroll[0].folder: missing: a rule matches by folder, name, tag or any of them together"},
		{"tag without category", "  - tag: skinner\n    ports: 1-2\n    password: pw\n", "f.yaml:6: enroll[0].tag: tag \"skinner\": give CATEGORY/NAME"},
		{"template and password", "  - name: x\n    ports: 1-2\n    password: pw\n    passwordTemplate: \"{{.Name}}\"\n", "f.yaml:8: enroll[0].password: give password or passwordTemplate, not both"},
		{"template of an unknown field", "  - name: x\n    ports: 1-2\n    passwordTemplate: \"{{.Secret}}\"\n", "f.yaml:8: enroll[0].passwordTemplate: is not a template of .Name, .UUID, .VCenter and .Derived (at 1:2; its text is not repeated"},
		{"template error hides its text", "  - name: x\n    ports: 1-2\n    passwordTemplate: \"{{slice \\\"hunter2\\\" 0 40}}\"\n", "f.yaml:8: enroll[0].passwordTemplate: is not a template"},
		{"template that does not parse", "  - name: x\n    ports: 1-2\n    password: pw\n    usernameTemplate: \"{{.Name\"\n", "enroll[0].usernameTemplate: is not a template"},
		{"folder not a path", "  - folder: ocp\n    ports: 1-2\n    password: pw\n", "f.yaml:6: enroll[0].folder: must be an inventory path"},
		{"bad glob", "  - name: \"[\"\n    ports: 1-2\n    password: pw\n", "f.yaml:6: enroll[0].name: is not a glob"},
		{"no ports", "  - name: x\n    password: pw\n", "enroll[0].ports: missing: a range such as 6230-6999"},
		{"reversed ports", "  - name: x\n    ports: 9-2\n    password: pw\n", "f.yaml:7: enroll[0].ports: must be a range"},
		{"ports past 65535", "  - name: x\n    ports: 65000-70000\n    password: pw\n", "enroll[0].ports: must be a range"},
		{"redfish-only with ports", "  - name: x\n    ipmi: false\n    ports: 1-2\n    password: pw\n", "f.yaml:8: enroll[0].ports: Redfish-only BMCs (ipmi: false) open no UDP port"},
		{"no password", "  - name: x\n    ports: 1-2\n", "enroll[0].password: missing: give password, passwordFile, passwordSecretFile (a password per VM) or passwordTemplate"},
		{"both passwords", "  - name: x\n    ports: 1-2\n    password: pw\n    passwordSecretFile: " + secret + "\n", "enroll[0].passwordSecretFile: give password (or passwordFile) or passwordSecretFile, not both"},
		{"unknown vcenter", "  - name: x\n    vcenter: prod\n    ports: 1-2\n    password: pw\n", `f.yaml:7: enroll[0].vcenter: "prod" is not a configured vCenter (default)`},
		{"console without concentrator", "  - name: x\n    ports: 1-2\n    password: pw\n    console: true\n", "enroll[0].console: needs console.address"},
		{"too many addresses", "  - name: x\n    ports: 1-2\n    password: pw\n    addresses: [10.0.0.0/8]\n", "enroll[0].addresses: more than 65536 addresses"},
		{"bad grace", "  - name: x\n    ports: 1-2\n    password: pw\n    grace: soon\n", "enroll[0].grace: must be a duration"},
		{"unknown key", "  - name: x\n    ports: 1-2\n    password: pw\n    tags: [a]\n", "enroll[0].tags: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(enrollBase+tc.rule), Env{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("err = %v, want %q (and no secret)", err, tc.want)
			}
		})
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("tiny"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("f.yaml", []byte(enrollBase+"  - name: x\n    ports: 1-2\n    passwordSecretFile: "+short+"\n"), Env{}); err == nil || !strings.Contains(err.Error(), "at least 16 bytes") {
		t.Fatalf("a short secret: %v", err)
	}
}
