package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console"
)

// consoleBMC is good with its second BMC offering the console (line 15).
const consoleBMC = good + "    console: true\n"

func TestConsoleSection(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       Console
	}{
		{"absent: off, the package's buffer", good, Console{BufferSize: int64(console.DefaultConfig.BufferSize), LogMaxBytes: 16 << 20, LogKeep: 3}},
		{"address only", good + "console:\n  address: 10.0.0.5:13370\n",
			Console{Address: "10.0.0.5:13370", BufferSize: 256 << 10, LogMaxBytes: 16 << 20, LogKeep: 3}},
		{"every key", consoleBMC + "console:\n  address: 0.0.0.0:2300\n  uri: telnet://bridge.example.com:2300\n  bufferSize: 1MiB\n  log: true\n  logMaxBytes: 100KiB\n  logKeep: 0\n",
			Console{Address: "0.0.0.0:2300", URI: "telnet://bridge.example.com:2300", BufferSize: 1 << 20, Log: true, LogMaxBytes: 100 << 10}},
		{"telnets behind a TLS proxy", good + "console:\n  address: 127.0.0.1:2300\n  uri: telnets://vspc.example.com:8023\n",
			Console{Address: "127.0.0.1:2300", URI: "telnets://vspc.example.com:8023", BufferSize: 256 << 10, LogMaxBytes: 16 << 20, LogKeep: 3}},
		{"empty address: off", good + "console:\n  address: \"\"\n", Console{BufferSize: 256 << 10, LogMaxBytes: 16 << 20, LogKeep: 3}},
		{"allowed sources", good + "console:\n  address: 127.0.0.1:2300\n  allowedSources: [10.1.0.0/16, 192.0.2.7]\n",
			Console{Address: "127.0.0.1:2300", BufferSize: 256 << 10, LogMaxBytes: 16 << 20, LogKeep: 3,
				AllowedSources: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.0.2.7/32")}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("f.yaml", []byte(tt.yaml), Env{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Console, tt.want) {
				t.Fatalf("console = %+v, want %+v", cfg.Console, tt.want)
			}
			if cfg.BMCs[0].Console || cfg.BMCs[1].Console != strings.HasPrefix(tt.yaml, consoleBMC) {
				t.Fatalf("bmcs' console: %+v", cfg.BMCs)
			}
		})
	}
}

// Console errors name the file, the line and the key.
func TestConsoleErrors(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"bmc console without concentrator", consoleBMC, "f.yaml:15: bmcs[1].console: needs console.address"},
		{"bmc console not a bool", good + "    console: on please\n", "f.yaml:15: bmcs[1].console: must be true or false"},
		{"unknown key", good + "console:\n  port: 1\n", "f.yaml:16: console.port: unknown key"},
		{"not a mapping", good + "console: 127.0.0.1:1\n", "f.yaml:15: console: must be a mapping"},
		{"bad address", good + "console:\n  address: 13370\n", "f.yaml:16: console.address: must be host:port, or empty to turn the console concentrator off"},
		{"every address, no uri", good + "console:\n  address: 0.0.0.0:13370\n", "f.yaml:16: console.uri: missing: console.address 0.0.0.0:13370 listens on every address, so say which one the ESXi hosts connect to, e.g. telnet://bridge.example.com:13370"},
		{"no host, no uri", good + "console:\n  address: \":13370\"\n", "console.uri: missing"},
		{"uri not telnet", good + "console:\n  address: 127.0.0.1:1\n  uri: http://h:1\n", "f.yaml:17: console.uri: must be telnet://HOST:PORT"},
		{"uri without port", good + "console:\n  address: 127.0.0.1:1\n  uri: telnet://h\n", "f.yaml:17: console.uri: must be telnet://HOST:PORT"},
		{"buffer too small", good + "console:\n  bufferSize: 1KiB\n", "f.yaml:16: console.bufferSize: must be from 4KiB to 64MiB"},
		{"buffer not a size", good + "console:\n  bufferSize: lots\n", "f.yaml:16: console.bufferSize: must be a size"},
		{"log not a bool", good + "console:\n  log: yes please\n", "f.yaml:16: console.log: must be true or false"},
		{"log size too small", good + "console:\n  logMaxBytes: 1KiB\n", "f.yaml:16: console.logMaxBytes: must be at least 64KiB"},
		{"log keep negative", good + "console:\n  logKeep: -1\n", "f.yaml:16: console.logKeep: must be a whole number from 0 to 100"},
		{"source not a CIDR", good + "console:\n  allowedSources: [esxi-1]\n", "f.yaml:16: console.allowedSources[0]: \"esxi-1\" is not a CIDR"},
		{"sources not a list", good + "console:\n  allowedSources: 10.0.0.0/8\n", "f.yaml:16: console.allowedSources: must be a list of CIDRs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.yaml), Env{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
