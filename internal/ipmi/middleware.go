package ipmi

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
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
				cc = types.CodeUnspecifiedError // what the server sends
			}
			// Attributes are built only for a line that is written: this
			// runs for every request.
			failed := err != nil && cc != types.CodeInvalidCommand
			if failed || log.Enabled(ctx, slog.LevelDebug) {
				attrs := []any{"client", clientAddr(hctx), "command", commandName(hctx), "cc", ccText[cc], "latency", time.Since(start)}
				if failed {
					log.Warn("ipmi request failed", append(attrs, "err", err)...)
				} else {
					log.Debug("ipmi request", attrs...)
				}
			}
			if cc == types.CodeOK && isChange(hctx, req) {
				log.Info("ipmi change", "client", clientAddr(hctx), "command", commandName(hctx), "request", fmt.Sprintf("% x", req))
			}
			return resp, cc, err
		})
	}
}

// ccText is each completion code as the logs and metrics print it.
var ccText = func() (t [256]string) {
	for i := range t {
		t[i] = fmt.Sprintf("0x%02x", i)
	}
	return t
}()

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

// changePrivilege is the privilege IPMI v2.0 Appendix G requires of the
// commands that change the machine or the BMC, where go-ipmi asks for less
// (it lets a User session set the boot device). Keyed by request NetFn and
// command.
var changePrivilege = map[[2]uint8]bmc.PrivilegeLevel{
	{0x00, 0x02}: bmc.PrivilegeLevelOperator,      // Chassis Control
	{0x00, 0x03}: bmc.PrivilegeLevelOperator,      // Chassis Reset
	{0x00, 0x04}: bmc.PrivilegeLevelOperator,      // Chassis Identify
	{0x00, 0x05}: bmc.PrivilegeLevelAdministrator, // Set Chassis Capabilities
	{0x00, 0x06}: bmc.PrivilegeLevelOperator,      // Set Power Restore Policy
	{0x00, 0x08}: bmc.PrivilegeLevelOperator,      // Set System Boot Options
	{0x00, 0x0A}: bmc.PrivilegeLevelAdministrator, // Set Front Panel Enables
	{0x00, 0x0B}: bmc.PrivilegeLevelAdministrator, // Set Power Cycle Interval
	{0x04, 0x01}: bmc.PrivilegeLevelAdministrator, // Set Event Receiver
	{0x04, 0x02}: bmc.PrivilegeLevelOperator,      // Platform Event
	{0x04, 0x26}: bmc.PrivilegeLevelOperator,      // Set Sensor Thresholds
	{0x06, 0x02}: bmc.PrivilegeLevelAdministrator, // Cold Reset
	{0x06, 0x03}: bmc.PrivilegeLevelAdministrator, // Warm Reset
	{0x06, 0x22}: bmc.PrivilegeLevelOperator,      // Reset Watchdog Timer
	{0x06, 0x24}: bmc.PrivilegeLevelOperator,      // Set Watchdog Timer
	{0x06, 0x2E}: bmc.PrivilegeLevelAdministrator, // Set BMC Global Enables
	{0x06, 0x40}: bmc.PrivilegeLevelAdministrator, // Set Channel Access
	{0x06, 0x58}: bmc.PrivilegeLevelAdministrator, // Set System Info Parameters
	{0x0A, 0x12}: bmc.PrivilegeLevelOperator,      // Write FRU Data
	{0x0A, 0x27}: bmc.PrivilegeLevelOperator,      // Clear SDR Repository
	{0x0A, 0x44}: bmc.PrivilegeLevelOperator,      // Add SEL Entry
	{0x0A, 0x46}: bmc.PrivilegeLevelOperator,      // Delete SEL Entry
	{0x0A, 0x47}: bmc.PrivilegeLevelOperator,      // Clear SEL
	{0x0A, 0x49}: bmc.PrivilegeLevelOperator,      // Set SEL Time
}

// requirePrivilege refuses a command of changePrivilege with D4h
// (insufficient privilege level) in a session below its level. Requests
// outside a session never get here with such a command: the front door
// lets only discovery and session setup through (wire.go).
func requirePrivilege(next handlers.Handler) handlers.Handler {
	return handlers.HandlerFunc(func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
		if hctx != nil {
			need, ok := changePrivilege[[2]uint8{uint8(hctx.Command.NetFn), hctx.Command.ID}]
			if ok && sessionPrivilege(hctx) < need {
				return nil, types.CodeInsufficientPrivilege, nil
			}
		}
		return next.Handle(ctx, hctx, req)
	})
}

func sessionPrivilege(hctx *handlers.HandlerContext) bmc.PrivilegeLevel {
	switch {
	case hctx.Session != nil:
		return hctx.Session.PrivilegeLevel
	case hctx.V15Session != nil:
		return hctx.V15Session.PrivilegeLevel
	}
	return bmc.PrivilegeLevelNoAccess
}

// registerUsersReadOnly refuses the commands that change users (§22.26,
// §22.28, §22.29, §24.6) with C1h: the bridge's users come from its
// configuration, which Redfish and `bmc show` read too, so a password
// changed over IPMI would split them (and its "test password" operation is
// a password oracle). Get User Access and Get User Name keep answering.
func registerUsersReadOnly(r *handlers.Registry) {
	refuse := func(context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error) {
		return nil, types.CodeInvalidCommand, nil
	}
	for _, c := range []types.Command{
		types.CommandSetUserAccess, types.CommandSetUsername, types.CommandSetUserPassword, types.CommandSetUserPayloadAccess,
		// Session setup is served before the registry (v15.go); inside a
		// session these would reach go-ipmi's unused 1.5 session table.
		types.CommandGetSessionChallenge, types.CommandActivateSession,
	} {
		r.RegisterFunc(c, refuse)
	}
}
