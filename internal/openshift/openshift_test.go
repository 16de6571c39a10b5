package openshift

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// seedHosts is the README's simulated cluster as an OpenShift cluster at
// 192.168.86.168 reaches it: masters on 623-625, workers on 626-627.
func seedHosts() []Host {
	names := []string{"skinner-master-0", "skinner-master-1", "skinner-master-2", "skinner-worker-1", "skinner-worker-2"}
	hosts := make([]Host, len(names))
	for i, n := range names {
		hosts[i] = Host{
			Name:       n,
			BMCAddress: fmt.Sprintf("192.168.86.168:%d", 623+i),
			Username:   "admin",
			Password:   "password",
			BootMAC:    fmt.Sprintf("00:50:56:8a:00:%02x", i),
			UEFI:       true,
			Online:     true,
		}
	}
	return hosts
}

// seedRedfishHosts is the seed cluster behind the bridge's Redfish service,
// each VM known there by its name.
func seedRedfishHosts() []Host {
	hosts := seedHosts()
	for i := range hosts {
		hosts[i].RedfishSystem = hosts[i].Name
	}
	return hosts
}

var redfishOptions = Options{Protocol: ProtocolRedfishVirtualMedia, RedfishPort: 8443}

// seedSecureBootHosts is the Redfish seed cluster with secure boot on in a
// master (which the default control plane also takes) and a worker, and on
// in a BIOS worker too, where it cannot be and so changes nothing.
func seedSecureBootHosts() []Host {
	hosts := seedRedfishHosts()
	hosts[0].SecureBoot = true
	hosts[3].UEFI, hosts[3].SecureBoot = false, true
	hosts[4].SecureBoot = true
	return hosts
}

// Values of bmh's --control-plane flag: its default, a custom list given
// both ways the flag takes one, and none.
var (
	defaultControlPlane = []string{DefaultControlPlane}
	customControlPlane  = []string{"skinner-master-0,skinner-master-1", "*-worker-2"}
	noControlPlane      = []string{""}
)

func parseControlPlane(t testing.TB, flag []string) ControlPlane {
	t.Helper()
	cp, err := ParseControlPlane(flag)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// withControlPlane sets ControlPlane on the hosts the flag's values choose.
func withControlPlane(t testing.TB, hosts []Host, flag []string) []Host {
	t.Helper()
	cp := parseControlPlane(t, flag)
	out := append([]Host(nil), hosts...)
	for i := range out {
		out[i].ControlPlane = cp.Match(out[i].Name)
	}
	return out
}

type renderFunc func(io.Writer, []Host, Options) error

var renderers = []struct {
	name   string
	render renderFunc
}{
	{"BareMetalHosts", BareMetalHosts},
	{"InstallConfigHosts", InstallConfigHosts},
}

func render(t *testing.T, f renderFunc, hosts []Host, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f(&buf, hosts, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGolden renders the seed cluster as bmh does, control plane chosen by
// the --control-plane values given (the daemon matches them and sets
// Host.ControlPlane). install-config has no control plane to protect, so the
// flag changes nothing there.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		file         string
		render       renderFunc
		hosts        []Host
		opts         Options
		controlPlane []string
	}{
		{"baremetalhosts-ipmi.golden", BareMetalHosts, seedHosts(), Options{}, defaultControlPlane},
		{"baremetalhosts-redfish.golden", BareMetalHosts, seedRedfishHosts(), redfishOptions, defaultControlPlane},
		{"baremetalhosts-control-plane-custom.golden", BareMetalHosts, seedHosts(), Options{}, customControlPlane},
		{"baremetalhosts-control-plane-none.golden", BareMetalHosts, seedHosts(), Options{}, noControlPlane},
		{"baremetalhosts-secureboot.golden", BareMetalHosts, seedSecureBootHosts(), redfishOptions, defaultControlPlane},
		{"install-config-ipmi.golden", InstallConfigHosts, seedHosts(), Options{}, defaultControlPlane},
		{"install-config-redfish.golden", InstallConfigHosts, seedRedfishHosts(), redfishOptions, defaultControlPlane},
		{"install-config-secureboot.golden", InstallConfigHosts, seedSecureBootHosts(), redfishOptions, defaultControlPlane},
	} {
		t.Run(tc.file, func(t *testing.T) {
			marked := withControlPlane(t, tc.hosts, tc.controlPlane)
			got := render(t, tc.render, marked, tc.opts)
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (go test -run TestGolden -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
			}
			checkPlainScalars(t, got)
			// Same input, same bytes: nothing (map order, time) leaks in.
			if again := render(t, tc.render, marked, tc.opts); !bytes.Equal(again, got) {
				t.Error("a second rendering differs from the first")
			}
		})
	}
}

// decodeAll parses every document of a YAML stream.
func decodeAll(t testing.TB, data []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, data)
		}
		docs = append(docs, m)
	}
}

