// Package metrics owns the bridge's Prometheus metrics and the handler of
// its HTTP endpoint (/metrics, /healthz, /readyz): IPMI requests by command and
// completion code with their latency, sessions, authentication failures,
// power, boot and media actions, vCenter requests by method, the state
// of the vCenter connection, and the serial consoles (per VM, from the
// console concentrator) with IPMI's Serial-over-LAN sessions. Nothing here
// carries a secret, and no console content.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

const ns = "ipmi_vmware_bridge"

// Metrics is the bridge's set of metrics, registered in its own registry.
type Metrics struct {
	Registry *prometheus.Registry

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	handlesMu    sync.RWMutex
	handles      map[requestLabels]requestHandles // see Request
	sessions     *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	actions      *prometheus.CounterVec
	panics       prometheus.Counter
	dropped      *prometheus.CounterVec
	replays      prometheus.Counter
	lockouts     *prometheus.CounterVec

	redfishRequests, redfishAuthFailures *prometheus.CounterVec

	media mediaMetrics
	sol   *prometheus.GaugeVec // see SOLActive
	// solBytes: see SOLBytes
	solBytes *prometheus.CounterVec
	// enrollExhausted and enrollVMs are enrolment's (enroll.Observer).
	enrollExhausted *prometheus.CounterVec
	enrollVMs       prometheus.Gauge
}

// mediaMetrics are virtual media's (vsphere.MediaObserver).
type mediaMetrics struct {
	bytes, reused, collected prometheus.Counter
	uploads                  prometheus.Gauge
}

// VCenterSample is one vCenter as the metrics read it at a scrape.
type VCenterSample struct {
	// Name is the vCenter's configured name, the vcenter label.
	Name string
	// Connected: its inventory is in sync.
	Connected bool
	// Requests are the API calls sent, by method.
	Requests map[string]uint64
}

// New registers the bridge's metrics. vcenters reports each vCenter's
// requests and whether its inventory is in sync; sessions reports the
// sessions open and in setup on each BMC. Either may be nil.
func New(vcenters func() []VCenterSample, sessions func() (active, pending map[string]int)) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		handles:  map[requestLabels]requestHandles{},
		requests: counterVec("ipmi_requests_total",
			"IPMI requests answered, by command and completion code (all BMCs: a label per BMC would multiply the series by a thousand).", "command", "cc"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "ipmi_request_duration_seconds",
			Help:    "Time to answer an IPMI request, by command (handler time; the wire adds little).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"command"}),
		sessions: counterVec("ipmi_sessions_total",
			"IPMI session events by BMC: opened, closed (by the console), expired (idle), refused (no slot or lockout).", "bmc", "event"),
		authFailures: counterVec("ipmi_auth_failures_total", "Failed IPMI authentications (unknown user or wrong password), by BMC.", "bmc"),
		actions:      counterVec("machine_actions_total", "Power, boot and media actions on VMs, by kind and result (ok or the error class).", "action", "result"),
		panics:       counter("handler_panics_total", "Request handlers or datagrams whose handling panicked; each cost that request only and the daemon lived on."),
		dropped: counterVec("ipmi_datagrams_dropped_total",
			"IPMI datagrams answered with silence, by reason (malformed, unknown session, failed authentication, replay, refused setup, ...).", "reason"),
		replays: counter("ipmi_replays_refused_total", "Authenticated in-session IPMI packets refused because their sequence number had been received already."),
		lockouts: counterVec("lockouts_total",
			"Source addresses locked out of a BMC after failed IPMI or Redfish logins (one guard: the same password), by BMC (\"redfish\" for logins that named none).", "bmc"),
		redfishRequests:     counterVec("redfish_requests_total", "Redfish requests answered, by route pattern and HTTP status.", "route", "status"),
		redfishAuthFailures: counterVec("redfish_auth_failures_total", "Redfish requests with wrong credentials, by BMC (\"redfish\" when the path named none).", "bmc"),
		enrollExhausted: counterVec("enroll_pool_exhausted_total",
			"VMs an enrolment rule matched that got no BMC because its address and port pool was full, by rule (enroll[N]), counted at each evaluation.", "rule"),
		enrollVMs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "enroll_vms",
			Help: "VMs holding an enrolment assignment (an address and port kept while they match, and for the grace period after).",
		}),
		sol:      newSOLGauge(), // console.go
		solBytes: newSOLBytes(),
		media: mediaMetrics{
			bytes: counter("media_uploaded_bytes_total", "Bytes of virtual-media images streamed from their sources to the datastore."),
			uploads: prometheus.NewGauge(prometheus.GaugeOpts{
				Namespace: ns, Name: "media_uploads_in_flight",
				Help: "Virtual-media images being uploaded to the datastore now.",
			}),
			reused: counter("media_copies_reused_total",
				"Inserts served by a datastore copy: the source proved the image unchanged (304), or the fetched bytes matched a copy's SHA-256."),
			collected: counter("media_copies_collected_total",
				"Datastore copies the bridge uploaded and deleted once no VM referenced them (grace period or folder budget)."),
		},
	}
	m.Registry.MustRegister(m.media.bytes, m.media.uploads, m.media.reused, m.media.collected)
	m.Registry.MustRegister(m.requests, m.latency, m.sessions, m.authFailures, m.actions, m.panics, m.dropped, m.replays, m.lockouts,
		m.redfishRequests, m.redfishAuthFailures, m.sol, m.solBytes, m.enrollExhausted, m.enrollVMs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerReaders(vcenters, sessions)
	return m
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
}

