package redfish

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestVirtualMediaFlow is Ironic's deploy through the CD under each parent:
// eject (no body, no Content-Type), insert, read back, eject with "{}".
func TestVirtualMediaFlow(t *testing.T) {
	for _, parent := range []string{"Systems", "Managers"} {
		t.Run(parent, func(t *testing.T) {
			e := newEnv(t)
			f := e.fakes["vm-0"]
			base := "/redfish/v1/" + parent + "/vm-0/VirtualMedia"
			if got := members(e.get(base)); !slices.Equal(got, []string{base + "/Cd"}) {
				t.Fatalf("members %v", got)
			}
			w := e.do("GET", base+"/Cd", "", admin...)
			if allow := w.Header().Get("Allow"); allow != "GET, HEAD, PATCH" {
				t.Errorf("Allow %q", allow)
			}
			cd := decode(t, w)
			if cd["Inserted"] != false || cd["ConnectedVia"] != "NotConnected" || cd["Image"] != nil || cd["WriteProtected"] != true || cd["VerifyCertificate"] != false {
				t.Errorf("empty drive %v", cd)
			}
			if types := cd["MediaTypes"].([]any); !slices.Contains(types, any("CD")) || !slices.Contains(types, any("DVD")) {
				t.Errorf("MediaTypes %v", types)
			}
			insert := at(cd, "Actions", "#VirtualMedia.InsertMedia", "target").(string)
			eject := at(cd, "Actions", "#VirtualMedia.EjectMedia", "target").(string)
			if !strings.HasPrefix(insert, base+"/Cd/") || !strings.HasPrefix(eject, base+"/Cd/") {
				t.Errorf("targets %s %s", insert, eject)
			}

			// sushy 4.3.3: POST with no body and no Content-Type.
			r := e.do("POST", eject, "", admin...)
			if r.Code != http.StatusNoContent {
				t.Fatalf("eject: %d %s", r.Code, r.Body)
			}
			const img = "http://10.0.0.5:8080/redfish/boot-1234.iso"
			if r := e.do("POST", insert, `{"Image":"`+img+`"}`, admin...); r.Code != http.StatusNoContent {
				t.Fatalf("insert: %d %s", r.Code, r.Body)
			}
			if !f.CD.Inserted || f.CD.Image != img {
				t.Errorf("CD %+v", f.CD)
			}
			cd = e.get(base + "/Cd")
			want := map[string]any{"Inserted": true, "Image": img, "ImageName": "boot-1234.iso", "ConnectedVia": "URI", "TransferProtocolType": "HTTP"}
			for k, v := range want {
				if cd[k] != v {
					t.Errorf("%s = %v, want %v", k, cd[k], v)
				}
			}
			// The retry sushy makes after a 400 or 415.
			if r := e.do("POST", eject, `{}`, admin...); r.Code != http.StatusNoContent {
				t.Fatalf("eject {}: %d", r.Code)
			}
			if f.CD.Inserted {
				t.Errorf("CD %+v after eject", f.CD)
			}
			for _, c := range []string{`change="media insert"`, `change="media eject"`} {
				if !strings.Contains(e.log.String(), c) {
					t.Errorf("no %s line:\n%s", c, e.log)
				}
			}
		})
	}
}

// TestInsertMediaParameters: what newer sushy and Ironic add to the body.
func TestInsertMediaParameters(t *testing.T) {
	e := newEnv(t)
	f := e.fakes["vm-0"]
	const insert = "/redfish/v1/Systems/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"
	body := `{"Image":"https://images.example/ipa.iso?sig=TOPSECRET","Inserted":true,"WriteProtected":true,` +
		`"TransferProtocolType":"HTTPS","TransferMethod":"Stream","UserName":"fetch","Password":"hunter2"}`
	if r := e.do("POST", insert, body, admin...); r.Code != http.StatusNoContent {
		t.Fatalf("insert: %d %s", r.Code, r.Body)
	}
	if f.CD.Image != "https://fetch:hunter2@images.example/ipa.iso?sig=TOPSECRET" {
		t.Errorf("machine got %q", f.CD.Image)
	}
	cd := e.get("/redfish/v1/Systems/vm-0/VirtualMedia/Cd")
	if cd["Image"] != "https://images.example/ipa.iso?sig=TOPSECRET" || cd["TransferProtocolType"] != "HTTPS" || cd["ImageName"] != "ipa.iso" {
		t.Errorf("drive %v", cd)
	}
	if log := e.log.String(); strings.Contains(log, "hunter2") || strings.Contains(log, "TOPSECRET") {
		t.Errorf("a secret reached the log:\n%s", log)
	}
}

