package redfish

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/guard"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// DefaultSessionTimeout is how long a session lives without requests
// (Redfish's SessionService.SessionTimeout; 30 min is the common BMC value).
const DefaultSessionTimeout = 30 * time.Minute

// System is one bridged VM as Redfish presents it. Its ComputerSystem,
// Manager and Chassis all carry ID.
type System struct {
	// ID names the system in URLs (/redfish/v1/Systems/{ID}), usually the VM
	// name. It is path-escaped in every @odata.id, as Ironic quotes it too.
	ID      string
	Machine machine.Machine
	// Username and Password open this system's resources, by HTTP Basic
	// auth or through a session. A system without both is not served.
	Username, Password string
	// Endpoint names the BMC in the guard: wrong passwords for this
	// system count with its IPMI endpoint's, under this key.
	Endpoint string
}

// Observer receives what the service does, for metrics. Implementations
// must be fast and safe for concurrent use; nothing passed is a secret.
type Observer interface {
	// Request: one answered request, by route pattern and status.
	Request(route string, status int)
	// AuthFailure: wrong credentials, by BMC (or "redfish").
	AuthFailure(bmc string)
	// Lockout: a source locked out after failed logins, by BMC.
	Lockout(bmc string)
}

// Config describes the service.
type Config struct {
	// Systems returns the systems served now, so BMCs come and go without
	// a restart. It is called when Version changes, or for every
	// authenticated request when Version is nil.
	Systems func() []System
	// Version, when set, changes whenever what Systems returns may have:
	// the service then indexes the systems once per change, and a request
	// costs the same with 5 systems or 10,000.
	Version func() uint64
	// Guard, when set, locks out addresses that guess passwords (shared
	// with IPMI, see System.Endpoint).
	Guard *guard.Guard
	// Observer, when set, is told about requests and failed logins.
	Observer Observer
	// ServiceUUID is the service root's UUID. Keep it stable across
	// restarts: Redfish clients use it to recognise a service.
	ServiceUUID string
	// Log receives one debug line per request and an info line per change
	// of power, boot override or media. Nil discards.
	Log *slog.Logger
	// SessionTimeout is the idle lifetime of a session; 0 means
	// DefaultSessionTimeout.
	SessionTimeout time.Duration
	// Now is the clock for session expiry; nil means time.Now.
	Now func() time.Time
}

// Server is the Redfish service, an http.Handler. Serve it with ServeTLS.
type Server struct {
	systems func() []System
	version func() uint64
	guard   *guard.Guard
	obs     Observer

	limits limits // connection limits, see serve.go

	idxMu      sync.Mutex
	idx        *index
	idxVersion uint64

	// sysCache holds each system's last rendering (renderSystem); it is
	// emptied with the index, so it holds only systems that exist.
	sysMu    sync.Mutex
	sysCache map[string]*renderedSystem

	uuid     string
	log      *slog.Logger
	now      func() time.Time
	sessions *sessionStore
	// credKey keys the digests that stand for credentials in sessions, so
	// that no password is kept after the request that carried it.
	credKey []byte
	mux     *http.ServeMux
}

// New returns a service over cfg.Systems.
func New(cfg Config) (*Server, error) {
	if cfg.Systems == nil {
		return nil, errors.New("redfish: Config.Systems is nil")
	}
	if !validUUID(cfg.ServiceUUID) {
		return nil, errors.New("redfish: Config.ServiceUUID must be a UUID (8-4-4-4-12 hex digits)")
	}
	if cfg.SessionTimeout < 0 {
		return nil, errors.New("redfish: Config.SessionTimeout is negative")
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		systems:  cfg.Systems,
		version:  cfg.Version,
		limits:   defaultLimits,
		guard:    cfg.Guard,
		obs:      cfg.Observer,
		uuid:     strings.ToLower(cfg.ServiceUUID),
		log:      cfg.Log,
		now:      cfg.Now,
		sessions: newSessionStore(cfg.SessionTimeout),
		sysCache: map[string]*renderedSystem{},
		credKey:  make([]byte, 32),
		mux:      http.NewServeMux(),
	}
	rand.Read(s.credKey)
	s.routes()
	return s, nil
}

