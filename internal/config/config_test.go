package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `vcenter:
  url: https://vcenter.example.com/sdk
  username: administrator@vsphere.local
  password: secret
  insecure: true
bmcs:
  - vm: skinner-worker-2
    address: 0.0.0.0
    port: 627
    username: admin
    password: password
  - vm: /DC0/vm/skinner-worker-1
    port: 626
    password: other
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse("bridge.yaml", []byte(good), Env{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VCenters[0].URL != "https://vcenter.example.com/sdk" || cfg.VCenters[0].Password != "secret" || !cfg.VCenters[0].Insecure {
		t.Errorf("vcenter = %+v", cfg.VCenters)
	}
	if len(cfg.BMCs) != 2 {
		t.Fatalf("bmcs = %+v", cfg.BMCs)
	}
	b := cfg.BMCs[1]
	if b.Address != DefaultAddress || b.Username != DefaultUsername || b.Port != 626 || b.Where != "bridge.yaml:12" {
		t.Errorf("defaults not applied: %+v", b)
	}
	if cfg.BMCs[0].Endpoint() != "0.0.0.0:627" {
		t.Errorf("endpoint %s", cfg.BMCs[0].Endpoint())
	}
	if cfg.StateDir != DefaultStateDir || cfg.SoftOffTimeout != 0 || cfg.OneTimeBootHold != DefaultOneTimeBootHold {
		t.Errorf("defaults: stateDir %q softOffTimeout %v", cfg.StateDir, cfg.SoftOffTimeout)
	}
}

func TestSections(t *testing.T) {
	cert, key := writePair(t)
	cfg, err := Parse("f.yaml", []byte(good), Env{})
	if err != nil || cfg.MetricsAddress != DefaultMetricsAddress || cfg.Redfish.Address != DefaultRedfishAddress {
		t.Fatalf("defaults: %v %+v", err, cfg)
	}
	if cfg.IPMI.LockoutFailures != 5 || cfg.IPMI.LockoutDuration != 5*time.Minute || cfg.IPMI.SessionSetupRate != 100 {
		t.Fatalf("guard defaults: %+v", cfg.IPMI)
	}
	extra := `ipmi:
  sessionTimeout: 5m
  sessionLimit: 8
  lockoutFailures: 0
  lockoutWindow: 30s
  lockoutDuration: 1m
  sessionSetupRate: 2.5
metricsAddress: ""
redfish:
  address: 127.0.0.1:8443
  certFile: ` + cert + `
  keyFile: ` + key + `
media:
  datastore: iso-ds
  folder: images
