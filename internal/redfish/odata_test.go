package redfish

import (
	"context"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The protocol rules of DSP0266 that DMTF's Protocol Validator checks:
// $metadata and the service document, the headers of every response, the
// OData-Version precondition and session creation through Members.

// edmx is the part of $metadata the tests read.
type edmx struct {
	XMLName    xml.Name `xml:"http://docs.oasis-open.org/odata/ns/edmx Edmx"`
	Version    string   `xml:"Version,attr"`
	References []struct {
		URI      string `xml:"Uri,attr"`
		Includes []struct {
			Namespace string `xml:"Namespace,attr"`
			Alias     string `xml:"Alias,attr"`
		} `xml:"http://docs.oasis-open.org/odata/ns/edmx Include"`
	} `xml:"http://docs.oasis-open.org/odata/ns/edmx Reference"`
	DataServices struct {
		Schemas []struct {
			Namespace  string `xml:"Namespace,attr"`
			Containers []struct {
				Name    string `xml:"Name,attr"`
				Extends string `xml:"Extends,attr"`
			} `xml:"http://docs.oasis-open.org/odata/ns/edm EntityContainer"`
		} `xml:"http://docs.oasis-open.org/odata/ns/edm Schema"`
	} `xml:"http://docs.oasis-open.org/odata/ns/edmx DataServices"`
}

// getMetadata fetches $metadata without credentials and parses it.
func (e *env) getMetadata() edmx {
	e.t.Helper()
	w := e.do("GET", "/redfish/v1/$metadata", "")
	if w.Code != http.StatusOK {
		e.t.Fatalf("$metadata: %d %s", w.Code, w.Body)
	}
	var doc edmx
	if err := xml.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		e.t.Fatalf("$metadata is not the XML expected: %v\n%s", err, w.Body)
	}
	return doc
}

// included maps each namespace $metadata includes to its reference's URI.
func (d edmx) included() map[string]string {
	m := map[string]string{}
	for _, r := range d.References {
		for _, inc := range r.Includes {
			m[inc.Namespace] = r.URI
		}
	}
	return m
}

// namespaceOf is the namespace of an @odata.type: "ServiceRoot.v1_5_0" of
// "#ServiceRoot.v1_5_0.ServiceRoot".
func namespaceOf(t *testing.T, odataType string) string {
	t.Helper()
	i := strings.LastIndexByte(odataType, '.')
	if !strings.HasPrefix(odataType, "#") || i < 2 {
		t.Fatalf("malformed @odata.type %q", odataType)
	}
	return odataType[1:i]
}

// served is a resource as a walk of the service found it.
type served struct {
	path string
	get  *httptest.ResponseRecorder
	// types are the @odata.type values of the body, at any depth.
	types []string
}

// collect gathers the @odata.type values and the links (@odata.id, the
// url of service document entries, the Uri of a registry file's Location)
// of a decoded body.
func collect(v any, types, links *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok {
				switch k {
				case "@odata.type":
					*types = append(*types, s)
				case "@odata.id", "url", "Uri":
					*links = append(*links, s)
				}
			}
			collect(x, types, links)
		}
	case []any:
		for _, x := range v {
			collect(x, types, links)
		}
	}
}

// walkService reads every JSON resource reachable from the service root
// and the service document as admin, after a power-on (an SEL entry) and a
// media insert, so that every kind of resource the fakes have is there.
func walkService(e *env) []served {
	e.t.Helper()
	f := e.fakes["vm-0"]
	if err := f.Power(context.Background(), machine.On); err != nil {
		e.t.Fatal(err)
	}
	if err := f.InsertMedia(context.Background(), "http://images.example/boot.iso"); err != nil {
		e.t.Fatal(err)
	}
	var out []served
	seen := map[string]bool{}
	var walk func(path string)
	walk = func(path string) {
		path = strings.TrimSuffix(path, "/")
		if seen[path] || !strings.HasPrefix(path, "/redfish/v1") {
			return
		}
		seen[path] = true
		w := e.do("GET", path, "", admin...)
		if w.Code != http.StatusOK {
			e.t.Errorf("GET %s: %d %s", path, w.Code, w.Body)
			return
		}
		if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			return // $metadata
		}
		s := served{path: path, get: w}
		var links []string
		collect(decode(e.t, w), &s.types, &links)
		out = append(out, s)
		for _, l := range links {
			walk(l)
		}
	}
	walk("/redfish/v1")
	walk("/redfish/v1/odata")
	return out
}