// registerReaders registers the series read at scrape time from the
// functions New was given (those not nil).
func (m *Metrics) registerReaders(vcenters func() []VCenterSample, sessions func() (active, pending map[string]int)) {
	if vcenters != nil {
		m.Registry.MustRegister(vcenterCollector(vcenters))
	}
	if sessions != nil {
		active := func() map[string]int { a, _ := sessions(); return a }
		pending := func() map[string]int { _, p := sessions(); return p }
		m.Registry.MustRegister(&mapCollector[int]{
			desc: prometheus.NewDesc(ns+"_ipmi_sessions_active", "IPMI sessions open, by BMC.", []string{"bmc"}, nil),
			kind: prometheus.GaugeValue, read: active,
		}, &mapCollector[int]{
			desc: prometheus.NewDesc(ns+"_ipmi_sessions_pending", "IPMI sessions in setup (handshake begun, not completed), by BMC.", []string{"bmc"}, nil),
			kind: prometheus.GaugeValue, read: pending,
		})
	}
}

type requestLabels struct{ command, cc string }

type requestHandles struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// Request records one answered IPMI request (ipmi.Observer). It is on
// every request's path, so the series' handles are looked up once per
// command and completion code, not hashed from the labels every time.
func (m *Metrics) Request(command, cc string, d time.Duration) {
	k := requestLabels{command, cc}
	m.handlesMu.RLock()
	h, ok := m.handles[k]
	m.handlesMu.RUnlock()
	if !ok {
		h = requestHandles{m.requests.WithLabelValues(command, cc), m.latency.WithLabelValues(command)}
		m.handlesMu.Lock()
		m.handles[k] = h
		m.handlesMu.Unlock()
	}
	h.count.Inc()
	h.latency.Observe(d.Seconds())
}

// PoolExhausted counts n VMs that rule matched but could not give a BMC
// (enroll.Observer).
func (m *Metrics) PoolExhausted(rule string, n int) {
	m.enrollExhausted.WithLabelValues(rule).Add(float64(n))
}

// Enrolled sets the number of VMs holding an assignment (enroll.Observer).
func (m *Metrics) Enrolled(n int) { m.enrollVMs.Set(float64(n)) }

// Session records a session event ("opened", "closed", "expired",
// "refused") of an endpoint (ipmi.Observer).
func (m *Metrics) Session(bmc, event string) { m.sessions.WithLabelValues(bmc, event).Inc() }

// AuthFailure records a failed authentication (ipmi.Observer).
func (m *Metrics) AuthFailure(bmc string) { m.authFailures.WithLabelValues(bmc).Inc() }

// Panic records a handler panic (ipmi.Observer).
func (m *Metrics) Panic() { m.panics.Inc() }

// Dropped records a datagram answered with silence (ipmi.Observer).
func (m *Metrics) Dropped(reason string) { m.dropped.WithLabelValues(reason).Inc() }

// Replay records a refused replay (ipmi.Observer).
func (m *Metrics) Replay() { m.replays.Inc() }

// Lockout records a source locked out of a BMC (ipmi.Observer).
func (m *Metrics) Lockout(bmc string) { m.lockouts.WithLabelValues(bmc).Inc() }

// Redfish is the redfish.Observer over these metrics.
func (m *Metrics) Redfish() RedfishObserver { return RedfishObserver{m} }

// RedfishObserver records the Redfish service's requests and failed
// logins; its lockouts go with IPMI's, the guard being one.
type RedfishObserver struct{ m *Metrics }

// Request records one answered Redfish request.
func (o RedfishObserver) Request(route string, status int) {
	o.m.redfishRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
}