// get walks nested mappings; a missing key or a non-mapping yields nil.
func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func b64(t testing.TB, v any) string {
	t.Helper()
	s, _ := v.(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("secret value %q is not base64: %v", s, err)
	}
	return string(b)
}

// TestBareMetalHostsParse reads the output back and checks each field against
// the input, independently of the golden files.
func TestBareMetalHostsParse(t *testing.T) {
	hosts := withControlPlane(t, seedHosts(), defaultControlPlane)
	hosts[2].Online = false // a control-plane host stays online
	hosts[3].UEFI = false
	hosts[4].Online = false
	hosts[4].BootMAC = "00-50-56-8A-00-04" // any form ParseMAC takes
	hosts[4].Password = "on"               // a YAML 1.1 boolean if unquoted
	hosts = append(hosts,
		Host{Name: "Skinner_Redfish", BMCAddress: "bridge.example.com:623", Username: "admin", Password: "12345",
			BootMAC: "00:50:56:8a:00:05", UEFI: true, RedfishSystem: "4213-abcd"},
		Host{Name: "v6", BMCAddress: "[fd00::1]:6230", Username: "root", Password: "x", BootMAC: "11:22:33:44:55:66"},
	)
	opts := Options{Namespace: "bridged", RedfishPort: 8443}
	docs := decodeAll(t, render(t, BareMetalHosts, hosts, opts))
	if len(docs) != 2*len(hosts) {
		t.Fatalf("%d documents, want %d", len(docs), 2*len(hosts))
	}
	want := []bmhWant{
		{"skinner-master-0", "ipmi://192.168.86.168:623", "00:50:56:8a:00:00", "UEFI", true, false, true},
		{"skinner-master-1", "ipmi://192.168.86.168:624", "00:50:56:8a:00:01", "UEFI", true, false, true},
		{"skinner-master-2", "ipmi://192.168.86.168:625", "00:50:56:8a:00:02", "UEFI", true, false, true},
		{"skinner-worker-1", "ipmi://192.168.86.168:626", "00:50:56:8a:00:03", "legacy", true, false, false},
		{"skinner-worker-2", "ipmi://192.168.86.168:627", "00:50:56:8a:00:04", "UEFI", false, false, false},
		{"skinner-redfish", "redfish-virtualmedia://bridge.example.com:8443/redfish/v1/Systems/4213-abcd", "00:50:56:8a:00:05", "UEFI", false, true, false},
		{"v6", "ipmi://[fd00::1]:6230", "11:22:33:44:55:66", "legacy", false, false, false},
	}
	for i, w := range want {
		t.Run(w.name, func(t *testing.T) { checkBMH(t, docs[2*i], docs[2*i+1], w, hosts[i]) })
	}
}

// bmhWant is what a host's Secret and BareMetalHost should say.
type bmhWant struct {
	name, address, mac, bootMode   string
	online, insecure, controlPlane bool
}

