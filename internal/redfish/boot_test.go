package redfish

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// TestPatchBoot replays the PATCHes Ironic sends (set_boot_device sends the
// target, and Enabled only when it differs; set_boot_mode sends the mode
// alone) and checks the override the machine gets and what GET shows.
func TestPatchBoot(t *testing.T) {
	uefiNone := machine.BootOverride{Mode: machine.BootModeUEFI}
	tests := []struct {
		name     string
		from     machine.BootOverride
		firmware machine.BootMode
		body     string
		want     machine.BootOverride // what SetBootOverride got
		view     [3]string            // Target, Enabled, Mode read back
	}{
		{"Cd once (deploy)", uefiNone, 0, `{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once"}}`,
			machine.BootOverride{Enabled: true, Device: machine.BootCD, Mode: machine.BootModeUEFI}, [3]string{"Cd", "Once", "UEFI"}},
		{"Hdd continuous (after deploy)", machine.BootOverride{Enabled: true, Device: machine.BootCD}, 0,
			`{"Boot":{"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Continuous"}}`,
			machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeUEFI}, [3]string{"Hdd", "Continuous", "UEFI"}},
		{"target alone keeps Continuous", machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE}, 0,
			`{"Boot":{"BootSourceOverrideTarget":"Cd"}}`,
			machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootCD, Mode: machine.BootModeUEFI}, [3]string{"Cd", "Continuous", "UEFI"}},
		{"target alone while disabled stays disabled", uefiNone, 0, `{"Boot":{"BootSourceOverrideTarget":"Pxe"}}`,
			machine.BootOverride{Mode: machine.BootModeUEFI}, [3]string{"None", "Disabled", "UEFI"}},
		{"enabled alone while none", uefiNone, 0, `{"Boot":{"BootSourceOverrideEnabled":"Once"}}`,
			machine.BootOverride{Mode: machine.BootModeUEFI}, [3]string{"None", "Disabled", "UEFI"}},
		{"disable", machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE}, 0,
			`{"Boot":{"BootSourceOverrideEnabled":"Disabled"}}`,
			machine.BootOverride{Mode: machine.BootModeUEFI}, [3]string{"None", "Disabled", "UEFI"}},
		{"target None", machine.BootOverride{Enabled: true, Device: machine.BootPXE}, 0,
			`{"Boot":{"BootSourceOverrideTarget":"None"}}`,
			machine.BootOverride{Mode: machine.BootModeUEFI}, [3]string{"None", "Disabled", "UEFI"}},
		{"BIOS setup once", uefiNone, 0, `{"Boot":{"BootSourceOverrideTarget":"BiosSetup","BootSourceOverrideEnabled":"Once"}}`,
			machine.BootOverride{Enabled: true, Device: machine.BootBIOSSetup, Mode: machine.BootModeUEFI}, [3]string{"BiosSetup", "Once", "UEFI"}},
		{"mode alone changes firmware only", uefiNone, machine.BootModeUEFI, `{"Boot":{"BootSourceOverrideMode":"Legacy"}}`,
			machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootNone, Mode: machine.BootModeLegacy}, [3]string{"None", "Disabled", "Legacy"}},
		{"mode alone, unchanged", uefiNone, machine.BootModeUEFI, `{"Boot":{"BootSourceOverrideMode":"UEFI"}}`,
			machine.BootOverride{Mode: machine.BootModeUEFI}, [3]string{"None", "Disabled", "UEFI"}},
		{"mode with an override in force", machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE}, machine.BootModeUEFI,
			`{"Boot":{"BootSourceOverrideMode":"Legacy"}}`,
			machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}, [3]string{"Pxe", "Continuous", "Legacy"}},
		{"all three", uefiNone, machine.BootModeLegacy,
			`{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"UEFI"}}`,
			machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeUEFI}, [3]string{"Pxe", "Continuous", "UEFI"}},
		{"annotations ignored", uefiNone, 0, `{"@odata.type":"#ComputerSystem.v1_10_0.ComputerSystem","Boot":{"@odata.etag":"x","BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Once"}}`,
			machine.BootOverride{Enabled: true, Device: machine.BootDisk, Mode: machine.BootModeUEFI}, [3]string{"Hdd", "Once", "UEFI"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			f := e.fakes["vm-0"]
			f.Override, f.Firmware = tc.from, tc.firmware
			w := e.do("PATCH", "/redfish/v1/Systems/vm-0", tc.body, admin...)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d\n%s", w.Code, w.Body)
			}
			if f.Override != tc.want {
				t.Errorf("override %+v, want %+v", f.Override, tc.want)
			}
			m := decode(t, w)
			got := [3]string{}
			for i, k := range []string{"BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode"} {
				got[i], _ = at(m, "Boot", k).(string)
			}
			if got != tc.view {
				t.Errorf("PATCH answer shows %v, want %v", got, tc.view)
			}
			if w.Header().Get("ETag") == "" {
				t.Error("no ETag on the PATCH answer")
			}
			if !strings.Contains(e.log.String(), `change="boot override"`) {
				t.Errorf("no change line:\n%s", e.log)
			}
		})
	}
}