// TestInsertMediaFailureHidesSecrets: the machine's error names the URL;
// the answer and the log get it without password and query.
func TestInsertMediaFailureHidesSecrets(t *testing.T) {
	e := newEnv(t)
	const bad = "https://u:hunter2@h/bad.iso?token=TOPSECRET"
	e.fakes["vm-0"].BadMedia = map[string]bool{bad: true}
	w := e.do("POST", "/redfish/v1/Managers/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", `{"Image":"`+bad+`"}`, admin...)
	if w.Code != http.StatusBadRequest {
		t.Fatalf("status %d", w.Code)
	}
	msg := at(checkRedfishError(t, w, "GeneralError"), "error", "message").(string)
	if !strings.Contains(msg, "https://u:xxxxx@h/bad.iso?redacted") {
		t.Errorf("message %q", msg)
	}
	for _, out := range []string{w.Body.String(), e.log.String()} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "TOPSECRET") {
			t.Errorf("secret leaked:\n%s", out)
		}
	}
	w = e.do("POST", "/redfish/v1/Managers/vm-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", `{"Image":"http://h/x.iso","Password":12345678}`, admin...)
	if w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "12345678") {
		t.Errorf("password of the wrong type: %d %s", w.Code, w.Body)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/x.iso":              "http://h/x.iso",
		"https://u:p@h/x.iso":         "https://u:xxxxx@h/x.iso",
		"https://h/x.iso?X-Sig=abc#f": "https://h/x.iso?redacted",
		"http://[::1":                 "(unparsable URL)",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestVerifyCertificate: the drive's VerifyCertificate is read with GET
// and set with PATCH (what sushy's set_verify_certificate sends), under
// both parents; nothing else of the drive is writable.
func TestVerifyCertificate(t *testing.T) {
	e := newEnv(t)
	f := e.fakes["vm-0"]
	const cd = "/redfish/v1/Managers/vm-0/VirtualMedia/Cd"
	w := e.do("PATCH", cd, `{"VerifyCertificate":true}`, admin...)
	if w.Code != http.StatusOK || decode(t, w)["VerifyCertificate"] != true || !fakeMedia(f).VerifyCertificate {
		t.Fatalf("PATCH: %d %s", w.Code, w.Body)
	}
	if got := e.get("/redfish/v1/Systems/vm-0/VirtualMedia/Cd")["VerifyCertificate"]; got != true {
		t.Fatalf("GET under the System: %v", got)
	}
	if !strings.Contains(e.log.String(), `change="media verify certificate"`) {
		t.Errorf("no change line:\n%s", e.log)
	}
	// With the ETag of the resource, and a stale one.
	w = e.do("GET", cd, "", admin...)
	tag := w.Header().Get("ETag")
	if w := e.do("PATCH", cd, `{"VerifyCertificate":false}`, append([]string{"If-Match", tag}, admin...)...); w.Code != http.StatusOK || fakeMedia(f).VerifyCertificate {
		t.Fatalf("PATCH with If-Match: %d %s", w.Code, w.Body)
	}
	if w := e.do("PATCH", cd, `{"VerifyCertificate":true}`, append([]string{"If-Match", tag}, admin...)...); w.Code != http.StatusPreconditionFailed {
		t.Fatalf("PATCH with a stale If-Match: %d %s", w.Code, w.Body)
	}
	for body, id := range map[string]string{
		`{"VerifyCertificate":"yes"}`: "PropertyValueTypeError",
		`{"Inserted":false}`:          "PropertyNotWritable",
		`{"Image":"http://h/x.iso"}`:  "PropertyNotWritable",
		`{"Certificates":{}}`:         "PropertyUnknown",
	} {
		w := e.do("PATCH", cd, body, admin...)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d", body, w.Code)
			continue
		}
		checkRedfishError(t, w, id)
	}
	if fakeMedia(f).VerifyCertificate {
		t.Error("a refused PATCH changed the drive")
	}
	if w := e.do("PATCH", "/redfish/v1/Systems/vm-1/VirtualMedia/Cd", `{"VerifyCertificate":true}`, admin...); w.Code < 400 || fakeMedia(e.fakes["vm-1"]).VerifyCertificate {
		t.Errorf("another system's credentials: %d", w.Code)
	}
}