// checkBMH checks the Secret and BareMetalHost rendered for in (in the
// namespace "bridged").
func checkBMH(t *testing.T, secret, bmh map[string]any, w bmhWant, in Host) {
	t.Helper()
	for _, c := range []struct {
		doc       map[string]any
		path      []string
		want      any
		wantIsSet bool
	}{
		{secret, []string{"apiVersion"}, "v1", true},
		{secret, []string{"kind"}, "Secret", true},
		{secret, []string{"type"}, "Opaque", true},
		{secret, []string{"metadata", "name"}, w.name + "-bmc-secret", true},
		{secret, []string{"metadata", "namespace"}, "bridged", true},
		{bmh, []string{"apiVersion"}, "metal3.io/v1alpha1", true},
		{bmh, []string{"kind"}, "BareMetalHost", true},
		{bmh, []string{"metadata", "name"}, w.name, true},
		{bmh, []string{"metadata", "namespace"}, "bridged", true},
		{bmh, []string{"spec", "online"}, w.online, true},
		{bmh, []string{"spec", "bootMACAddress"}, w.mac, true},
		{bmh, []string{"spec", "bootMode"}, w.bootMode, true},
		{bmh, []string{"spec", "bmc", "address"}, w.address, true},
		{bmh, []string{"spec", "bmc", "credentialsName"}, w.name + "-bmc-secret", true},
		{bmh, []string{"spec", "bmc", "disableCertificateVerification"}, true, w.insecure},
		{bmh, []string{"spec", "externallyProvisioned"}, true, w.controlPlane},
		{bmh, []string{"spec", "automatedCleaningMode"}, "disabled", w.controlPlane},
	} {
		got := get(c.doc, c.path...)
		if !c.wantIsSet {
			if got != nil {
				t.Errorf("%s = %v, want it absent", strings.Join(c.path, "."), got)
			}
			continue
		}
		if got != c.want {
			t.Errorf("%s = %#v, want %#v", strings.Join(c.path, "."), got, c.want)
		}
	}
	if u := b64(t, get(secret, "data", "username")); u != in.Username {
		t.Errorf("secret username %q, want %q", u, in.Username)
	}
	if p := b64(t, get(secret, "data", "password")); p != in.Password {
		t.Errorf("secret password %q, want %q", p, in.Password)
	}
}

func TestInstallConfigHostsParse(t *testing.T) {
	hosts := seedRedfishHosts()
	hosts[0].RedfishSystem = "" // an IPMI host among Redfish ones
	hosts[1].Role = RoleWorker  // given roles win over the name
	hosts[3].Role = RoleMaster
	hosts[4].Password = "0123" // YAML 1.1 reads 0123 as octal 83
	hosts[4].UEFI = false
	out := render(t, InstallConfigHosts, hosts, Options{RedfishPort: 8443, RedfishVerifyCertificate: true})
	docs := decodeAll(t, out)
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1", len(docs))
	}
	list, ok := get(docs[0], "platform", "baremetal", "hosts").([]any)
	if !ok || len(list) != len(hosts) {
		t.Fatalf("platform.baremetal.hosts = %#v, want a list of %d", get(docs[0], "platform", "baremetal", "hosts"), len(hosts))
	}
	wantRole := []string{"master", "worker", "master", "master", "worker"}
	for i, got := range list {
		h := hosts[i]
		address := "redfish-virtualmedia://192.168.86.168:8443/redfish/v1/Systems/" + h.Name
		if i == 0 {
			address = "ipmi://192.168.86.168:623"
		}
		bootMode := "UEFI"
		if !h.UEFI {
			bootMode = "legacy"
		}
		for key, want := range map[string]any{
			"name":           h.Name,
			"role":           wantRole[i],
			"bootMACAddress": h.BootMAC,
			"bootMode":       bootMode,
		} {
			if g := get(got, key); g != want {
				t.Errorf("hosts[%d].%s = %#v, want %#v", i, key, g, want)
			}
		}
		if want := map[string]any{"address": address, "username": "admin", "password": h.Password}; fmt.Sprint(get(got, "bmc")) != fmt.Sprint(want) {
			// RedfishVerifyCertificate: no disableCertificateVerification.
			t.Errorf("hosts[%d].bmc = %v, want %v", i, get(got, "bmc"), want)
		}
	}
	checkPlainScalars(t, out)
}

