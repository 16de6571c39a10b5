package redfish

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
)

// The OData side of the service: the metadata document at
// /redfish/v1/$metadata and the Link header that names the schema of each
// resource. Both point at the schemas DMTF publishes (DSP8010): the
// service hosts no copy of its own, so a client needs no more than the
// files every Redfish tool already has.

// schemaBase is where DMTF publishes the schemas: the CSDL of a schema as
// <Schema>_v1.xml, the JSON Schema of a namespace as <Namespace>.json.
// It is the form the published CSDL files use in their own references.
const schemaBase = "http://redfish.dmtf.org/schemas/v1/"

// servedNamespaces are the namespaces of every @odata.type the service
// sends: resources, collections, the Settings object of Bios and the
// Message of error bodies. Each
// handler writes its type as a literal; when one changes, change it here
// too: TestMetadataNamesEveryServedType walks the service and fails on a
// type missing here, TestServedNamespaces on two versions of one schema.
var servedNamespaces = []string{
	"AccountService.v1_3_0",
	"AttributeRegistry.v1_3_0",
	"Bios.v1_1_0",
	"Chassis.v1_14_0",
	"ChassisCollection",
	"ComputerSystem.v1_13_0",
	"ComputerSystemCollection",
	"Drive.v1_9_0",
	"EthernetInterface.v1_6_0",
	"EthernetInterfaceCollection",
	"LogEntry.v1_8_0",
	"LogEntryCollection",
	"LogService.v1_2_0",
	"LogServiceCollection",
	"Manager.v1_10_0",
	"ManagerAccount.v1_7_0",
	"ManagerAccountCollection",
	"ManagerCollection",
	"Memory.v1_10_0",
	"MemoryCollection",
	"Message.v1_1_1",
	"MessageRegistryFile.v1_1_0",
	"MessageRegistryFileCollection",
	"Processor.v1_7_0",
	"ProcessorCollection",
	"Role.v1_2_0",
	"RoleCollection",
	"SecureBoot.v1_1_0",
	"ServiceRoot.v1_5_0",
	"Session.v1_3_0",
	"SessionCollection",
	"SessionService.v1_1_8",
	"Settings.v1_3_0",
	"SimpleStorage.v1_3_0",
	"SimpleStorageCollection",
	"Storage.v1_8_0",
	"StorageCollection",
	"VirtualMedia.v1_4_0",
	"VirtualMediaCollection",
}

// schemaOf is the schema a namespace belongs to: "ServiceRoot" for
// "ServiceRoot.v1_5_0" and for "ServiceRoot".
func schemaOf(namespace string) string {
	schema, _, _ := strings.Cut(namespace, ".")
	return schema
}

// metadataReference is one edmx:Reference of $metadata: a schema file and
// the namespaces of it that the service uses.
type metadataReference struct {
	schema     string
	namespaces []string
	alias      string
}

// metadataReferences groups servedNamespaces by schema. A versioned
// namespace comes with its schema's unversioned one, which holds the
// abstract entity type the versioned one derives from (the published
// $metadata of DMTF's mockups includes both). Resource (the Status, Id and
// Name of every resource) and RedfishExtensions (the @Redfish annotations,
// such as AllowableValues) are referenced as every schema file does.
func metadataReferences() []metadataReference {
	byName := map[string]*metadataReference{
		"Resource":          {schema: "Resource", namespaces: []string{"Resource", "Resource.v1_0_0"}},
		"RedfishExtensions": {schema: "RedfishExtensions", namespaces: []string{"RedfishExtensions.v1_0_0"}, alias: "Redfish"},
	}
	for _, ns := range servedNamespaces {
		schema := schemaOf(ns)
		ref := byName[schema]
		if ref == nil {
			ref = &metadataReference{schema: schema}
			byName[schema] = ref
		}
		if ns != schema && !slices.Contains(ref.namespaces, schema) {
			ref.namespaces = append(ref.namespaces, schema)
		}
		if !slices.Contains(ref.namespaces, ns) {
			ref.namespaces = append(ref.namespaces, ns)
		}
	}
	out := make([]metadataReference, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		out = append(out, *byName[name])
	}
	return out
}

// serviceRootNamespace is the versioned ServiceRoot namespace served.
func serviceRootNamespace() string {
	for _, ns := range servedNamespaces {
		if schemaOf(ns) == "ServiceRoot" && ns != "ServiceRoot" {
			return ns
		}
	}
	panic("redfish: servedNamespaces has no ServiceRoot version")
}