`
	cfg, err = Parse("f.yaml", []byte(good+extra), Env{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IPMI.SessionTimeout.Minutes() != 5 || cfg.IPMI.SessionLimit != 8 || cfg.MetricsAddress != "" ||
		cfg.IPMI.LockoutFailures != 0 || cfg.IPMI.LockoutWindow.Seconds() != 30 || cfg.IPMI.LockoutDuration.Minutes() != 1 || cfg.IPMI.SessionSetupRate != 2.5 ||
		cfg.Redfish != (Redfish{Address: "127.0.0.1:8443", CertFile: cert, KeyFile: key}) || cfg.Media.Datastore != "iso-ds" || cfg.Media.Folder != "images" {
		t.Fatalf("%+v", cfg)
	}
}

func TestStateDirAndSoftOff(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(good), Env{StateDirectory: "/var/lib/systemd-given:/other"})
	if err != nil || cfg.StateDir != "/var/lib/systemd-given" {
		t.Fatalf("STATE_DIRECTORY: %v %q", err, cfg.StateDir)
	}
	cfg, err = Parse("f.yaml", []byte(good+"stateDir: /srv/bridge\nsoftOffTimeout: 2m\n"), Env{StateDirectory: "/ignored"})
	if err != nil || cfg.StateDir != "/srv/bridge" || cfg.SoftOffTimeout.Minutes() != 2 {
		t.Fatalf("explicit: %v %q %v", err, cfg.StateDir, cfg.SoftOffTimeout)
	}
}

func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noPassword := strings.Replace(good, "  password: secret\n", "", 1)
	t.Run("file", func(t *testing.T) {
		cfg, err := Parse("f.yaml", []byte(strings.Replace(good, "password: secret", "passwordFile: "+pw, 1)), Env{Password: "env"})
		if err != nil || cfg.VCenters[0].Password != "from-file" {
			t.Fatalf("%v %q", err, cfg.VCenters[0].Password)
		}
	})
	t.Run("env", func(t *testing.T) {
		cfg, err := Parse("f.yaml", []byte(noPassword), Env{Password: "from-env"})
		if err != nil || cfg.VCenters[0].Password != "from-env" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("bmc file", func(t *testing.T) {
		cfg, err := Parse("f.yaml", []byte(strings.Replace(good, "password: other", "passwordFile: "+pw, 1)), Env{})
		if err != nil || cfg.BMCs[1].Password != "from-file" {
			t.Fatalf("%v", err)
		}
	})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  string
		want string
	}{
		{"unknown top key", good + "extra: 1\n", "", "f.yaml:15: extra: unknown key"},
		{"misspelt key", strings.Replace(good, "    port: 626", "    prot: 626", 1), "", "f.yaml:13: bmcs[1].prot: unknown key"},
		{"port out of range", strings.Replace(good, "port: 627", "port: 70000", 1), "", "f.yaml:9: bmcs[0].port: must be a whole number from 1 to 65535"},
		{"port not a number", strings.Replace(good, "port: 627", "port: six", 1), "", "f.yaml:9: bmcs[0].port: must be a whole number"},
		{"missing port", strings.Replace(good, "    port: 626\n", "", 1), "", "f.yaml:12: bmcs[1].port: missing"},
		{"missing vm", strings.Replace(good, "  - vm: skinner-worker-2\n    address", "  - address", 1), "", "f.yaml:7: bmcs[0].vm: missing"},
		{"duplicate endpoint", strings.Replace(good, "port: 626", "port: 627\n    address: 0.0.0.0", 1), "", "bmcs[1].port: 0.0.0.0:627 is already used at f.yaml:7"},
		{"bad address", strings.Replace(good, "address: 0.0.0.0", "address: example.com", 1), "", "f.yaml:8: bmcs[0].address: must be an IP address"},
		{"missing password", strings.Replace(good, "    password: other\n", "", 1), "", "f.yaml:12: bmcs[1].password: missing"},
		{"long password", strings.Replace(good, "password: other", "password: 012345678901234567890", 1), "", "bmcs[1].password: longer than 20 bytes"},
		{"vcenter password missing", strings.Replace(good, "  password: secret\n", "", 1), "", "f.yaml:2: vcenter.password: missing"},
		{"both password forms", strings.Replace(good, "password: secret", "password: secret\n  passwordFile: /x", 1), "", "vcenter.passwordFile: give password or passwordFile, not both"},
		{"missing password file", strings.Replace(good, "password: secret", "passwordFile: /nonexistent/pw", 1), "", "f.yaml:4: vcenter.passwordFile: no such file or directory: /nonexistent/pw"},
		{"url with credentials", strings.Replace(good, "https://vcenter", "https://u:p@vcenter", 1), "", "vcenter.url: must not contain credentials"},
		{"url not https", strings.Replace(good, "https://vcenter.example.com/sdk", "vcenter.example.com", 1), "", "f.yaml:2: vcenter.url: must be an https URL"},
		{"insecure not bool", strings.Replace(good, "insecure: true", "insecure: maybe", 1), "", "f.yaml:5: vcenter.insecure: must be true or false"},
		{"bmcs not a list", "vcenter:\n  url: https://v/sdk\n  username: u\n  password: p\nbmcs: 3\n", "", "f.yaml:5: bmcs: must be a list"},
		{"no vcenter", "bmcs: []\n", "", "f.yaml:1: vcenter: missing"},
		{"empty", "", "", "f.yaml:1: empty file"},
		{"not yaml", "vcenter: [\n", "", "f.yaml: yaml:"},
		{"bad boot hold", good + "oneTimeBootHold: 1 minute\n", "", "f.yaml:15: oneTimeBootHold: must be a duration"},
		{"bad soft-off timeout", good + "softOffTimeout: soon\n", "", "f.yaml:15: softOffTimeout: must be a duration"},
		{"negative soft-off timeout", good + "softOffTimeout: -1s\n", "", "f.yaml:15: softOffTimeout: must be a duration"},
		{"stateDir not a string", good + "stateDir: [a]\n", "", "f.yaml:15: stateDir: must be a string"},
		{"session limit", good + "ipmi:\n  sessionLimit: 0\n", "", "f.yaml:16: ipmi.sessionLimit: must be a whole number from 1 to 63"},
		{"session timeout", good + "ipmi:\n  sessionTimeout: forever\n", "", "f.yaml:16: ipmi.sessionTimeout: must be a duration"},
		{"unknown ipmi key", good + "ipmi:\n  lockout: 3\n", "", "f.yaml:16: ipmi.lockout: unknown key"},
		{"bad lockout", good + "ipmi:\n  lockoutFailures: -1\n", "", "f.yaml:16: ipmi.lockoutFailures: must be a whole number"},
		{"bad rate", good + "ipmi:\n  sessionSetupRate: fast\n", "", "f.yaml:16: ipmi.sessionSetupRate: must be a number"},
		{"cert without key", good + "redfish:\n  certFile: /c.pem\n", "", "f.yaml:16: redfish: give both certFile and keyFile"},
		{"bad metrics address", good + "metricsAddress: 9623\n", "", "f.yaml:15: metricsAddress: must be host:port, or empty to turn metrics off"},
		{"bad redfish address", good + "redfish:\n  address: 8000\n", "", "f.yaml:16: redfish.address: must be host:port, or empty to turn Redfish off"},
		{"redfish key file not a string", good + "redfish:\n  keyFile: [k]\n", "", "f.yaml:16: redfish.keyFile: must be a string"},
		{"duplicate key", strings.Replace(good, "  insecure: true", "  insecure: true\n  insecure: false", 1), "", "vcenter.insecure"},
		{"login failures zero", strings.Replace(good, "  insecure: true", "  insecure: true\n  loginFailures: 0", 1), "", "f.yaml:6: vcenter.loginFailures: must be a whole number from 1 to 4"},
		{"login failures past lockout", strings.Replace(good, "  insecure: true", "  insecure: true\n  loginFailures: 5", 1), "", "f.yaml:6: vcenter.loginFailures: must be a whole number from 1 to 4"},
		{"login window short", strings.Replace(good, "  insecure: true", "  insecure: true\n  loginWindow: 1m", 1), "", "f.yaml:6: vcenter.loginWindow: must be at least 5m"},
		{"login window not a duration", strings.Replace(good, "  insecure: true", "  insecure: true\n  loginWindow: often", 1), "", "f.yaml:6: vcenter.loginWindow: must be a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.yaml), Env{Password: tt.env})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			for _, secret := range []string{"secret", "other", "from-env"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error shows a password: %v", err)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml")); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("vcenter: {}\nbmcs: [{}]\n"))
	f.Add([]byte("bmcs:\n  - port: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, Env{})
		if err == nil && (cfg.VCenters[0].URL == "" || cfg.VCenters[0].Password == "") {
			t.Fatalf("accepted a config without vcenter url or password")
		}
	})
}

// TestDuplicateVM: a second entry for a VM is an error naming its file,
// line and key, unless that entry sets allowDuplicate.
func TestDuplicateVM(t *testing.T) {
	dup := good + "  - vm: skinner-worker-2\n    port: 628\n    password: other\n"
	_, err := Parse("f.yaml", []byte(dup), Env{})
	want := "f.yaml:15: bmcs[2].vm: skinner-worker-2 already has a BMC at f.yaml:7; set allowDuplicate: true"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	cfg, err := Parse("f.yaml", []byte(dup+"    allowDuplicate: true\n"), Env{})
	if err != nil || len(cfg.BMCs) != 3 || !cfg.BMCs[2].AllowDuplicate || cfg.BMCs[0].AllowDuplicate {
		t.Fatalf("allowDuplicate: %v %+v", err, cfg)
	}
	if _, err := Parse("f.yaml", []byte(dup+"    allowDuplicate: yes please\n"), Env{}); err == nil || !strings.Contains(err.Error(), "f.yaml:18: bmcs[2].allowDuplicate: must be true or false") {
		t.Fatalf("bad allowDuplicate: %v", err)
	}
}

func TestLoginCap(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(good), Env{})
	if err != nil || cfg.VCenters[0].LoginFailures != DefaultLoginFailures || cfg.VCenters[0].LoginWindow != DefaultLoginWindow {
		t.Fatalf("defaults: %v %+v", err, cfg.VCenters)
	}
	cfg, err = Parse("f.yaml", []byte(strings.Replace(good, "  insecure: true", "  insecure: true\n  loginFailures: 2\n  loginWindow: 30m", 1)), Env{})
	if err != nil || cfg.VCenters[0].LoginFailures != 2 || cfg.VCenters[0].LoginWindow.Minutes() != 30 {
		t.Fatalf("set: %v %+v", err, cfg.VCenters)
	}
}

// TestSOLPort: bmcs[].solPort is a port, and an error names its line.
func TestSOLPort(t *testing.T) {
	extra := good + "  - vm: skinner-worker-3\n    port: 628\n    password: other\n"
	for _, tc := range []struct {
		line, want string
		port       int
	}{
		{"", "", 0},
		{"    solPort: 16230\n", "", 16230},
		{"    solPort: 0\n", "f.yaml:18: bmcs[2].solPort: must be a whole number from 1 to 65535", 0},
		{"    solPort: 70000\n", "f.yaml:18: bmcs[2].solPort: must be a whole number from 1 to 65535", 0},
		{"    solPort: \"623\"\n", "f.yaml:18: bmcs[2].solPort: must be a whole number from 1 to 65535", 0},
	} {
		cfg, err := Parse("f.yaml", []byte(extra+tc.line), Env{})
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: err = %v, want %q", tc.line, err, tc.want)
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.want == "" && cfg.BMCs[2].SOLPort != tc.port:
			t.Errorf("%q: SOLPort %d, want %d", tc.line, cfg.BMCs[2].SOLPort, tc.port)
		}
	}
}

// ipmi: false makes a Redfish-only BMC (no address or port), redfish:
// false an IPMI-only one; every mistake names its line and key.
func TestProtocols(t *testing.T) {
	const vm = "  - vm: skinner-worker-3\n    password: other\n"
	for _, tc := range []struct {
		name, yaml, want  string
		noIPMI, noRedfish bool
	}{
		{"redfish only", vm + "    ipmi: false\n", "", true, false},
		{"ipmi only", vm + "    port: 628\n    redfish: false\n", "", false, true},
		{"both on", vm + "    port: 628\n    ipmi: true\n    redfish: true\n", "", false, false},
		{"neither", vm + "    ipmi: false\n    redfish: false\n", "f.yaml:17: bmcs[2].ipmi: ipmi and redfish are both false", false, false},
		{"redfish only with a port", vm + "    ipmi: false\n    port: 628\n", "f.yaml:18: bmcs[2].port: a Redfish-only BMC (ipmi: false) opens no UDP port: remove port", false, false},
		{"redfish only with an address", vm + "    ipmi: false\n    address: 127.0.0.1\n", "f.yaml:18: bmcs[2].address: a Redfish-only BMC", false, false},
		{"redfish only with solPort", vm + "    ipmi: false\n    solPort: 16230\n", "f.yaml:18: bmcs[2].solPort: a Redfish-only BMC", false, false},
		{"not a bool", vm + "    port: 628\n    redfish: no way\n", "f.yaml:18: bmcs[2].redfish: must be true or false", false, false},
		{"two redfish-only BMCs of a VM", vm + "    ipmi: false\n" + vm + "    ipmi: false\n    allowDuplicate: true\n", "bmcs[3].ipmi: skinner-worker-3 already has a Redfish-only BMC (a VM is one Redfish system) at f.yaml:15", false, false},
		{"redfish off", "redfish:\n  address: \"\"\n" + vm + "    ipmi: false\n", "bmcs[2].ipmi: a Redfish-only BMC needs redfish.address", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := good + tc.yaml
			if strings.HasPrefix(tc.yaml, "redfish:") {
				// the redfish section goes before bmcs
				doc = strings.Replace(good, "bmcs:\n", tc.yaml[:strings.Index(tc.yaml, "  - vm")]+"bmcs:\n", 1) + vm + "    ipmi: false\n"
			}
			cfg, err := Parse("f.yaml", []byte(doc), Env{})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := cfg.BMCs[2]
			if b.NoIPMI != tc.noIPMI || b.NoRedfish != tc.noRedfish || (b.NoIPMI && (b.Address != "" || b.Port != 0 || b.Endpoint() != "")) {
				t.Fatalf("BMC %+v", b)
			}
		})
	}
}
