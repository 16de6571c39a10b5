package config

import (
	"strings"
	"testing"
)

func TestBootFollowEFIBit(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(good), Env{})
	if err != nil || cfg.Boot.FollowEFIBit != "persistent" {
		t.Fatalf("default: %v %+v", err, cfg.Boot)
	}
	for _, v := range FollowEFIBits {
		cfg, err := Parse("f.yaml", []byte(good+"boot:\n  followEfiBit: "+v+"\n"), Env{})
		if err != nil || cfg.Boot.FollowEFIBit != v {
			t.Fatalf("%s: %v %+v", v, err, cfg.Boot)
		}
	}
	if cfg, err := Parse("f.yaml", []byte(good+"boot: {}\n"), Env{}); err != nil || cfg.Boot.FollowEFIBit != "persistent" {
		t.Fatalf("empty boot section: %v %+v", err, cfg)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"bad value", "boot:\n  followEfiBit: once\n", "f.yaml:16: boot.followEfiBit: must be one of persistent, always, never"},
		{"bool", "boot:\n  followEfiBit: true\n", "f.yaml:16: boot.followEfiBit: must be one of"},
		{"list", "boot:\n  followEfiBit: [always]\n", "f.yaml:16: boot.followEfiBit: must be one of"},
		{"misspelt key", "boot:\n  followEFIBit: always\n", "f.yaml:16: boot.followEFIBit: unknown key (known: followEfiBit)"},
		{"not a mapping", "boot: always\n", "f.yaml:15: boot: must be a mapping"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(good+tt.yaml), Env{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
