// Package ipmi owns the IPMI side of the bridge: one endpoint per bridged VM
// (RMCP+ lanplus with cipher suites 3 and 17, IPMI 1.5 lan with MD5), its
// datagram loop and what that loop accepts (wire.go, server.go), session
// setup with per-source lockout and flood limits (guard.go,
// handshakes.go), the handlers that answer Chassis, identity, sensor, SEL,
// FRU and DCMI commands from a machine.Machine, Serial-over-LAN to the
// machine's serial console (sol.go), and the middleware that
// logs every request, enforces privileges and fences panics. go-ipmi
// provides the message types, the RAKP handshake and key derivation, the
// RMCP+ session store and the handler registry; its own server loop is not
// used (see server.go).
package ipmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/rawsock"
)

// VMwareIANA is VMware's IANA enterprise number, reported in Get Device ID.
// It is neutral for clients: Ironic changes behaviour only for Supermicro
// (10876), pyghmi loads OEM code only for Lenovo/IBM numbers.
const VMwareIANA = 6876

// DefaultSessionLimit is the number of concurrent sessions one BMC accepts.
// go-ipmi's default of 4 (the spec minimum) refuses the fifth parallel
// ipmitool, and Ironic runs several per conductor.
const DefaultSessionLimit = 32

// Config describes one endpoint.
type Config struct {
	// Address is the UDP host:port to listen on (port 0 for an ephemeral one).
	Address  string
	Username string
	Password string
	// SessionLimit caps concurrent sessions; 0 means DefaultSessionLimit.
	SessionLimit int
	// SessionTimeout ends sessions idle that long; 0 means go-ipmi's 60 s
	// (IPMI v2.0 §6.12.15 suggests 60 s; the seed used 5 minutes).
	SessionTimeout time.Duration
	// SOLPort is the UDP port consoles are told to reach the SOL payload
	// on (Activate Payload, SOL parameter #8); 0 means the port Address
	// binds. Behind port translation (NAT, a container's published port)
	// it is the port consoles send to: ipmitool, FreeIPMI and pyghmi
	// refuse SOL on a port other than the one they logged in to.
	SOLPort int
	// Observer receives requests and session events, for metrics; one
	// that is also a SOLObserver, SOL payloads and their bytes.
	Observer Observer
	// Guard locks out password guessers and throttles session setup; it is
	// shared by all endpoints. Nil guards nothing.
	Guard *guard.Guard
	Log   *slog.Logger
}

// Credential limits of IPMI v2.0: a user name of at most 16 bytes (§22.28
// Set User Name) and a password of at most 20 (§22.30, IPMI 2.0
// passwords; 1.5 sessions use the first 16). The configuration checks them
// too, with the file's line, before an endpoint is built.
const (
	MaxUsername = 16
	MaxPassword = bmc.MaxPasswordLen
)

// Endpoint is one virtual BMC serving one machine.
type Endpoint struct {
	conn rawsock.PacketConn
	srv  *server
}

// Listen binds the endpoint's UDP socket and builds its BMC from the
// machine's identity. Serve starts answering.
func Listen(ctx context.Context, m machine.Machine, cfg Config) (*Endpoint, error) {
	if cfg.Username == "" || strings.ContainsRune(cfg.Username, 0) || len(cfg.Username) > MaxUsername {
		return nil, fmt.Errorf("ipmi username %q: must be 1 to %d bytes", cfg.Username, MaxUsername)
	}
	if len(cfg.Password) > MaxPassword {
		return nil, fmt.Errorf("ipmi password: longer than %d bytes", bmc.MaxPasswordLen)
	}
	if cfg.SOLPort < 0 || cfg.SOLPort > 65535 {
		return nil, fmt.Errorf("ipmi SOL port %d: must be 1 to 65535, or 0 for the bound port", cfg.SOLPort)
	}
	id, err := m.Identity(ctx)
	if err != nil {
		return nil, err
	}
	guid, err := SMBIOSGUID(id.UUID)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", id.Name, err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}

	st, err := newStorage(id)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", id.Name, err)
	}
	b, err := newBMC(guid, st, m, cfg)
	if err != nil {
		return nil, err
	}

	conn, err := listenUDP(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("vm %s: listen %s: %w", id.Name, cfg.Address, err)
	}
	e := &Endpoint{conn: conn}
	e.srv = newServer(conn, b, m, cfg, log)
	return e, nil
}

// newServer builds the loop that serves b on conn.
func newServer(conn rawsock.PacketConn, b *bmc.BMC, m machine.Machine, cfg Config, log *slog.Logger) *server {
	endpoint := conn.LocalAddr().String()
	t := newTracker(endpoint, cfg.Observer)
	timeout := cfg.SessionTimeout
	if timeout <= 0 {
		timeout = bmc.DefaultInactivityTimeout
	}
	s := &server{
		conn: conn, bmc: b, guard: cfg.Guard, obs: cfg.Observer, log: log, endpoint: endpoint,
		limit: sessionLimit(cfg), timeout: timeout, hs: newHandshakes(), tracker: t, now: time.Now,
		sessions: map[uint32]*session{}, v15: map[uint32]*v15session{}, v15Temp: map[uint32]v15Activation{}, recent: map[uint32]recentRAKP{}, actions: make(chan struct{}, maxActions),
	}
	s.reg = newRegistry(m, log, t)
	s.reg.RegisterFunc(types.CommandGetSessionInfo, s.sessionInfo)
	s.wireSOL(cfg)
	return s
}

