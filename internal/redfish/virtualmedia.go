package redfish

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The virtual CD drive, the one VirtualMedia device of a system. Ironic's
// redfish-virtual-media boot ejects it, inserts its ISO by URL, sets a
// one-time Cd boot and powers on; after deployment it ejects again.

// cdID names the drive. Its MediaTypes list CD: Ironic 21.4 inserts only
// into a device that lists CD, later releases also into DVD.
const cdID = "Cd"

const (
	insertActionName = "VirtualMedia.InsertMedia"
	ejectActionName  = "VirtualMedia.EjectMedia"
)

// mediaPath is the VirtualMedia collection of the request's system, under
// the Manager or the System as the request came.
func mediaPath(q *request) string {
	if strings.HasPrefix(q.r.Pattern, "/redfish/v1/Managers/") {
		return managerPath(q.sys.ID) + "/VirtualMedia"
	}
	return systemPath(q.sys.ID) + "/VirtualMedia"
}

func (s *Server) getMediaCollection(q *request) error {
	p := mediaPath(q)
	return writeResource(q, http.StatusOK, collection(p, "#VirtualMediaCollection.VirtualMediaCollection", "Virtual Media Services", []link{ref(p + "/" + cdID)}))
}

// getMedia answers the drive. Image is the URL the image came from, so
// Ironic, which skips an insert when Image equals its URL, sees its own.
// The actions change the image; PATCH changes VerifyCertificate only
// (sushy uses the actions whenever they are listed, as they are).
func (s *Server) getMedia(q *request) error {
	if vid := q.r.PathValue("vid"); vid != cdID {
		return errNotFound("VirtualMedia", vid)
	}
	m, err := q.sys.Machine.Media(q.r.Context())
	if err != nil {
		return fmt.Errorf("media: %w", err)
	}
	return writeResource(q, http.StatusOK, mediaView(q, m))
}

// patchMedia sets VerifyCertificate: whether inserts check an https
// image's certificate (against the system CAs and media.caFile).
func (s *Server) patchMedia(q *request) error {
	if vid := q.r.PathValue("vid"); vid != cdID {
		return errNotFound("VirtualMedia", vid)
	}
	body, err := readPatch(q)
	if err != nil {
		return err
	}
	ctx := q.r.Context()
	m, err := q.sys.Machine.Media(ctx)
	if err != nil {
		return fmt.Errorf("media: %w", err)
	}
	cur := mediaView(q, m)
	if err := precondition(q, etag(render(cur))); err != nil {
		return err
	}
	var verify *bool
	for _, k := range sortedKeys(body) {
		switch {
		case isAnnotation(k):
		case k == "VerifyCertificate":
			b, ok := jsonBool(body[k])
			if !ok {
				return errPropertyType("#/VerifyCertificate", k, rawValue(body[k]))
			}
			verify = &b
		default:
			e := notWritable(cur[k] != nil || k == "Image" || k == "ImageName" || k == "TransferProtocolType", "#/"+k, k)
			if k == "Image" || k == "Inserted" {
				e.detail = "Use the InsertMedia and EjectMedia actions."
			}
			return e
		}
	}
	if verify != nil && *verify != m.VerifyCertificate {
		if err := q.sys.Machine.SetMediaVerify(ctx, *verify); err != nil {
			return fromMachine(fmt.Errorf("VerifyCertificate: %w", err), "", q.sys.ID)
		}
		s.change(q, "media verify certificate", "verify", *verify)
		if m, err = q.sys.Machine.Media(ctx); err != nil {
			return fmt.Errorf("media: %w", err)
		}
	}
	return writeResource(q, http.StatusOK, mediaView(q, m))
}

// mediaView is the drive as a VirtualMedia resource.
func mediaView(q *request, m machine.Media) map[string]any {
	p := mediaPath(q) + "/" + cdID
	v := map[string]any{
		"@odata.id":            p,
		"@odata.type":          "#VirtualMedia.v1_4_0.VirtualMedia",
		"Id":                   cdID,
		"Name":                 "Virtual CD",
		"MediaTypes":           []string{"CD", "DVD"},
		"Image":                nil,
		"ImageName":            nil,
		"Inserted":             m.Inserted,
		"WriteProtected":       true,
		"ConnectedVia":         "NotConnected",
		"TransferProtocolType": nil,
		// The machine uploads the image into vSphere; nothing streams.
		"TransferMethod": "Upload",
		"Actions": map[string]any{
			"#VirtualMedia.InsertMedia": map[string]string{"target": p + "/Actions/" + insertActionName},
			"#VirtualMedia.EjectMedia":  map[string]string{"target": p + "/Actions/" + ejectActionName},
		},
		"Status": enabled,
		// Whether inserts verify an https image's certificate; false
		// as BMCs ship (Ironic's vmedia certificate is self-signed).
		"VerifyCertificate": m.VerifyCertificate,
	}
	if m.Inserted {
		v["ConnectedVia"] = "URI"
		if u, err := url.Parse(m.Image); err == nil {
			u.User = nil // credentials go in, never out
			v["Image"] = u.String()
			if name := path.Base(u.Path); u.Path != "" && name != "/" {
				v["ImageName"] = name
			}
			v["TransferProtocolType"] = strings.ToUpper(u.Scheme)
		}
	}
	return v
}

// insertParams are the InsertMedia parameters of VirtualMedia v1_3_0 that
// clients send: sushy 4.3.3 sends Image, and Inserted and WriteProtected
// only when false; newer ones add TransferProtocolType, TransferMethod,
// UserName and Password.
var insertParams = map[string]bool{
	"Image": true, "Inserted": true, "WriteProtected": true, "TransferProtocolType": true,
	"TransferMethod": true, "UserName": true, "Password": true,
}