func validUUID(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i, c := range u {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", c):
			return false
		}
	}
	return true
}

// scope says whose credentials an operation needs.
type scope int

const (
	// public: none. sushy reads the service root before it authenticates,
	// and creating a session is how a client authenticates.
	public scope = iota
	// anySystem: the credentials of any system; collections then list only
	// the systems those credentials open.
	anySystem
	// oneSystem: the credentials of the system named by {id}.
	oneSystem
)

// op is what one method does on one route.
type op struct {
	scope scope
	fn    func(*request) error
}

// request is one request in flight, with what authentication found.
type request struct {
	w http.ResponseWriter
	r *http.Request
	// allow is the Allow header of the route (DSP0266 §7.2: sent with GET
	// and 405 responses; sushy falls back to PATCHing VirtualMedia only
	// when it lists PATCH).
	allow string
	// who stands for the caller's credentials.
	who principal
	// visible lists the systems the caller's credentials open.
	visible []System
	// sys is the system {id} names (oneSystem operations).
	sys System
}

// get is the operations of a URL served by GET alone.
func get(sc scope, fn func(*request) error) map[string]op {
	return map[string]op{http.MethodGet: {sc, fn}}
}

// routes is the service's URL space, in one place.
func (s *Server) routes() {
	s.route("/redfish", get(public, s.getVersions))
	s.route("/redfish/v1", get(public, s.getRoot))
	s.route("/redfish/v1/odata", get(public, s.getOData))
	s.route("/redfish/v1/$metadata", get(public, s.getMetadata))
	s.routeServices()
	s.routeSystems()
	s.route("/redfish/v1/Managers", get(anySystem, s.getManagers))
	s.route("/redfish/v1/Managers/{id}", get(oneSystem, s.getManager))

	// The CD drive under both parents: Ironic up to 2023.1 finds it through
	// the Manager, later releases through the System when it links one.
	for _, parent := range []string{"Systems", "Managers"} {
		base := "/redfish/v1/" + parent + "/{id}/VirtualMedia"
		s.route(base, get(oneSystem, s.getMediaCollection))
		s.route(base+"/{vid}", map[string]op{http.MethodGet: {oneSystem, s.getMedia}, http.MethodPatch: {oneSystem, s.patchMedia}})
		s.route(base+"/{vid}/Actions/VirtualMedia.InsertMedia", map[string]op{http.MethodPost: {oneSystem, s.insertMedia}})
		s.route(base+"/{vid}/Actions/VirtualMedia.EjectMedia", map[string]op{http.MethodPost: {oneSystem, s.ejectMedia}})
	}

	s.route("/redfish/v1/Chassis", get(anySystem, s.getChassisCollection))
	s.route("/redfish/v1/Chassis/{id}", get(oneSystem, s.getChassis))

	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		defer s.observe("other", w)
		finish(&request{w: w, r: r}, newError(http.StatusNotFound, "InvalidURI", nil, quote(r.URL.EscapedPath())))
	})
}

// routeServices registers the session and account services.
func (s *Server) routeServices() {
	s.route("/redfish/v1/SessionService", get(anySystem, s.getSessionService))
	s.route("/redfish/v1/SessionService/Sessions", map[string]op{
		http.MethodGet:  {anySystem, s.getSessions},
		http.MethodPost: {public, s.createSession},
	})
	s.route("/redfish/v1/SessionService/Sessions/Members", map[string]op{http.MethodPost: {public, s.createSession}})
	s.route("/redfish/v1/SessionService/Sessions/{sid}", map[string]op{
		http.MethodGet:    {anySystem, s.getSession},
		http.MethodDelete: {anySystem, s.deleteSession},
	})

	s.route("/redfish/v1/AccountService", get(anySystem, s.getAccountService))
	s.route("/redfish/v1/AccountService/Accounts", get(anySystem, s.getAccounts))
	s.route("/redfish/v1/AccountService/Accounts/{aid}", get(anySystem, s.getAccount))
	s.route("/redfish/v1/AccountService/Roles", get(anySystem, s.getRoles))
	s.route("/redfish/v1/AccountService/Roles/{rid}", get(anySystem, s.getRole))
}