// TestOnceOverrideConsumed: after the boot the machine clears a Once
// override, and Redfish shows Disabled as Ironic expects.
func TestOnceOverrideConsumed(t *testing.T) {
	e := newEnv(t)
	f := e.fakes["vm-0"]
	if w := e.do("PATCH", "/redfish/v1/Systems/vm-0", `{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once"}}`, admin...); w.Code != 200 {
		t.Fatal(w.Code)
	}
	f.Override.Enabled = false // what the machine does at the next boot
	m := e.get("/redfish/v1/Systems/vm-0")
	if at(m, "Boot", "BootSourceOverrideEnabled") != "Disabled" || at(m, "Boot", "BootSourceOverrideTarget") != "None" {
		t.Errorf("Boot %v", m["Boot"])
	}
}

func TestPatchWithoutBootChangesNothing(t *testing.T) {
	e := newEnv(t)
	f := e.fakes["vm-0"]
	if w := e.do("PATCH", "/redfish/v1/Systems/vm-0", `{"Boot":{}}`, admin...); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if w := e.do("PATCH", "/redfish/v1/Systems/vm-0", `{}`, admin...); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if ev := f.Events(0); len(ev) != 0 {
		t.Errorf("events %v", ev)
	}
}

// TestETag follows sushy's If-Match handling: the tag of the last GET, its
// strong form after a 412, then none.
func TestETag(t *testing.T) {
	e := newEnv(t)
	const path = "/redfish/v1/Systems/vm-0"
	get := func() string {
		w := e.do("GET", path, "", admin...)
		tag := w.Header().Get("ETag")
		if !strings.HasPrefix(tag, `W/"`) {
			t.Fatalf("ETag %q", tag)
		}
		return tag
	}
	patch := func(target, ifMatch string) int {
		hdr := admin
		if ifMatch != "" {
			hdr = append([]string{"If-Match", ifMatch}, admin...)
		}
		return e.do("PATCH", path, `{"Boot":{"BootSourceOverrideTarget":"`+target+`","BootSourceOverrideEnabled":"Continuous"}}`, hdr...).Code
	}
	tag := get()
	if tag != get() {
		t.Error("ETag differs between two GETs of an unchanged system")
	}
	if c := patch("Pxe", tag); c != http.StatusOK {
		t.Fatalf("weak current tag: %d", c)
	}
	if c := patch("Hdd", tag); c != http.StatusPreconditionFailed {
		t.Errorf("stale tag: %d", c)
	}
	if e.fakes["vm-0"].Override.Device != machine.BootPXE {
		t.Errorf("a refused PATCH changed the override: %+v", e.fakes["vm-0"].Override)
	}
	tag2 := get()
	if tag2 == tag {
		t.Error("ETag unchanged by a change")
	}
	if c := patch("Hdd", strings.TrimPrefix(tag2, "W/")); c != http.StatusOK {
		t.Errorf("strong form of the current tag: %d", c)
	}
	if c := patch("Cd", `"other", `+get()); c != http.StatusOK {
		t.Errorf("list with the current tag: %d", c)
	}
	if c := patch("Pxe", "*"); c != http.StatusOK {
		t.Errorf("*: %d", c)
	}
	if c := patch("Hdd", ""); c != http.StatusOK {
		t.Errorf("no If-Match: %d", c)
	}
}

func TestIfMatch(t *testing.T) {
	cur := `W/"abc"`
	for h, want := range map[string]bool{
		"": true, `W/"abc"`: true, `"abc"`: true, "*": true, `"x", W/"abc"`: true,
		`"abd"`: false, `W/"ab"`: false, `abc`: false,
	} {
		if got := ifMatch(h, cur); got != want {
			t.Errorf("ifMatch(%q) = %v", h, got)
		}
	}
}