// TestKubeName pins the sanitising rules, including the cut that keeps the
// Secret's name within 253 characters.
func TestKubeName(t *testing.T) {
	long := strings.Repeat("a", 300)
	for _, tc := range []struct{ in, want string }{
		{"skinner-master-0", "skinner-master-0"},
		{"Skinner_Master_0", "skinner-master-0"},
		{"  web 01  ", "web-01"},
		{"vm.example.com", "vm.example.com"},
		{"a..b", "a.b"},
		{".a.-b-.", "a.b"},
		{"Ünïcode VM", "n-code-vm"},
		{"---", ""},
		{"☃", ""},
		{"", ""},
		{long, long[:maxNameLen]},
		{strings.Repeat("a", maxNameLen-1) + ".bbb", strings.Repeat("a", maxNameLen-1)},
		{strings.Repeat("a", maxNameLen-1) + "-bbb", strings.Repeat("a", maxNameLen-1)},
	} {
		got := kubeName(tc.in)
		if got != tc.want {
			t.Errorf("kubeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got != "" && !validSubdomain(got+secretSuffix) {
			t.Errorf("kubeName(%q) = %q: its Secret name is not a DNS-1123 subdomain", tc.in, got)
		}
	}
}

// errorCase is input the renderers refuse, and what their error says.
type errorCase struct {
	name  string
	hosts []Host
	opts  Options
	want  []string // substrings of the error
}

// errorCases are TestErrors' inputs; every host's password is secret.
func errorCases(secret string) []errorCase {
	good := func(name string, port int) Host {
		return Host{Name: name, BMCAddress: fmt.Sprintf("192.168.86.168:%d", port), Username: "admin", Password: secret, BootMAC: "00:50:56:8a:00:00"}
	}
	with := func(f func(*Host)) []Host {
		h := good("skinner-master-0", 623)
		f(&h)
		return []Host{h}
	}
	return []errorCase{
		{"no hosts", nil, Options{}, []string{"no hosts"}},
		{"unknown protocol", with(func(*Host) {}), Options{Protocol: "redfish"}, []string{`protocol "redfish" is unknown`}},
		{"redfish port", with(func(*Host) {}), Options{RedfishPort: 70000}, []string{"Redfish port 70000"}},
		{"empty name", with(func(h *Host) { h.Name = "" }), Options{}, []string{`hosts[0] ""`, "no letter or digit"}},
		{"name sanitises to empty", with(func(h *Host) { h.Name = "-☃-" }), Options{}, []string{`hosts[0] "-☃-"`, "no letter or digit"}},
		{"duplicate after sanitising", []Host{good("skinner-master-0", 623), good("Skinner_Master_0", 624)}, Options{},
			[]string{`hosts[1] "Skinner_Master_0": name "skinner-master-0" is already used by hosts[0] "skinner-master-0"`}},
		{"unknown role", with(func(h *Host) { h.Role = "infra" }), Options{}, []string{`role "infra" is unknown`}},
		{"no username", with(func(h *Host) { h.Username = "" }), Options{}, []string{"username is empty"}},
		{"username not UTF-8", with(func(h *Host) { h.Username = "adm\xffin" }), Options{}, []string{"username is not valid UTF-8"}},
		{"no password", with(func(h *Host) { h.Password = "" }), Options{}, []string{"password is empty"}},
		{"password not UTF-8", with(func(h *Host) { h.Password = secret + "\xff" }), Options{}, []string{"password is not valid UTF-8"}},
		{"no MAC", with(func(h *Host) { h.BootMAC = "" }), Options{}, []string{`boot MAC "" is not a MAC address`}},
		{"bad MAC", with(func(h *Host) { h.BootMAC = "00:50:56:8a:00:zz" }), Options{}, []string{`boot MAC "00:50:56:8a:00:zz" is not a MAC address`}},
		{"EUI-64 MAC", with(func(h *Host) { h.BootMAC = "00:50:56:ff:fe:8a:00:00" }), Options{}, []string{"not a 6-byte Ethernet MAC"}},
		{"no port", with(func(h *Host) { h.BMCAddress = "192.168.86.168" }), Options{}, []string{`BMC address "192.168.86.168" is not HOST:PORT`}},
		{"port 0", with(func(h *Host) { h.BMCAddress = "192.168.86.168:0" }), Options{}, []string{`port "0" is not a number in 1-65535`}},
		{"named port", with(func(h *Host) { h.BMCAddress = "192.168.86.168:ipmi" }), Options{}, []string{`port "ipmi"`}},
		{"bad host", with(func(h *Host) { h.BMCAddress = "bad host:623" }), Options{}, []string{`"bad host" is neither an IP address nor a DNS name`}},
		{"bad IPv4", with(func(h *Host) { h.BMCAddress = "192.168.86.300:623" }), Options{}, []string{`"192.168.86.300" is neither`}},
		{"IPv6 zone", with(func(h *Host) { h.BMCAddress = "[fe80::1%eth0]:623" }), Options{}, []string{`"fe80::1%eth0" is neither`}},
		{"redfish without system", with(func(*Host) {}), Options{Protocol: ProtocolRedfishVirtualMedia}, []string{"needs the host's Redfish system id"}},
		{"bad system id", with(func(h *Host) { h.RedfishSystem = "a/b" }), Options{}, []string{`Redfish system id "a/b"`}},
		{"dot system id", with(func(h *Host) { h.RedfishSystem = ".." }), Options{}, []string{`Redfish system id ".."`}},
		{"every problem at once", []Host{
			{Name: "a", BMCAddress: "h:1", Username: "u", Password: secret, BootMAC: "bad"},
			good("b", 2),
			{Name: "c", BMCAddress: "h", Username: "", Password: secret, BootMAC: "00:50:56:8a:00:00"},
			good("A", 3),
		}, Options{Namespace: "-"}, []string{
			`hosts[0] "a": boot MAC "bad"`, `hosts[2] "c": BMC address "h"`, `hosts[2] "c": username is empty`,
			`hosts[3] "A": name "a" is already used by hosts[0] "a"`,
		}},
	}
}

func TestErrors(t *testing.T) {
	const secret = "s3cr3t-Pa55" // must never appear in an error
	for _, tc := range errorCases(secret) {
		for _, r := range renderers {
			t.Run(tc.name+"/"+r.name, func(t *testing.T) {
				var buf bytes.Buffer
				err := r.render(&buf, tc.hosts, tc.opts)
				if err == nil {
					t.Fatalf("no error; wrote\n%s", buf.Bytes())
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals the password", err)
				}
				if buf.Len() != 0 {
					t.Errorf("wrote %d bytes despite the error", buf.Len())
				}
			})
		}
	}
}

// TestNamespace: only BareMetalHosts has a namespace, so only it rejects a
// bad one.
func TestNamespace(t *testing.T) {
	opts := Options{Namespace: "Machine_API"}
	var buf bytes.Buffer
	if err := BareMetalHosts(&buf, seedHosts(), opts); err == nil || !strings.Contains(err.Error(), `namespace "Machine_API" is not a valid`) {
		t.Errorf("BareMetalHosts: error %v, want the namespace's", err)
	}
	if buf.Len() != 0 {
		t.Errorf("BareMetalHosts wrote %d bytes despite the error", buf.Len())
	}
	if err := InstallConfigHosts(io.Discard, seedHosts(), opts); err != nil {
		t.Errorf("InstallConfigHosts: %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	for _, r := range renderers {
		if err := r.render(failingWriter{}, seedHosts(), Options{}); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%s: error %v, want the writer's", r.name, err)
		}
	}
}

var subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// validSubdomain is Kubernetes' IsDNS1123Subdomain.
func validSubdomain(s string) bool { return len(s) <= 253 && subdomain.MatchString(s) }

// yaml11Implicit are YAML 1.1's implicit scalar types other than str
// (yaml.org/type: bool, null, int, float, timestamp, merge, value), kept
// apart from plainSafe so that the test does not check the code against
// itself.
var yaml11Implicit = regexp.MustCompile(`^(?:` + strings.Join([]string{
	`y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF`,
	`~|null|Null|NULL|`,
	`[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+`,
	`[-+]?(?:[0-9][0-9_]*)?\.[0-9.]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)`,
	`[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*Z|[-+][0-9]{1,2}(?::[0-9]{2})?)?)?`,
	`<<|=`,
}, "|") + `)$`)

// checkPlainScalars fails when a string went out unquoted although a YAML 1.1
// reader would take it for something else.
func checkPlainScalars(t testing.TB, data []byte) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		var walk func(*yaml.Node)
		walk = func(n *yaml.Node) {
			// Booleans are meant, and YAML 1.1 reads true/false as such too.
			if n.Kind == yaml.ScalarNode && n.Style == 0 && n.Tag != "!!bool" && yaml11Implicit.MatchString(n.Value) {
				t.Errorf("line %d: %q is unquoted; YAML 1.1 does not read it as a string", n.Line, n.Value)
			}
			for _, c := range n.Content {
				walk(c)
			}
		}
		walk(&doc)
	}
}

