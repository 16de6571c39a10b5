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

// ServeTLS serves the Redfish service over HTTPS with tc on ln until ctx
// ends, and then shuts down gracefully; it closes ln. It returns nil after
// a shutdown and the error otherwise.
//
// There is no write timeout: an InsertMedia answers only once the machine
// has fetched the whole image. Slow clients are bounded by the header and
// idle timeouts.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener, tc *tls.Config) error {
	hs := &http.Server{
		Handler:           s,
		TLSConfig:         tc.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// TLS handshake failures (port scanners, clients that distrust the
		// self-signed certificate) are routine: debug level.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
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
