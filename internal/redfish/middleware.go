package redfish

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// ServeHTTP answers one Redfish request. It adds the OData-Version and
// Cache-Control headers every Redfish response carries, refuses an OData
// version other than 4.0, treats a trailing slash as absent (sushy asks for
// /redfish/v1/, others for /redfish/v1), logs the request, and fences a
// panic into a 500 so that a bug costs one request, not the daemon.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // net/http's own way to drop a connection
			}
			s.log.Error("redfish handler panicked", "method", r.Method, "path", r.URL.EscapedPath(), "client", r.RemoteAddr,
				"panic", p, "stack", string(debug.Stack()))
			if !rec.sent {
				// Nothing has gone out: whatever the handler had set
				// (a 200, an ETag) gives way to the 500.
				clear(rec.Header())
				setCommonHeaders(rec.Header())
				rec.status = 0
				newError(http.StatusInternalServerError, "InternalError", nil).write(rec)
			}
			rec.err = nil // logged above, once
		}
		rec.send() // a status without a body (204) is held until here
		s.logRequest(r, rec, time.Since(start))
	}()
	setCommonHeaders(rec.Header())
	r2 := trimSlash(r)
	if v, ok := r.Header["Odata-Version"]; ok && !odataVersionOK(v) {
		// DSP0266 "Request headers": a service shall reject a request
		// for an OData version it does not support with 412.
		e := newError(http.StatusPreconditionFailed, "HeaderInvalid", nil, "OData-Version: "+quote(strings.Join(v, ", ")))
		e.detail = "This service implements OData 4.0."
		e.write(rec)
		rec.err = e
		route := "other"
		if _, pattern := s.mux.Handler(r2); pattern != "/" && pattern != "" {
			route = pattern
		}
		s.observe(route, rec)
		return
	}
	s.mux.ServeHTTP(rec, r2)
}

// Values of headers every response carries, shared by the responses
// (nothing changes a header value in place) so that setting them costs no
// allocation.
var (
	odataVersion4 = []string{"4.0"}
	// noCache: resources change with the VMs (power, boot, media), so a
	// client or proxy may keep one only to revalidate it by its ETag
	// (DSP0266 "Response headers": Cache-Control is required).
	noCache = []string{"no-cache"}
)

// setCommonHeaders sets the headers of every response. The keys are in
// canonical form, as direct assignment needs.
func setCommonHeaders(h http.Header) {
	h["Odata-Version"] = odataVersion4
	h["Cache-Control"] = noCache
}

// odataVersionOK reports whether the OData-Version request header names
// the version served, 4.0.
func odataVersionOK(values []string) bool {
	for _, v := range values {
		if strings.TrimSpace(v) != "4.0" {
			return false
		}
	}
	return true
}

// trimSlash drops a trailing slash from the path (not from "/").
func trimSlash(r *http.Request) *http.Request {
	p := r.URL.Path
	if len(p) < 2 || !strings.HasSuffix(p, "/") {
		return r
	}
	u := *r.URL
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	r2 := new(http.Request)
	*r2 = *r
	r2.URL = &u
	return r2
}

// logRequest writes one line per request: at debug level normally, at warn
// level for a server-side failure with its cause. Headers are never logged:
// Authorization and X-Auth-Token carry secrets.
func (s *Server) logRequest(r *http.Request, rec *recorder, latency time.Duration) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []any{"method", r.Method, "path", r.URL.EscapedPath(), "status", status, "latency", latency, "client", r.RemoteAddr}
	if rec.err != nil && status >= 500 {
		s.log.Warn("redfish request failed", append(attrs, "err", rec.err)...)
		return
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("redfish request", attrs...)
	}
}

// change logs an accepted change of power, boot override or media at info
// level: what the operator reads to learn who did what to a VM.
func (s *Server) change(q *request, what string, attrs ...any) {
	s.log.Info("redfish change", append([]any{"system", q.sys.ID, "client", q.r.RemoteAddr, "change", what}, attrs...)...)
}

// recorder remembers the status and the error of a response for the log,
// and adds the Link header of a resource. The status line is held back
// until the first Write: only the body tells the resource's @odata.type,
// which names the schema the Link header points at (DSP0266 "Link
// header"), and handlers answer through writeResource and apiError.write
// alike, with a status and then the body in one Write.
type recorder struct {
	http.ResponseWriter
	status int
	err    error
	// sent: the status line has gone to the client.
	sent bool
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
}

func (rec *recorder) Write(b []byte) (int, error) {
	if !rec.sent {
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		rec.describe(b)
		rec.send()
	}
	return rec.ResponseWriter.Write(b)
}

// describe adds the Link header of a successful JSON response whose body
// is a typed resource. HEAD is answered by the GET handler, whose body
// net/http drops, so it gets the same header.
func (rec *recorder) describe(body []byte) {
	if rec.status < 200 || rec.status > 299 {
		return
	}
	h := rec.Header()
	if ct := h["Content-Type"]; len(ct) == 0 || !strings.HasPrefix(ct[0], "application/json") {
		return
	}
	if _, ok := h["Link"]; ok {
		return
	}
	if link := linkFor(body); link != nil {
		h["Link"] = link
	}
}

// send writes the held-back status line and headers, once.
func (rec *recorder) send() {
	if rec.sent || rec.status == 0 {
		return
	}
	rec.sent = true
	rec.ResponseWriter.WriteHeader(rec.status)
}

// Unwrap lets http.ResponseController reach the connection.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