// metadataDocument renders $metadata: an edmx:Reference per schema with an
// edmx:Include per namespace, and the Service entity container, which
// extends the ServiceRoot's so that the top-level resources it defines
// (Systems, Managers, ...) are this service's (DSP0266 "Service metadata":
// the document shall include an EntityContainer for the top-level
// resources; the Protocol Validator looks for it under
// edmx:DataServices/Schema). Every value is a fixed identifier, so nothing
// needs escaping.
func metadataDocument() []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">` + "\n")
	for _, ref := range metadataReferences() {
		b.WriteString(`  <edmx:Reference Uri="` + schemaBase + ref.schema + `_v1.xml">` + "\n")
		for _, ns := range ref.namespaces {
			b.WriteString(`    <edmx:Include Namespace="` + ns + `"`)
			if ref.alias != "" {
				b.WriteString(` Alias="` + ref.alias + `"`)
			}
			b.WriteString("/>\n")
		}
		b.WriteString("  </edmx:Reference>\n")
	}
	b.WriteString("  <edmx:DataServices>\n")
	b.WriteString(`    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">` + "\n")
	b.WriteString(`      <EntityContainer Name="Service" Extends="` + serviceRootNamespace() + `.ServiceContainer"/>` + "\n")
	b.WriteString("    </Schema>\n")
	b.WriteString("  </edmx:DataServices>\n")
	b.WriteString("</edmx:Edmx>\n")
	return b.Bytes()
}

// metadata is $metadata, rendered once: it changes only with the code.
var metadata = metadataDocument()

// metadataETag is its entity tag.
var metadataETag = etag(metadata)

// metadataContentType is the media type DSP0266 names for $metadata
// ("OData $metadata": application/xml, optionally with charset=utf-8).
const metadataContentType = "application/xml;charset=utf-8"

// getMetadata answers /redfish/v1/$metadata. It is public, like the
// service document: DSP0266 lists both among the URIs a client reads
// without authentication, and the Service Validator reads it to find the
// schemas before it logs in.
func (s *Server) getMetadata(q *request) error {
	h := q.w.Header()
	h.Set("Content-Type", metadataContentType)
	h.Set("ETag", metadataETag)
	h.Set("Allow", q.allow)
	q.w.WriteHeader(http.StatusOK)
	q.w.Write(metadata)
	return nil
}

// linkHeaders are the Link header values of the served namespaces, made
// once so that a response shares one rather than building its own.
var linkHeaders = func() map[string][]string {
	m := make(map[string][]string, len(servedNamespaces))
	for _, ns := range servedNamespaces {
		m[ns] = []string{describedBy(ns)}
	}
	return m
}()

// describedBy is the Link header naming the JSON Schema of a namespace
// (DSP0266 "Link header": GET and HEAD of a resource return
// rel=describedby, and a versioned schema's version shall be the one of
// the resource's @odata.type, which the Protocol Validator compares).
func describedBy(namespace string) string {
	return "<" + schemaBase + namespace + ".json>; rel=describedby"
}

// linkFor is the Link header value of a JSON body: the schema of its
// top-level @odata.type, nil for a body without one (error bodies, the
// version and service documents).
func linkFor(body []byte) []string {
	t := topLevelType(body)
	if len(t) < 2 || t[0] != '#' {
		return nil
	}
	i := bytes.LastIndexByte(t, '.')
	if i < 2 {
		return nil
	}
	ns := t[1:i]
	if v, ok := linkHeaders[string(ns)]; ok {
		return v
	}
	// A type missing from servedNamespaces (a test fails on it) still
	// gets its Link.
	return []string{describedBy(string(ns))}
}

// topLevelType finds the value of the "@odata.type" member of the
// top-level JSON object in b without decoding it, nor allocating: the
// encoder sorts map keys and the resource structs put it second, so it is
// found within the first hundred bytes. Nested objects (members of
// collections, Links) are skipped. A string value cannot hold a raw quote,
// so the scan needs to know only strings and nesting.
func topLevelType(b []byte) []byte {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			s, end := jsonStringAt(b, i)
			if end < 0 {
				return nil
			}
			i = end
			if depth != 1 || string(s) != "@odata.type" {
				continue
			}
			j := skipSpace(b, i+1)
			if j >= len(b) || b[j] != ':' {
				continue // a value "@odata.type", not the key
			}
			j = skipSpace(b, j+1)
			if j >= len(b) || b[j] != '"' {
				return nil
			}
			v, end := jsonStringAt(b, j)
			if end < 0 {
				return nil
			}
			return v
		}
	}
	return nil
}

// jsonStringAt returns the raw content of the JSON string that starts
// with the quote at b[i], and the index of its closing quote (-1 when it
// does not close).
func jsonStringAt(b []byte, i int) ([]byte, int) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return b[i+1 : j], j
		}
	}
	return nil, -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