// insertMedia connects an ISO by URL: the machine fetches it into the
// backend before the answer (204), so a slow image makes a slow request. An
// image that cannot be fetched or is no ISO is answered 400 with the
// machine's reason. UserName and Password travel to the machine in the URL.
func (s *Server) insertMedia(q *request) error {
	if vid := q.r.PathValue("vid"); vid != cdID {
		return errNotFound("VirtualMedia", vid)
	}
	// The image is fetched while the client waits for the answer: the
	// connection's write deadline (serve.go) would cut a large one.
	_ = http.NewResponseController(q.w).SetWriteDeadline(time.Time{})
	body, err := readBody(q)
	if err != nil {
		return err
	}
	str, err := insertStrings(body)
	if err != nil {
		return err
	}
	image := str["Image"]
	u, err := insertURL(str)
	if err != nil {
		return err
	}
	target := u.String()
	if err := q.sys.Machine.InsertMedia(q.r.Context(), target); err != nil {
		err = scrubbed(fmt.Errorf("%s: %w", insertActionName, err), target, image)
		return fromMachine(err, insertActionName, q.sys.ID)
	}
	s.change(q, "media insert", "image", redactURL(target))
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// insertStrings checks InsertMedia's parameters and returns its string
// ones by name; Image is required.
func insertStrings(body map[string]json.RawMessage) (map[string]string, error) {
	str := map[string]string{}
	for _, k := range sortedKeys(body) {
		switch {
		case isAnnotation(k):
		case !insertParams[k]:
			return nil, errActionParameterUnknown(insertActionName, k)
		case k == "Inserted" || k == "WriteProtected":
			if err := insertTrue(k, body[k]); err != nil {
				return nil, err
			}
		default:
			v, ok := jsonString(body[k])
			if !ok {
				shown := rawValue(body[k])
				if k == "Password" {
					shown = hidden
				}
				return nil, errActionParameterType(insertActionName, k, shown)
			}
			str[k] = v
		}
	}
	if _, ok := str["Image"]; !ok {
		return nil, errActionParameterMissing(insertActionName, "Image")
	}
	return str, nil
}

// insertTrue checks Inserted or WriteProtected: the drive is read-only and
// connected once inserted, so only true (the default) is possible.
func insertTrue(k string, v json.RawMessage) error {
	b, ok := jsonBool(v)
	if !ok {
		return errActionParameterType(insertActionName, k, rawValue(v))
	}
	if !b {
		e := newError(http.StatusBadRequest, "ActionParameterValueConflict", []string{"#/" + k}, k, "false")
		e.detail = "The virtual CD is write-protected and connected when inserted."
		return e
	}
	return nil
}

// insertURL is the URL the machine fetches: Image, checked against the
// transfer parameters, with UserName and Password in it.
func insertURL(str map[string]string) (*url.URL, error) {
	image := str["Image"]
	u, err := url.Parse(image)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e := newError(http.StatusBadRequest, "ActionParameterValueFormatError", []string{"#/Image"}, quote(redactURL(image)), "Image", insertActionName)
		e.detail = "The image must be an http or https URL."
		return nil, e
	}
	if tp, ok := str["TransferProtocolType"]; ok {
		switch {
		case tp != "HTTP" && tp != "HTTPS":
			return nil, errActionParameterNotInList(insertActionName, "TransferProtocolType", tp)
		case tp != strings.ToUpper(u.Scheme):
			e := newError(http.StatusBadRequest, "ActionParameterValueConflict", []string{"#/TransferProtocolType"}, "TransferProtocolType", tp)
			e.detail = "It must match the scheme of Image."
			return nil, e
		}
	}
	if tm, ok := str["TransferMethod"]; ok && tm != "Stream" && tm != "Upload" {
		return nil, errActionParameterNotInList(insertActionName, "TransferMethod", tm)
	}
	if str["UserName"] != "" || str["Password"] != "" {
		u.User = url.UserPassword(str["UserName"], str["Password"])
	}
	return u, nil
}

// ejectMedia disconnects the image. sushy 4.3.3 posts it with no body and
// no Content-Type, and on 400 or 415 again with "{}"; both are accepted.
func (s *Server) ejectMedia(q *request) error {
	if vid := q.r.PathValue("vid"); vid != cdID {
		return errNotFound("VirtualMedia", vid)
	}
	body, err := readBody(q)
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(body) {
		if !isAnnotation(k) {
			return errActionParameterUnknown(ejectActionName, k)
		}
	}
	if err := q.sys.Machine.EjectMedia(q.r.Context()); err != nil {
		return fromMachine(fmt.Errorf("%s: %w", ejectActionName, err), ejectActionName, q.sys.ID)
	}
	s.change(q, "media eject")
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// redactURL is a URL fit for logs and messages: the password and the
// query (which may carry a signed token) are masked.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment, u.RawFragment = "", ""
	return u.Redacted()
}

// scrubbedError is an error whose text has URLs replaced by their
// redacted form; errors.Is still sees the machine's error.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrubbed masks the given URLs in err's text.
func scrubbed(err error, urls ...string) error {
	msg := err.Error()
	for _, u := range urls {
		if r := redactURL(u); r != u {
			msg = strings.ReplaceAll(msg, u, r)
		}
	}
	return &scrubbedError{msg: msg, err: err}
}