// AuthFailure records wrong Redfish credentials.
func (o RedfishObserver) AuthFailure(bmc string) { o.m.redfishAuthFailures.WithLabelValues(bmc).Inc() }

// Lockout records a source locked out of a BMC.
func (o RedfishObserver) Lockout(bmc string) { o.m.Lockout(bmc) }

// MediaBytes counts image bytes streamed (vsphere.MediaObserver).
func (m *Metrics) MediaBytes(n int) { m.media.bytes.Add(float64(n)) }

// MediaUploads moves the uploads in flight (vsphere.MediaObserver).
func (m *Metrics) MediaUploads(delta int) { m.media.uploads.Add(float64(delta)) }

// MediaReused counts a reused copy (vsphere.MediaObserver).
func (m *Metrics) MediaReused() { m.media.reused.Inc() }

// MediaCollected counts deleted copies (vsphere.MediaObserver).
func (m *Metrics) MediaCollected(n int) { m.media.collected.Add(float64(n)) }

// Action records a machine action and its outcome.
func (m *Metrics) Action(action string, err error) {
	m.actions.WithLabelValues(action, result(err)).Inc()
}

func result(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{machine.ErrUnavailable, "unavailable"}, {machine.ErrBusy, "busy"},
		{machine.ErrInvalidState, "invalid_state"}, {machine.ErrUnsupported, "unsupported"},
		{machine.ErrInvalidArgument, "invalid_argument"}, {machine.ErrNotFound, "not_found"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	if err != nil {
		return "error"
	}
	return "ok"
}

// mapCollector exposes a map read at scrape time, one series per key:
// counts kept elsewhere (the vCenter client's) or current values.
var (
	vcenterRequestsDesc  = prometheus.NewDesc(ns+"_vcenter_requests_total", "vCenter API calls sent, by vCenter and method.", []string{"vcenter", "method"}, nil)
	vcenterConnectedDesc = prometheus.NewDesc(ns+"_vcenter_connected",
		"1 while the vCenter's inventory is synchronised, 0 while it is unreachable, by vCenter.", []string{"vcenter"}, nil)
)

// vcenterCollector reads the vCenters at each scrape.
type vcenterCollector func() []VCenterSample

func (c vcenterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- vcenterRequestsDesc
	ch <- vcenterConnectedDesc
}

func (c vcenterCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c() {
		connected := 0.0
		if v.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(vcenterConnectedDesc, prometheus.GaugeValue, connected, v.Name)
		for method, n := range v.Requests {
			ch <- prometheus.MustNewConstMetric(vcenterRequestsDesc, prometheus.CounterValue, float64(n), v.Name, method)
		}
	}
}

type mapCollector[V uint64 | int] struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func() map[string]V
}

func (c *mapCollector[V]) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *mapCollector[V]) Collect(ch chan<- prometheus.Metric) {
	for k, v := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.desc, c.kind, float64(v), k)
	}
}

// Handler answers /metrics, /healthz (the process serves) and /readyz
// (ready returns nil: vCenter in sync and BMCs serving).
func (m *Metrics) Handler(ready func() error, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Instrument returns m counting every action on mach.
func (m *Metrics) Instrument(mach machine.Machine) machine.Machine {
	return &instrumented{Machine: mach, m: m}
}

type instrumented struct {
	machine.Machine
	m *Metrics
}

func (i *instrumented) Power(ctx context.Context, a machine.PowerAction) error {
	err := i.Machine.Power(ctx, a)
	i.m.Action("power_"+a.String(), err)
	return err
}

func (i *instrumented) SetBootOverride(ctx context.Context, o machine.BootOverride) error {
	err := i.Machine.SetBootOverride(ctx, o)
	i.m.Action("boot_"+o.Device.String(), err)
	return err
}

func (i *instrumented) InsertMedia(ctx context.Context, url string) error {
	err := i.Machine.InsertMedia(ctx, url)
	i.m.Action("media_insert", err)
	return err
}

func (i *instrumented) SetMediaVerify(ctx context.Context, verify bool) error {
	err := i.Machine.SetMediaVerify(ctx, verify)
	i.m.Action("media_verify", err)
	return err
}

func (i *instrumented) SetSecureBoot(ctx context.Context, on bool) error {
	err := i.Machine.SetSecureBoot(ctx, on)
	i.m.Action("secure_boot", err)
	return err
}

func (i *instrumented) EjectMedia(ctx context.Context) error {
	err := i.Machine.EjectMedia(ctx)
	i.m.Action("media_eject", err)
	return err
}
