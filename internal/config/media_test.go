package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMediaDefaults(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(good), Env{})
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Media
	if m.MaxImageSize != 16<<30 || m.StallTimeout != time.Minute || m.VerifyCertificate || m.CAFile != "" ||
		m.AllowedNetworks != nil || m.GCGrace != time.Hour || m.MaxFolderSize != 0 {
		t.Fatalf("defaults %+v", m)
	}
}

func TestMediaSettings(t *testing.T) {
	ca, _ := writePair(t)
	cfg, err := Parse("f.yaml", []byte(good+`media:
  maxImageSize: 8GiB
  maxFolderSize: 100GB
  stallTimeout: 1s
  verifyCertificate: true
  caFile: `+ca+`
  allowedNetworks: [192.0.2.0/24, "2001:db8::/32", 198.51.100.7]
  gcGrace: 0s
`), Env{})
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Media
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.7/32")}
	if m.MaxImageSize != 8<<30 || m.MaxFolderSize != 100e9 || m.StallTimeout != time.Second || !m.VerifyCertificate ||
		m.CAFile != ca || !slices.Equal(m.AllowedNetworks, want) || m.GCGrace >= 0 {
		t.Fatalf("%+v", m)
	}
}

func TestMediaErrors(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"media:\n  maxImageSize: huge\n", "f.yaml:16: media.maxImageSize: must be a size such as 16GiB"},
		{"media:\n  maxImageSize: 1KiB\n", "f.yaml:16: media.maxImageSize: must be at least 1MiB"},
		{"media:\n  maxFolderSize: -5\n", "f.yaml:16: media.maxFolderSize: must be a size"},
		{"media:\n  stallTimeout: 10ms\n", "f.yaml:16: media.stallTimeout: must be at least 1s"},
		{"media:\n  stallTimeout: never\n", "f.yaml:16: media.stallTimeout: must be a duration"},
		{"media:\n  verifyCertificate: yes please\n", "f.yaml:16: media.verifyCertificate: must be true or false"},
		{"media:\n  caFile: /nonexistent/ca.pem\n", "f.yaml:16: media.caFile: open /nonexistent/ca.pem"},
		{"media:\n  allowedNetworks: 10.0.0.0/8\n", "f.yaml:16: media.allowedNetworks: must be a list of CIDRs"},
		{"media:\n  allowedNetworks:\n    - 10.0.0.0/8\n    - intranet\n", "f.yaml:18: media.allowedNetworks[1]: \"intranet\" is not a CIDR"},
		{"media:\n  allowedNetworks: [10.1.2.3/8]\n", "f.yaml:16: media.allowedNetworks[0]: \"10.1.2.3/8\" has host bits set; did you mean 10.0.0.0/8?"},
		{"media:\n  gcGrace: later\n", "f.yaml:16: media.gcGrace: must be a duration"},
		{"media:\n  verify: true\n", "f.yaml:16: media.verify: unknown key"},
	} {
		_, err := Parse("f.yaml", []byte(good+tt.yaml), Env{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
