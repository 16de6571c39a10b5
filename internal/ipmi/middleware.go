package ipmi

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"
)

// logRequests writes one debug line per request: command, completion code,
// latency and, in a session, the client address; and an info line for each
// accepted change of power or boot device and each SEL clear. Request data
// is never logged: Set User Password carries a password.
func logRequests(log *slog.Logger) handlers.Middleware {
	return func(next handlers.Handler) handlers.Handler {
		return handlers.HandlerFunc(func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
			start := time.Now()
			resp, cc, err := next.Handle(ctx, hctx, req)
			if err != nil && cc == types.CodeOK {
				cc = types.CodeUnspecifiedError // what go-ipmi's server sends
			}
			name := commandName(hctx)
			attrs := []any{"client", clientAddr(hctx), "command", name, "cc", fmt.Sprintf("0x%02x", uint8(cc)), "latency", time.Since(start)}
			switch {
			case err != nil && cc != types.CodeInvalidCommand:
				log.Warn("ipmi request failed", append(attrs, "err", err)...)
			case log.Enabled(ctx, slog.LevelDebug):
				log.Debug("ipmi request", attrs...)
			}
			if cc == types.CodeOK && isChange(hctx, req) {
				log.Info("ipmi change", "client", clientAddr(hctx), "command", name, "request", fmt.Sprintf("% x", req))
			}
			return resp, cc, err
		})
	}
}

// isChange reports the requests that change the VM: Chassis Control, and
// Set System Boot Options parameter 5; and Clear SEL's erase, which hides
// the VM's events from this BMC's SEL. Their bytes carry no secret and each
// is worth an info line.
func isChange(hctx *handlers.HandlerContext, req []byte) bool {
	if hctx == nil {
		return false
	}
	switch hctx.Command {
	case types.CommandChassisControl:
		return true
	case types.CommandSetSystemBootOptions:
		return len(req) > 0 && req[0]&0x7F == paramBootFlags
	case types.CommandClearSEL:
		return len(req) == 6 && req[5] == clearInitiate
	}
	return false
}

func commandName(hctx *handlers.HandlerContext) string {
	if hctx == nil {
		return ""
	}
	c := hctx.Command
	if c.Name != "" {
		return c.Name
	}
	return fmt.Sprintf("netfn=0x%02x cmd=0x%02x", uint8(c.NetFn), c.ID)
}

// clientAddr is the console's address for in-session requests; go-ipmi
// records it only for RMCP+ sessions.
func clientAddr(hctx *handlers.HandlerContext) string {
	if hctx != nil && hctx.Session != nil {
		if a := hctx.Session.GetAddr(); a != nil {
			return a.String()
		}
	}
	return ""
}

// fencePanics turns a panic in one handler into an FFh answer and one error
// log line, so that a bug costs one request and not the daemon (as CoreDNS's
// server does per query).
func fencePanics(log *slog.Logger, obs Observer) handlers.Middleware {
	return func(next handlers.Handler) handlers.Handler {
		return handlers.HandlerFunc(func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) (resp []byte, cc types.CompletionCode, err error) {
			defer func() {
				if p := recover(); p != nil {
					log.Error("ipmi handler panicked", "command", commandName(hctx), "panic", p, "stack", string(debug.Stack()))
					if obs != nil {
						obs.Panic()
					}
					resp, cc, err = nil, types.CodeUnspecifiedError, fmt.Errorf("handler panic: %v", p)
				}
			}()
			return next.Handle(ctx, hctx, req)
		})
	}
}
