package openshift

import (
	"bytes"
	"net"
	"testing"
)

// FuzzRender feeds arbitrary VM names, MACs, passwords and Redfish system ids
// to both renderers. Whatever the input, they must not panic, must write
// nothing when they fail, and when they succeed must write YAML that parses,
// with valid Kubernetes names, the canonical MAC, the password intact and no
// string a YAML 1.1 reader would misread.
func FuzzRender(f *testing.F) {
	f.Add("skinner-master-0", "skinner-master-1", "00:50:56:8a:00:00", "password", "", true)
	f.Add("Skinner_Master_0", "skinner-master-0", "00-50-56-8A-00-00", "on", "", false)
	f.Add("vm.example.com", "VM.Example.Com.", "0050.568a.0000", "0123", "4213-abcd", true)
	f.Add("a..b", ".a.-b-.", "11:22:33:44:55:66", "a: b # c", "sys_1.~", false)
	f.Add("Ünïcode VM", "☃", "00:50:56:ff:fe:8a:00:00", "\x00\t\"'\\\n", "..", true)
	f.Add("---", "", "zz", "", "a/b", false)
	f.Add(string(bytes.Repeat([]byte("a"), 300)), string(bytes.Repeat([]byte("a."), 130)), "00:00:00:00:00:00", "\xff", "x", true)
	f.Fuzz(func(t *testing.T, name1, name2, mac, password, system string, uefi bool) {
		hosts := []Host{
			{Name: name1, BMCAddress: "192.168.86.168:623", Username: "admin", Password: password, BootMAC: mac, UEFI: uefi},
			{Name: name2, BMCAddress: "[fd00::1]:624", Username: "admin", Password: password, BootMAC: mac, RedfishSystem: system},
		}
		for _, r := range renderers {
			var buf bytes.Buffer
			if err := r.render(&buf, hosts, Options{}); err != nil {
				if buf.Len() != 0 {
					t.Fatalf("%s failed (%v) but wrote %q", r.name, err, buf.Bytes())
				}
				continue
			}
			checkRendered(t, r.name, hosts, buf.Bytes())
		}
	})
}

// checkName checks a rendered name against the VM name it came from.
func checkName(t *testing.T, vm, name string) {
	t.Helper()
	if !validSubdomain(name) {
		t.Errorf("name %q (from %q) is not a DNS-1123 subdomain", name, vm)
	}
	if kubeName(name) != name {
		t.Errorf("name %q (from %q) changes when sanitised again", name, vm)
	}
}

// checkRendered checks what the renderer wrote for hosts, which
// share a MAC and a password: every scalar plain, names valid, the MAC
// normalised and the password intact.
func checkRendered(t *testing.T, renderer string, hosts []Host, out []byte) {
	t.Helper()
	checkPlainScalars(t, out)
	mac, password := hosts[0].BootMAC, hosts[0].Password
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatalf("%s accepted MAC %q", renderer, mac)
	}
	docs := decodeAll(t, out)
	switch renderer {
	case "BareMetalHosts":
		if len(docs) != 4 {
			t.Fatalf("%d documents, want 4", len(docs))
		}
		for i, in := range hosts {
			secret, bmh := docs[2*i], docs[2*i+1]
			name, _ := get(bmh, "metadata", "name").(string)
			checkName(t, in.Name, name)
			if got := get(secret, "metadata", "name"); got != name+secretSuffix || !validSubdomain(name+secretSuffix) {
				t.Errorf("Secret name %q for host %q", got, name)
			}
			if got := get(bmh, "spec", "bootMACAddress"); got != hw.String() {
				t.Errorf("bootMACAddress %v, want %s", got, hw)
			}
			if got := b64(t, get(secret, "data", "password")); got != password {
				t.Errorf("password %q, want %q", got, password)
			}
		}
	case "InstallConfigHosts":
		list, _ := get(docs[0], "platform", "baremetal", "hosts").([]any)
		if len(docs) != 1 || len(list) != 2 {
			t.Fatalf("want one document with 2 hosts, got %q", out)
		}
		for i, in := range hosts {
			name, _ := get(list[i], "name").(string)
			checkName(t, in.Name, name)
			if got := get(list[i], "bootMACAddress"); got != hw.String() {
				t.Errorf("bootMACAddress %v, want %s", got, hw)
			}
			if got := get(list[i], "bmc", "password"); got != password {
				t.Errorf("password %q, want %q", got, password)
			}
		}
	}
}