// TestMetadataNamesEveryServedType walks the live service and checks that
// $metadata includes the namespace of every @odata.type it sends, and its
// schema's unversioned one, from that schema's DMTF file: a resource added
// or a version changed without servedNamespaces fails here.
func TestMetadataNamesEveryServedType(t *testing.T) {
	e := newEnv(t)
	e.login("admin", "password") // a Session to meet
	inc := e.getMetadata().included()
	// Error bodies carry the Message type.
	var errTypes, links []string
	collect(decode(t, e.do("GET", "/redfish/v1/NoSuchThing", "", admin...)), &errTypes, &links)
	walked := append(walkService(e), served{path: "(an error body)", types: errTypes})
	met := map[string]bool{}
	for _, s := range walked {
		for _, typ := range s.types {
			ns := namespaceOf(t, typ)
			met[schemaOf(ns)] = true
			for _, want := range []string{ns, schemaOf(ns)} {
				uri, ok := inc[want]
				switch {
				case !ok:
					t.Errorf("%s: type %s: $metadata does not include %s (add %s to servedNamespaces)", s.path, typ, want, ns)
				case uri != schemaBase+schemaOf(ns)+"_v1.xml":
					t.Errorf("%s: %s included from %s", s.path, want, uri)
				}
			}
		}
	}
	// A walk that stopped at the root must not pass.
	for _, schema := range []string{"ComputerSystem", "LogEntry", "VirtualMedia", "ManagerAccount", "Role", "Session", "Message"} {
		if !met[schema] {
			t.Errorf("the walk met no %s: %v", schema, sortedKeys(met))
		}
	}
}

// TestServedNamespaces: one version per schema, since each resource is
// served in one version: a bumped version replaces the old one.
func TestServedNamespaces(t *testing.T) {
	versions := map[string][]string{}
	for _, ns := range servedNamespaces {
		versions[schemaOf(ns)] = append(versions[schemaOf(ns)], ns)
	}
	for schema, list := range versions {
		if len(list) != 1 {
			t.Errorf("%s: %v", schema, list)
		}
	}
	if !slices.IsSorted(servedNamespaces) {
		t.Errorf("servedNamespaces is not sorted")
	}
}

// TestMetadataDocument: public, XML, one reference per schema file, and the
// Service entity container the Protocol Validator looks for.
func TestMetadataDocument(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", "/redfish/v1/$metadata", "")
	if ct := w.Header().Get("Content-Type"); ct != "application/xml;charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	doc := e.getMetadata()
	if doc.Version != "4.0" {
		t.Errorf("Edmx Version %q", doc.Version)
	}
	if len(doc.DataServices.Schemas) != 1 || doc.DataServices.Schemas[0].Namespace != "Service" || len(doc.DataServices.Schemas[0].Containers) != 1 {
		t.Fatalf("DataServices: %+v", doc.DataServices.Schemas)
	}
	root := e.get("/redfish/v1")
	c, want := doc.DataServices.Schemas[0].Containers[0], namespaceOf(t, root["@odata.type"].(string))+".ServiceContainer"
	if c.Name != "Service" || c.Extends != want {
		t.Errorf("EntityContainer %+v, want Service extending %s", c, want)
	}
	files := map[string]bool{}
	for _, r := range doc.References {
		schema := strings.TrimSuffix(strings.TrimPrefix(r.URI, schemaBase), "_v1.xml")
		if r.URI != schemaBase+schema+"_v1.xml" || len(r.Includes) == 0 || files[schema] {
			t.Errorf("reference %+v", r)
		}
		files[schema] = true
		for _, inc := range r.Includes {
			if schemaOf(inc.Namespace) != schema {
				t.Errorf("%s included from %s", inc.Namespace, r.URI)
			}
		}
	}
	if doc.included()["RedfishExtensions.v1_0_0"] == "" {
		t.Errorf("RedfishExtensions not referenced")
	}
}

// TestServiceDocument: the context is $metadata, and the entries are the
// root and every resource the root links to.
func TestServiceDocument(t *testing.T) {
	e := newEnv(t)
	doc := decode(t, e.do("GET", "/redfish/v1/odata", ""))
	if c := doc["@odata.context"]; c != "/redfish/v1/$metadata" {
		t.Errorf("@odata.context %v", c)
	}
	entries := map[string]string{}
	for _, v := range doc["value"].([]any) {
		entries[at(v, "name").(string)] = at(v, "url").(string)
		if k := at(v, "kind"); k != "Singleton" {
			t.Errorf("%v: kind %v", v, k)
		}
	}
	root := e.get("/redfish/v1")
	want := map[string]string{"Service": "/redfish/v1/"}
	for k, v := range root {
		if id, ok := at(v, "@odata.id").(string); ok && k != "@odata.id" {
			want[k] = id
		}
	}
	for k, l := range root["Links"].(map[string]any) {
		want[k] = at(l, "@odata.id").(string)
	}
	for name, url := range want {
		if entries[name] != url {
			t.Errorf("service document: %s = %q, want %q", name, entries[name], url)
		}
	}
	if len(entries) != len(want) {
		t.Errorf("service document %v, want %v", entries, want)
	}
	if want["AccountService"] != accountServicePath {
		t.Errorf("the root does not link the AccountService: %v", root)
	}
}

