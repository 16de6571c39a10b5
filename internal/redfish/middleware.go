package redfish

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// ServeHTTP answers one Redfish request. It adds the OData-Version header
// every Redfish response carries, treats a trailing slash as absent (sushy
// asks for /redfish/v1/, others for /redfish/v1), logs the request, and
// fences a panic into a 500 so that a bug costs one request, not the daemon.
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
			if rec.status == 0 {
				newError(http.StatusInternalServerError, "InternalError", nil).write(rec)
			}
			rec.err = nil // logged above, once
		}
		s.logRequest(r, rec, time.Since(start))
	}()
	rec.Header().Set("OData-Version", "4.0")
	s.mux.ServeHTTP(rec, trimSlash(r))
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

// recorder remembers the status and the error of a response for the log.
type recorder struct {
	http.ResponseWriter
	status int
	err    error
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
