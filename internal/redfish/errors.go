package redfish

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// registryPrefix names the DMTF Base message registry the MessageIds come
// from (Redfish Specification DSP0266 §9.6: "RegistryName.Major.Minor.Key").
const registryPrefix = "Base.1.16."

// retryAfter is the number of seconds a client is asked to wait when the
// backend is away or busy. sushy retries a failed GET every 3 s.
const retryAfter = 3

// message is one entry of the Base registry: the text with %1..%n for its
// arguments, the severity and the resolution it recommends.
type message struct {
	text, severity, resolution string
}

// registry holds the Base messages this service sends. sushy shows the
// first Critical (else Warning) message of @Message.ExtendedInfo to Ironic's
// operator, so these texts are what a failed deployment reports.
var registry = map[string]message{
	"ActionNotSupported":               {"The action %1 is not supported by the resource.", "Critical", "The action supplied cannot be resubmitted to the implementation."},
	"ActionParameterMissing":           {"The action %1 requires the parameter %2 to be present in the request body.", "Critical", "Supply the action with the required parameter in the request body when the request is resubmitted."},
	"ActionParameterUnknown":           {"The action %1 was submitted with the invalid parameter %2.", "Warning", "Correct the invalid action parameter and resubmit the request if the operation failed."},
	"ActionParameterValueConflict":     {"The parameter '%1' with the requested value of '%2' does not meet the constraints of the implementation.", "Warning", "Correct the value and resubmit the request."},
	"ActionParameterValueFormatError":  {"The value '%1' for the parameter %2 in the action %3 is of a different format than the parameter can accept.", "Warning", "Correct the value for the parameter in the request body and resubmit the request if the operation failed."},
	"ActionParameterValueNotInList":    {"The value '%1' for the parameter %2 in the action %3 is not in the list of acceptable values.", "Warning", "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."},
	"ActionParameterValueTypeError":    {"The value '%1' for the parameter %2 in the action %3 is of a different type than the parameter can accept.", "Warning", "Correct the value for the parameter in the request body and resubmit the request if the operation failed."},
	"CreateFailedMissingReqProperties": {"The create operation failed because the required property %1 was missing from the request.", "Critical", "Correct the body to include the required property with a valid value and resubmit the request if the operation failed."},
	"GeneralError":                     {"A general error has occurred.", "Critical", "None."},
	"HeaderInvalid":                    {"Header '%1' is invalid.", "Critical", "Resubmit the request with a valid HTTP header."},
	"InternalError":                    {"The request failed due to an internal service error.  The service is still operational.", "Critical", "Resubmit the request.  If the problem persists, consider resetting the service."},
	"InvalidURI":                       {"The URI %1 was not found.", "Critical", "Provide a valid URI and resubmit the request."},
	"MalformedJSON":                    {"The request body submitted was malformed JSON and could not be parsed by the receiving service.", "Critical", "Ensure that the request body is valid JSON and resubmit the request."},
	"NoValidSession":                   {"There is no valid session established with the implementation.", "Critical", "Establish a session or supply valid HTTP Basic credentials before attempting any operations."},
	"OperationNotAllowed":              {"The HTTP method is not allowed on this resource.", "Critical", "Use a method listed in the Allow header."},
	"PayloadTooLarge":                  {"The supplied payload exceeds the maximum size supported by the service.", "Critical", "Check that the supplied payload is correct and supported by this service."},
	"PreconditionFailed":               {"The ETag supplied did not match the ETag required to change this resource.", "Critical", "Try the operation again using the appropriate ETag."},
	"PropertyNotWritable":              {"The property %1 is a read only property and cannot be assigned a value.", "Warning", "Remove the property from the request body and resubmit the request if the operation failed."},
	"PropertyUnknown":                  {"The property %1 is not in the list of valid properties for the resource.", "Warning", "Remove the unknown property from the request body and resubmit the request if the operation failed."},
	"PropertyValueNotInList":           {"The value '%1' for the property %2 is not in the list of acceptable values.", "Warning", "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."},
	"PropertyValueTypeError":           {"The value '%1' for the property %2 is of a different type than the property can accept.", "Warning", "Correct the value for the property in the request body and resubmit the request if the operation failed."},
	"ResourceNotFound":                 {"The requested resource of type %1 named '%2' was not found.", "Critical", "Provide a valid resource identifier and resubmit the request."},
	"ServiceTemporarilyUnavailable":    {"The service is temporarily unavailable.  Retry in %1 seconds.", "Critical", "Wait for the indicated retry duration and retry the operation."},
	"SessionLimitExceeded":             {"The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.", "Critical", "Reduce the number of other sessions before trying to establish the session."},
}

// apiError is a failed request: the HTTP status and the Base message that
// the client sees, the headers that go with them, and the cause for the log.
type apiError struct {
	status  int
	id      string   // registry key
	args    []string // message arguments
	related []string // JSON pointers of the properties concerned
	// detail, when set, adds what went wrong in this instance to the message.
	detail string
	// header holds Allow, Retry-After and WWW-Authenticate as the status needs.
	header http.Header
	cause  error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.cause.Error()
	}
	return e.text()
}

func (e *apiError) Unwrap() error { return e.cause }

func newError(status int, id string, related []string, args ...string) *apiError {
	return &apiError{status: status, id: id, related: related, args: args, header: http.Header{}}
}

// text is the message with its arguments filled in, and the instance detail.
func (e *apiError) text() string {
	t := registry[e.id].text
	for i, a := range e.args {
		t = strings.ReplaceAll(t, "%"+strconv.Itoa(i+1), a)
	}
	switch {
	case e.detail == "":
		return t
	case e.id == "GeneralError":
		return e.detail // the registry text says nothing on its own
	}
	return t + " " + e.detail
}