// TestLinkHeader: GET and HEAD of every typed resource name the JSON
// Schema of its @odata.type, version included, as the Protocol Validator
// compares them; error bodies and untyped documents have none.
func TestLinkHeader(t *testing.T) {
	e := newEnv(t)
	for _, s := range walkService(e) {
		typ, _ := decode(t, s.get)["@odata.type"].(string)
		want := ""
		if typ != "" {
			want = "<" + schemaBase + namespaceOf(t, typ) + ".json>; rel=describedby"
		}
		if got := s.get.Header().Get("Link"); got != want {
			t.Errorf("GET %s: Link %q, want %q", s.path, got, want)
		}
		if got := e.do("HEAD", s.path, "", admin...).Header().Get("Link"); got != want {
			t.Errorf("HEAD %s: Link %q, want %q", s.path, got, want)
		}
	}
	for _, path := range []string{"/redfish", "/redfish/v1/odata", "/redfish/v1/Systems/nope", "/redfish/v1/$metadata"} {
		if l := e.do("GET", path, "", admin...).Header().Get("Link"); l != "" {
			t.Errorf("%s: Link %q", path, l)
		}
	}
}

// TestTopLevelType: the scanner finds the top-level @odata.type only.
func TestTopLevelType(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"resource", `{"@odata.id":"/x","@odata.type":"#A.v1_0_0.A","Name":"x"}`, "#A.v1_0_0.A"},
		{"nested first", `{"@Redfish.Settings":{"@odata.type":"#Settings.v1_0_0.Settings"},"@odata.type":"#B.v1_2_0.B"}`, "#B.v1_2_0.B"},
		{"members only", `{"Members":[{"@odata.type":"#C.v1_0_0.C"}],"Name":"c"}`, ""},
		{"as a value", `{"Name":"@odata.type","@odata.type":"#D.v1_0_0.D"}`, "#D.v1_0_0.D"},
		{"escaped quote", `{"Name":"a \"@odata.type\": x","@odata.type":"#E.v1_0_0.E"}`, "#E.v1_0_0.E"},
		{"indented", "{\n  \"@odata.type\" : \"#F.v1_0_0.F\"\n}", "#F.v1_0_0.F"},
		{"not a string", `{"@odata.type":7}`, ""},
		{"truncated", `{"@odata.type":"#G.v1`, ""},
		{"error body", `{"error":{"@Message.ExtendedInfo":[{"@odata.type":"#Message.v1_1_1.Message"}]}}`, ""},
		{"empty", ``, ""},
	} {
		if got := string(topLevelType([]byte(tc.body))); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestCommonHeaders: every response carries OData-Version and
// Cache-Control, errors and bodiless answers included; a new session's
// token is never cached.
func TestCommonHeaders(t *testing.T) {
	e := newEnv(t)
	token, loc := e.login("admin", "password")
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		cache                    string
	}{
		{"root", "GET", "/redfish/v1/", "", nil, 200, "no-cache"},
		{"HEAD", "HEAD", "/redfish/v1/Systems/vm-0", "", admin, 200, "no-cache"},
		{"metadata", "GET", "/redfish/v1/$metadata", "", nil, 200, "no-cache"},
		{"not found", "GET", "/redfish/v1/nothing", "", admin, 404, "no-cache"},
		{"method", "PUT", "/redfish/v1/Systems", "", admin, 405, "no-cache"},
		{"no credentials", "GET", "/redfish/v1/Systems", "", nil, 401, "no-cache"},
		{"OData 4.1", "GET", "/redfish/v1/", "", []string{"OData-Version", "4.1"}, 412, "no-cache"},
		{"login", "POST", sessionsPath, `{"UserName":"admin","Password":"password"}`, nil, 201, "no-store"},
		{"logout", "DELETE", loc, "", []string{"X-Auth-Token", token}, 204, "no-cache"},
	} {
		w := e.do(tc.method, tc.path, tc.body, tc.hdr...)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.status)
		}
		if v := w.Header().Get("OData-Version"); v != "4.0" {
			t.Errorf("%s: OData-Version %q", tc.name, v)
		}
		if v := w.Header().Values("Cache-Control"); !slices.Equal(v, []string{tc.cache}) {
			t.Errorf("%s: Cache-Control %q, want %q", tc.name, v, tc.cache)
		}
	}
}