// routeSystems registers the systems and what hangs off them.
func (s *Server) routeSystems() {
	s.route("/redfish/v1/Systems", get(anySystem, s.getSystems))
	s.route("/redfish/v1/Systems/{id}", map[string]op{
		http.MethodGet:   {oneSystem, s.getSystem},
		http.MethodPatch: {oneSystem, s.patchSystem},
	})
	s.route("/redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset", map[string]op{http.MethodPost: {oneSystem, s.reset}})
	s.route("/redfish/v1/Systems/{id}/Processors", get(oneSystem, s.getProcessors))
	s.routeInventory()
	s.routeSecureBoot()
	s.routeBios()
	s.route("/redfish/v1/Systems/{id}/Processors/{pid}", get(oneSystem, s.getProcessor))
	s.route("/redfish/v1/Systems/{id}/EthernetInterfaces", get(oneSystem, s.getNICs))
	s.route("/redfish/v1/Systems/{id}/EthernetInterfaces/{nid}", get(oneSystem, s.getNIC))
	s.route("/redfish/v1/Systems/{id}/LogServices", get(oneSystem, s.getLogServices))
	s.route("/redfish/v1/Systems/{id}/LogServices/SEL", get(oneSystem, s.getSEL))
	s.route("/redfish/v1/Systems/{id}/LogServices/SEL/Entries", get(oneSystem, s.getSELEntries))
	s.route("/redfish/v1/Systems/{id}/LogServices/SEL/Entries/{eid}", get(oneSystem, s.getSELEntry))
}

// route registers the operations of one URL. HEAD is served wherever GET
// is (DSP0266 §7.3); any other method gets 405 with the Allow header.
func (s *Server) route(pattern string, ops map[string]op) {
	methods := make([]string, 0, len(ops)+1)
	for m := range ops {
		methods = append(methods, m)
	}
	if _, ok := ops[http.MethodGet]; ok {
		methods = append(methods, http.MethodHead)
	}
	slices.Sort(methods)
	allow := strings.Join(methods, ", ")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		defer s.observe(pattern, w)
		q := &request{w: w, r: r, allow: allow}
		m := r.Method
		if m == http.MethodHead {
			m = http.MethodGet
		}
		o, ok := ops[m]
		if !ok {
			e := newError(http.StatusMethodNotAllowed, "OperationNotAllowed", nil)
			e.header.Set("Allow", allow)
			finish(q, e)
			return
		}
		if err := s.authorize(q, o.scope, kindOf(pattern)); err != nil {
			finish(q, err)
			return
		}
		finish(q, o.fn(q))
	})
}

// observe reports a request's route and status to the Observer.
func (s *Server) observe(route string, w http.ResponseWriter) {
	if s.obs == nil {
		return
	}
	status := http.StatusOK
	if rec, ok := w.(*recorder); ok && rec.status != 0 {
		status = rec.status
	}
	s.obs.Request(route, status)
}

// kindOf names the resource type a per-system route starts from, for 404
// messages.
func kindOf(pattern string) string {
	switch {
	case strings.HasPrefix(pattern, "/redfish/v1/Managers/"):
		return "Manager"
	case strings.HasPrefix(pattern, "/redfish/v1/Chassis/"):
		return "Chassis"
	}
	return "ComputerSystem"
}

// finish answers a failed request with its Redfish error and hands the
// error to the request log; err nil means the handler has answered.
func finish(q *request, err error) {
	if err == nil {
		return
	}
	e := fromMachine(err, "", q.sys.ID)
	if rec, ok := q.w.(*recorder); ok {
		rec.err = e
		if rec.status != 0 {
			return // a handler failed after answering: log only
		}
	}
	e.write(q.w)
}

// Paths of the resources of a system. IDs are escaped so that any VM name
// gives a valid URL.
func systemPath(id string) string  { return "/redfish/v1/Systems/" + url.PathEscape(id) }
func managerPath(id string) string { return "/redfish/v1/Managers/" + url.PathEscape(id) }
func chassisPath(id string) string { return "/redfish/v1/Chassis/" + url.PathEscape(id) }
