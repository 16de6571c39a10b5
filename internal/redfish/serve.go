package redfish

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownGrace is how long ServeTLS lets requests in flight finish after
// its context ends, before it closes their connections.
const shutdownGrace = 5 * time.Second

// ListenAndServeTLS listens on the TCP address addr and serves the Redfish
// service over HTTPS with tc until ctx ends.
func (s *Server) ListenAndServeTLS(ctx context.Context, addr string, tc *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.ServeTLS(ctx, ln, tc)
}

// Connection limits. A slow or greedy client must not starve the others:
// the header must arrive within 10 s and the body within 30 s more (a
// session POST trickled a byte every 5 s used to hold its connection for
// ever), headers are at most 16 KiB (bodies are bounded in json.go), an
// idle keep-alive connection closes after a minute, and one address may
// hold 32 connections, all together 1024 (each is a file descriptor, and
// at the descriptor limit vCenter calls would fail too).
type limits struct {
	readHeader, readBody, write, idle time.Duration
	maxHeaderBytes                    int
	connsPerSource, conns             int
}

var defaultLimits = limits{
	readHeader: 10 * time.Second, readBody: 30 * time.Second, write: time.Minute, idle: time.Minute,
	maxHeaderBytes: 16 << 10, connsPerSource: 32, conns: 1024,
}

// ServeTLS serves the Redfish service over HTTPS with tc on ln until ctx
// ends, and then shuts down gracefully; it closes ln. It returns nil after
// a shutdown and the error otherwise.
//
// Each request gets its own read deadline for the body and write deadline
// for the answer (see limitRequest); an InsertMedia, which answers only
// once the machine has fetched the whole image, is given longer.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener, tc *tls.Config) error {
	hs := &http.Server{
		Handler:           http.HandlerFunc(s.limitRequest),
		TLSConfig:         tc.Clone(),
		ReadHeaderTimeout: s.limits.readHeader,
		IdleTimeout:       s.limits.idle,
		MaxHeaderBytes:    s.limits.maxHeaderBytes,
		// TLS handshake failures (port scanners, clients that distrust the
		// self-signed certificate) are routine: debug level.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(newLimitListener(ln, s.limits.connsPerSource, s.limits.conns), "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// limitRequest sets the request's body and answer deadlines, then serves
// it. The header timeout has already applied.
func (s *Server) limitRequest(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	now := time.Now()
	_ = rc.SetReadDeadline(now.Add(s.limits.readBody))
	_ = rc.SetWriteDeadline(now.Add(s.limits.write)) // InsertMedia lifts it (virtualmedia.go)
	s.ServeHTTP(w, r)
}