// TestODataVersion: a request for an OData version other than 4.0 gets 412
// and does nothing; 4.0 or no header is served.
func TestODataVersion(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
		versions                 []string
		status                   int
	}{
		{"none", "GET", "/redfish/v1/", "", nil, 200},
		{"4.0", "GET", "/redfish/v1/", "", []string{"4.0"}, 200},
		{"4.0 spaced", "GET", "/redfish/v1/Systems/vm-0", "", []string{" 4.0 "}, 200},
		{"4.1", "GET", "/redfish/v1/", "", []string{"4.1"}, 412},
		{"4.01", "GET", "/redfish/v1/Systems/vm-0", "", []string{"4.01"}, 412},
		{"3.0", "GET", "/redfish/v1/$metadata", "", []string{"3.0"}, 412},
		{"empty", "GET", "/redfish/v1/", "", []string{""}, 412},
		{"one of two", "GET", "/redfish/v1/", "", []string{"4.0", "4.1"}, 412},
		{"unknown URL", "GET", "/redfish/v1/nothing", "", []string{"4.1"}, 412},
		{"reset", "POST", "/redfish/v1/Systems/vm-0/Actions/ComputerSystem.Reset", `{"ResetType":"On"}`, []string{"4.1"}, 412},
		{"login", "POST", sessionsPath, `{"UserName":"admin","Password":"password"}`, []string{"4.1"}, 412},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var r *http.Request
			if tc.body == "" {
				r = httptest.NewRequest(tc.method, tc.path, nil)
			} else {
				r = httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
				r.Header.Set("Content-Type", "application/json")
			}
			r.Header.Set("Authorization", basic("admin", "password"))
			for _, v := range tc.versions {
				r.Header.Add("OData-Version", v)
			}
			w := httptest.NewRecorder()
			e.srv.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status != http.StatusPreconditionFailed {
				return
			}
			checkRedfishError(t, w, "HeaderInvalid")
			if a := e.fakes["vm-0"].PowerActions(); len(a) != 0 {
				t.Errorf("a refused request acted: %v", a)
			}
			if n := len(e.srv.sessions.list(e.srv.principalOf("admin", "password"), e.Now())); n != 0 {
				t.Errorf("a refused login opened %d sessions", n)
			}
		})
	}
}

// TestSessionsMembersPost: DSP0266 "POST (create)": a POST to a
// collection's Members creates as one to the collection does; other
// methods there are refused with Allow.
func TestSessionsMembersPost(t *testing.T) {
	e := newEnv(t)
	membersURI := sessionsPath + "/Members"
	w := e.do("POST", membersURI, `{"UserName":"admin","Password":"password"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("POST Members: %d %s", w.Code, w.Body)
	}
	token, loc := w.Header().Get("X-Auth-Token"), w.Header().Get("Location")
	if token == "" || !strings.HasPrefix(loc, sessionsPath+"/") || loc == membersURI {
		t.Fatalf("token %q, Location %q", token, loc)
	}
	if m := decode(t, w); m["@odata.id"] != loc || m["UserName"] != "admin" {
		t.Errorf("body %v", m)
	}
	auth := []string{"X-Auth-Token", token}
	if got := members(decode(t, e.do("GET", sessionsPath, "", auth...))); !slices.Equal(got, []string{loc}) {
		t.Errorf("sessions %v, want [%s]", got, loc)
	}
	if w := e.do("POST", membersURI, `{"UserName":"admin","Password":"wrong"}`); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", w.Code)
	}
	for _, m := range []string{"GET", "PATCH", "DELETE"} {
		w := e.do(m, membersURI, "", auth...)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
			t.Errorf("%s Members: %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
	if w := e.do("DELETE", loc, "", auth...); w.Code != http.StatusNoContent {
		t.Errorf("DELETE: %d", w.Code)
	}
}

// TestPanicAfterStatus: a handler that panics after setting its status,
// before its body, is answered 500 without the headers it had set: the
// status line waits for the body.
func TestPanicAfterStatus(t *testing.T) {
	e := newEnv(t)
	e.srv.mux.HandleFunc("/test/panic", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `W/"0"`)
		w.WriteHeader(http.StatusOK)
		panic("boom")
	})
	w := e.do("GET", "/test/panic", "")
	if w.Code != http.StatusInternalServerError || w.Header().Get("ETag") != "" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("status %d, headers %v", w.Code, w.Header())
	}
	checkRedfishError(t, w, "InternalError")
}
