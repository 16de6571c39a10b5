package config

import (
	"strings"
	"testing"
)

// A vCenter URL without a path is completed with /sdk; any other path is
// refused at validation, naming the line, instead of failing later with
// "404 Not Found".
func TestVCenterURLPath(t *testing.T) {
	for _, tt := range []struct{ url, want, err string }{
		{"https://vc.example.com/sdk", "https://vc.example.com/sdk", ""},
		{"https://vc.example.com", "https://vc.example.com/sdk", ""},
		{"https://vc.example.com/", "https://vc.example.com/sdk", ""},
		{"https://vc.example.com:8443", "https://vc.example.com:8443/sdk", ""},
		{"https://vc.example.com/ui", "", `bridge.yaml:2: vcenter.url: path "/ui" is not the SDK endpoint: use https://vc.example.com/sdk`},
	} {
		doc := strings.Replace(good, "https://vcenter.example.com/sdk", tt.url, 1)
		cfg, err := Parse("bridge.yaml", []byte(doc), Env{})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v, want %q", tt.url, err, tt.err)
			}
			continue
		}
		if err != nil || cfg.VCenters[0].URL != tt.want {
			t.Errorf("%s: %v, URL %q, want %q", tt.url, err, cfg.VCenters[0].URL, tt.want)
		}
	}
}