func TestPlainScalars(t *testing.T) {
	for _, s := range []string{"on", "Off", "y", "NULL", "11:22:33:44:55:66", "0123", "1e3", "2024-01-02", ".inf", "<<", "=", "", "a: b", "#x", "- x", "YWRtaW4="} {
		checkPlainScalars(t, encodeScalar(t, s))
		if plainSafe(s) {
			t.Errorf("plainSafe(%q) = true", s)
		}
	}
	for _, s := range []string{"admin", "password", "UEFI", "legacy", "skinner-master-0", "metal3.io/v1alpha1", "openshift-machine-api"} {
		if !plainSafe(s) {
			t.Errorf("plainSafe(%q) = false; the output should stay readable", s)
		}
	}
}

func encodeScalar(t *testing.T, s string) []byte {
	var buf bytes.Buffer
	if err := encode(&buf, mapping("k", str(s))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBMCAddress checks the URL each form of address and protocol makes.
func TestBMCAddress(t *testing.T) {
	for _, tc := range []struct {
		address, system string
		opts            Options
		want            string
	}{
		{"192.168.86.168:623", "", Options{}, "ipmi://192.168.86.168:623"},
		{"192.168.86.168:0623", "", Options{Protocol: ProtocolIPMI}, "ipmi://192.168.86.168:623"},
		{"[fd00::1]:623", "", Options{}, "ipmi://[fd00::1]:623"},
		{"Bridge.Example.com.:623", "", Options{}, "ipmi://Bridge.Example.com.:623"},
		{"192.168.86.168:627", "vm-7", Options{}, "redfish-virtualmedia://192.168.86.168:627/redfish/v1/Systems/vm-7"},
		{"192.168.86.168:627", "vm-7", Options{RedfishPort: 443}, "redfish-virtualmedia://192.168.86.168:443/redfish/v1/Systems/vm-7"},
		{"[fd00::1]:627", "4213~a_b.c", redfishOptions, "redfish-virtualmedia://[fd00::1]:8443/redfish/v1/Systems/4213~a_b.c"},
	} {
		h := seedHosts()[:1]
		h[0].BMCAddress, h[0].RedfishSystem = tc.address, tc.system
		docs := decodeAll(t, render(t, BareMetalHosts, h, tc.opts))
		if got := get(docs[1], "spec", "bmc", "address"); got != tc.want {
			t.Errorf("%s, system %q, %+v: address %v, want %s", tc.address, tc.system, tc.opts, got, tc.want)
		}
	}
}

// TestMACForms checks that every form net.ParseMAC accepts for an EUI-48
// comes out as Metal3 compares it: lower-case with colons.
func TestMACForms(t *testing.T) {
	for _, in := range []string{"00:50:56:8A:00:0F", "00-50-56-8a-00-0f", "0050.568a.000f"} {
		h := seedHosts()[:1]
		h[0].BootMAC = in
		docs := decodeAll(t, render(t, BareMetalHosts, h, Options{}))
		if got := get(docs[1], "spec", "bootMACAddress"); got != "00:50:56:8a:00:0f" {
			t.Errorf("%s: bootMACAddress %v", in, got)
		}
	}
}

// TestBootMode: the firmware's boot mode, and its secure boot with UEFI,
// reach both renderers alike; secure boot is refused over IPMI, which
// Metal3 and the installer would refuse, and means nothing without UEFI.
func TestBootMode(t *testing.T) {
	for _, tc := range []struct {
		name             string
		uefi, secureBoot bool
		system           string // RedfishSystem; "" drives the host over IPMI
		want             string // bootMode, or a substring of the error
		wantErr          bool
	}{
		{"BIOS", false, false, "", "legacy", false},
		{"UEFI", true, false, "", "UEFI", false},
		{"UEFI, Redfish", true, false, "skinner-master-0", "UEFI", false},
		{"secure boot, Redfish", true, true, "skinner-master-0", "UEFISecureBoot", false},
		{"secure boot, IPMI", true, true, "", `hosts[0] "skinner-master-0": secure boot is on, and Metal3 takes bootMode UEFISecureBoot only with a Redfish BMC address`, true},
		{"secure boot without UEFI", false, true, "", "legacy", false},
	} {
		for _, r := range renderers {
			t.Run(tc.name+"/"+r.name, func(t *testing.T) {
				h := seedHosts()[:1]
				h[0].UEFI, h[0].SecureBoot, h[0].RedfishSystem = tc.uefi, tc.secureBoot, tc.system
				var buf bytes.Buffer
				err := r.render(&buf, h, Options{})
				if tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Errorf("error %v, want one containing %q", err, tc.want)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				docs := decodeAll(t, buf.Bytes())
				got := get(docs[len(docs)-1], "spec", "bootMode")
				if r.name == "InstallConfigHosts" {
					list, _ := get(docs[0], "platform", "baremetal", "hosts").([]any)
					got = get(list[0], "bootMode")
				}
				if got != tc.want {
					t.Errorf("bootMode %v, want %s", got, tc.want)
				}
			})
		}
	}
}
