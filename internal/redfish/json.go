package redfish

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
)

// maxBody bounds a request body; the largest this service takes is an
// InsertMedia with a long URL.
const maxBody = 64 << 10

// link is a reference to a resource ({"@odata.id": path}). A struct, not
// a string with a MarshalJSON: a system has a dozen links, and a
// marshaller per link (a map, then the encoder compacting its output) was
// a tenth of a GET's CPU.
type link struct {
	ID string `json:"@odata.id"`
}

// ref is the link to path.
func ref(path string) link { return link{path} }

// status is the Status object (Resource.Status) of a resource that works.
type status struct {
	State  string
	Health string
}

var enabled = status{State: "Enabled", Health: "OK"}

// collection is a Redfish resource collection with its members by link.
func collection(path, odataType, name string, members []link) map[string]any {
	if members == nil {
		members = []link{} // Members is required, never null
	}
	return map[string]any{
		"@odata.id":           path,
		"@odata.type":         odataType,
		"Name":                name,
		"Members":             members,
		"Members@odata.count": len(members),
	}
}

// render encodes a resource; its bytes also give its ETag.
// Compact, not indented: indenting was over half of a GET's CPU, and
// clients parse either.
func render(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Resources are built from strings, numbers, bools, slices and
		// maps of those: an error here is a bug, fenced as a 500.
		panic(err)
	}
	return append(b, '\n')
}

// etag is the weak entity tag of a rendering: a digest of its bytes in hex,
// which matches the "\w*" sushy expects when it turns a weak tag strong.
func etag(b []byte) string {
	sum := sha256.Sum256(b)
	return `W/"` + hex.EncodeToString(sum[:8]) + `"`
}

// writeResource answers with a resource, its ETag and the route's Allow.
func writeResource(q *request, code int, v any) error {
	b := render(v)
	return writeRendered(q, code, b, etag(b))
}

// readPatch reads a PATCH body, which must be a JSON object.
func readPatch(q *request) (map[string]json.RawMessage, error) {
	body, err := readBody(q)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, errMalformed("(a PATCH needs a JSON object)")
	}
	return body, nil
}

// precondition checks the request's If-Match against tag, the ETag of the
// resource as it is: a stale one is refused with 412 before anything
// changes.
func precondition(q *request, tag string) error {
	if !ifMatch(q.r.Header.Get("If-Match"), tag) {
		return newError(http.StatusPreconditionFailed, "PreconditionFailed", nil)
	}
	return nil
}

// notWritable refuses a property a PATCH may not set: PropertyNotWritable
// when the resource shows it, PropertyUnknown when it does not.
func notWritable(shown bool, pointer, name string) *apiError {
	if shown {
		return newError(http.StatusBadRequest, "PropertyNotWritable", []string{pointer}, name)
	}
	return newError(http.StatusBadRequest, "PropertyUnknown", []string{pointer}, quote(name))
}

// writeRendered answers with a resource already rendered, and its tag.
func writeRendered(q *request, code int, b []byte, tag string) error {
	h := q.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("ETag", tag)
	if q.allow != "" {
		h.Set("Allow", q.allow)
	}
	q.w.WriteHeader(code)
	q.w.Write(b)
	return nil
}

// ifMatch checks an If-Match header against the current tag (RFC 9110
// §13.1.1). sushy sends the tag of its last GET, and after a 412 retries
// the weak tag in strong form and then without If-Match, so both forms
// compare equal here. No header matches.
func ifMatch(header, current string) bool {
	if header == "" {
		return true
	}
	cur := strings.TrimPrefix(current, "W/")
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == cur {
			return true
		}
	}
	return false
}

// readBody reads a JSON object body. An empty body gives a nil map: sushy
// sends EjectMedia with no body and no Content-Type. A body with a
// Content-Type other than JSON gets 415, one that is not a JSON object 400.
func readBody(q *request) (map[string]json.RawMessage, error) {
	b, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, newError(http.StatusRequestEntityTooLarge, "PayloadTooLarge", nil)
		}
		return nil, errMalformed("(the body could not be read)")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	if ct := q.r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, newError(http.StatusUnsupportedMediaType, "HeaderInvalid", nil, "Content-Type: "+quote(ct))
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		// The decoder's text may quote the body, which can hold a
		// password: only the offset goes back.
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, errMalformed(fmt.Sprintf("(syntax error at byte %d)", se.Offset))
		}
		return nil, errMalformed("(the body must be a JSON object)")
	}
	if m == nil {
		return nil, errMalformed("(the body must be a JSON object)")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errMalformed("(data after the JSON object)")
	}
	return m, nil
}

// jsonString decodes a JSON string; null and other types are not one.
func jsonString(raw json.RawMessage) (string, bool) {
	var v string
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, true
}

// jsonBool decodes a JSON boolean; null and other types are not one.
func jsonBool(raw json.RawMessage) (bool, bool) {
	var v bool
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, &v) != nil {
		return false, false
	}
	return v, true
}

// isAnnotation reports an OData or Redfish annotation ("@odata.type",
// "@Redfish.OperationApplyTime"), which a request may carry and which
// changes nothing here.
func isAnnotation(k string) bool { return strings.HasPrefix(k, "@") }

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