// body is the Redfish error response (DSP0266 §9.6 "Error responses").
func (e *apiError) body() any {
	m := registry[e.id]
	args, related := e.args, e.related
	if args == nil {
		args = []string{}
	}
	if related == nil {
		// Always present: sushy indexes RelatedProperties of the first
		// message of an ActionParameterMissing without checking.
		related = []string{}
	}
	info := map[string]any{
		"@odata.type":       "#Message.v1_1_1.Message",
		"MessageId":         registryPrefix + e.id,
		"Message":           e.text(),
		"MessageArgs":       args,
		"RelatedProperties": related,
		"Severity":          m.severity,
		"MessageSeverity":   m.severity,
		"Resolution":        m.resolution,
	}
	return map[string]any{"error": map[string]any{
		"code":                  registryPrefix + e.id,
		"message":               e.text(),
		"@Message.ExtendedInfo": []any{info},
	}}
}

// write sends the error. It is the only writer of error responses.
func (e *apiError) write(w http.ResponseWriter) {
	b, err := json.MarshalIndent(e.body(), "", "  ")
	if err != nil {
		// Only strings and slices of strings: cannot fail.
		panic(err)
	}
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(e.status)
	w.Write(b)
}

// fromMachine maps an error of a machine.Machine call to the Redfish status
// and message the client gets: the only such mapping (the IPMI side's is
// ipmi.completionCode). action names the Redfish action for
// ActionNotSupported; sysID the system, for ResourceNotFound.
func fromMachine(err error, action, sysID string) *apiError {
	var e *apiError
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, machine.ErrBusy), errors.Is(err, machine.ErrUnavailable):
		// 503 with Retry-After: vCenter away or the VM busy with another
		// task; retrying later works (sushy retries GETs by itself).
		e = newError(http.StatusServiceUnavailable, "ServiceTemporarilyUnavailable", nil, strconv.Itoa(retryAfter))
		e.header.Set("Retry-After", strconv.Itoa(retryAfter))
	case errors.Is(err, machine.ErrInvalidState):
		// 409: a reset or NMI of a powered-off VM, a guest shutdown
		// without VMware Tools. The request is fine; the state is not.
		e = newError(http.StatusConflict, "GeneralError", nil)
	case errors.Is(err, machine.ErrUnsupported):
		if action == "" {
			action = "requested"
		}
		e = newError(http.StatusBadRequest, "ActionNotSupported", nil, action)
	case errors.Is(err, machine.ErrInvalidArgument):
		// An ISO that cannot be fetched, a device the VM lacks.
		e = newError(http.StatusBadRequest, "GeneralError", nil)
	case errors.Is(err, machine.ErrNotFound):
		e = newError(http.StatusNotFound, "ResourceNotFound", nil, "ComputerSystem", sysID)
	default:
		// The cause may hold backend internals: logged, not sent.
		e = newError(http.StatusInternalServerError, "InternalError", nil)
		e.cause = err
		return e
	}
	e.detail = err.Error()
	e.cause = err
	return e
}

// quote shortens a client-supplied value for an error message, so that a
// message never grows with the request.
func quote(v string) string {
	const max = 64
	if len(v) > max {
		return v[:max] + "..."
	}
	return v
}

// rawValue renders a JSON value of the wrong type for an error message.
func rawValue(raw json.RawMessage) string {
	return quote(strings.TrimSpace(string(raw)))
}

// hidden stands for the value of a secret in an error message.
const hidden = "(hidden)"

func errMalformed(detail string) *apiError {
	e := newError(http.StatusBadRequest, "MalformedJSON", nil)
	e.detail = detail
	return e
}

// errUnauthorized is a 401 with the Basic challenge; detail says why
// without telling a wrong user name from a wrong password.
func errUnauthorized(detail string) *apiError {
	e := newError(http.StatusUnauthorized, "NoValidSession", nil)
	e.detail = detail
	e.header.Set("WWW-Authenticate", `Basic realm="Redfish", charset="UTF-8"`)
	return e
}

// errLockedOut answers an address locked out after failed logins: 429
// with Retry-After, the time left, so that a client backs off rather than
// adding failures.
func errLockedOut(wait time.Duration) *apiError {
	secs := strconv.Itoa(int(wait.Round(time.Second)/time.Second) + 1)
	e := newError(http.StatusTooManyRequests, "ServiceTemporarilyUnavailable", nil, secs)
	e.detail = "Too many failed logins from this address; it is locked out for now."
	e.header.Set("Retry-After", secs)
	return e
}

func errNotFound(kind, name string) *apiError {
	return newError(http.StatusNotFound, "ResourceNotFound", nil, kind, quote(name))
}

func errActionParameterMissing(action, param string) *apiError {
	return newError(http.StatusBadRequest, "ActionParameterMissing", []string{"#/" + param}, action, param)
}

func errActionParameterUnknown(action, param string) *apiError {
	return newError(http.StatusBadRequest, "ActionParameterUnknown", []string{"#/" + param}, action, quote(param))
}

func errActionParameterType(action, param, value string) *apiError {
	return newError(http.StatusBadRequest, "ActionParameterValueTypeError", []string{"#/" + param}, value, param, action)
}

func errActionParameterNotInList(action, param, value string) *apiError {
	return newError(http.StatusBadRequest, "ActionParameterValueNotInList", []string{"#/" + param}, quote(value), param, action)
}

func errPropertyType(pointer, prop, value string) *apiError {
	return newError(http.StatusBadRequest, "PropertyValueTypeError", []string{pointer}, value, prop)
}

func errPropertyNotInList(pointer, prop, value string) *apiError {
	return newError(http.StatusBadRequest, "PropertyValueNotInList", []string{pointer}, quote(value), prop)
}