// sessionLimit is the configured limit, at most 250: session handles are
// one byte (§22.20).
func sessionLimit(cfg Config) int {
	if cfg.SessionLimit > 0 {
		return min(cfg.SessionLimit, 250)
	}
	return DefaultSessionLimit
}

// Pending counts the sessions in setup (handshakes not yet completed).
func (e *Endpoint) Pending() int { return e.srv.hs.len() }

// Sessions lists the endpoint's open sessions.
func (e *Endpoint) Sessions() []SessionInfo { return e.srv.tracker.list() }

// Requests counts the requests the endpoint has answered.
func (e *Endpoint) Requests() uint64 { return e.srv.tracker.count() }

// newBMC builds the BMC state: identity, the SDR repository and FRU data in
// st, m's serial console for SOL if it offers one, one administrator user
// on the LAN channel, and the session store.
func newBMC(guid [16]byte, st hal.StorageHAL, m machine.Machine, cfg Config) (*bmc.BMC, error) {
	info := bmc.DeviceInfo{
		DeviceID:                0x20,
		DeviceRevision:          0x01,
		FirmwareMajor:           1,
		FirmwareMinor:           0x00,
		IPMIVersion:             0x02, // BCD, least significant digit in bits 7:4: 2.0
		ManufacturerID:          VMwareIANA,
		ProductID:               0x0001,
		AdditionalDeviceSupport: 0x80 | 0x04, // chassis and SEL device (Table 20-2); go-ipmi adds SDR and FRU
	}
	h := nullHAL{storage: st}
	if c := newSOLConsole(m); c != nil {
		h.console = c // never a nil *solConsole: go-ipmi tests the interface for nil
	}
	b := bmc.New(info, guid, h, bmc.WithClock(clock.Real))
	user, err := b.Users.Add(2, cfg.Username)
	if err != nil {
		return nil, err
	}
	user.SetPassword([]byte(cfg.Password))
	user.Enabled = true
	user.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}
	return b, nil
}

// Addr is the bound UDP address.
func (e *Endpoint) Addr() net.Addr { return e.conn.LocalAddr() }

// Serve answers requests until ctx ends or Close is called.
func (e *Endpoint) Serve(ctx context.Context) error {
	err := e.srv.serve(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Close stops the endpoint and releases its socket, and its SOL payload's
// console.
func (e *Endpoint) Close() error {
	err := e.conn.Close()
	e.srv.bmc.SOL.CloseAll()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// newRegistry builds the command table: go-ipmi's standard handlers, ours
// over the machine on top, and the middleware around all of them. Commands
// nobody registered still pass the middleware and get C1h ("invalid
// command"), never silence: ipmitool probes HPM.2, PICMG and VITA on every
// invocation and would otherwise wait out its timeout.
func newRegistry(m machine.Machine, log *slog.Logger, t *tracker) *handlers.Registry {
	r := handlers.NewRegistry()
	r.Use(logRequests(log))
	r.Use(t.middleware)
	r.Use(fencePanics(log, t.obs))
	r.Use(requirePrivilege)
	handlers.RegisterAllHandlers(r)
	r.RegisterFunc(types.CommandCloseSession, closeSession)
	registerUsersReadOnly(r)
	(&chassis{m: m}).register(r)
	registerApp(r)
	registerSDR(r)
	(&sensors{m: m}).register(r)
	(&sel{m: m}).register(r)
	registerDCMI(r)
	return r
}

// nullHAL has no hardware: every subsystem the bridge serves is answered by
// its own handlers from the machine, so go-ipmi's HAL-backed handlers that
// remain answer "not supported". Storage and the console (SOL) are the
// exceptions.
type nullHAL struct {
	storage hal.StorageHAL
	console hal.ConsoleHAL
}

func (nullHAL) Chassis() hal.ChassisHAL { return nil }
func (nullHAL) Sensors() hal.SensorHAL  { return nil }
func (nullHAL) Network() hal.NetworkHAL { return nil }
func (nullHAL) GPIO() hal.GPIOHAL       { return nil }
func (nullHAL) I2C() hal.I2CHAL         { return nil }
func (nullHAL) Close() error            { return nil }

// Console is the machine's serial console (sol.go), nil without one.
func (h nullHAL) Console() hal.ConsoleHAL { return h.console }

// Storage holds the endpoint's SDR repository and FRU data (storage.go),
// which go-ipmi's Get SDR and FRU handlers read.
func (h nullHAL) Storage() hal.StorageHAL { return h.storage }

// registerApp adds the App commands go-ipmi lacks or answers wrongly for a
// bridge.
func registerApp(r *handlers.Registry) {
	// Get System GUID (§22.14): FreeIPMI bmc-info and `ipmitool mc guid`
	// ask for it; the answer is the VM's BIOS UUID, as in RAKP2.
	r.RegisterFunc(types.CommandGetSystemGUID, func(_ context.Context, hctx *handlers.HandlerContext, _ []byte) ([]byte, types.CompletionCode, error) {
		g := hctx.BMC.GUID
		return g[:], types.CodeOK, nil
	})
	// Cold and Warm Reset (§20.2, §20.3) reset the BMC, not the system: a
	// virtual BMC has nothing to reinitialise, so they succeed and leave
	// the VM alone.
	reset := func(context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error) {
		return nil, types.CodeOK, nil
	}
	r.RegisterFunc(types.CommandColdReset, reset)
	r.RegisterFunc(types.CommandWarmReset, reset)
}
