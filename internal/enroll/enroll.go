// Package enroll owns enrolment: it gives a BMC to every VM that an
// enrolment rule (config.EnrollRule) matches, from the rule's address and
// port pool, keeps each VM's assignment in the state file so that the VM
// keeps its address and port across restarts and renames, and takes the
// BMC away a grace period after the VM stops matching or is deleted.
//
// A VM is known by its vCenter and BIOS UUID, and its BMC names it by
// UUID: a rename changes nothing but the name Redfish shows. A vCenter
// that cannot be listed changes nothing either: no VM of it counts as
// gone while it is away.
package enroll

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// VM is a VM a rule matched.
type VM = vsphere.NamedVM

// Source lists the VMs of one vCenter that a filter selects
// (*vsphere.Inventory).
type Source interface {
	Matching(ctx context.Context, f vsphere.Filter) ([]VM, error)
}

// Fleet is the running set of BMCs (*bridge.Bridge).
type Fleet interface {
	Enroll(bridge.Spec) error
	Unenroll(key string) error
	Taken() map[int][]string
	Bridged(vcenter string) map[string]bool
}

// Store keeps the assignments (*state.Store).
type Store interface {
	Keys(prefix string) []string
	Get(key string, v any) (bool, error)
	Apply(puts map[string]any, deletes []string) error
}

// Observer counts what enrolment does (the metrics).
type Observer interface {
	// PoolExhausted: n VMs matched rule but its pool had no free endpoint.
	PoolExhausted(rule string, n int)
	// Enrolled is the number of VMs holding an assignment.
	Enrolled(n int)
}

// Rule is a configured rule with the bridge's key for its vCenter
// (bridge.Spec.VCenter: "" when one vCenter is bridged).
type Rule struct {
	config.EnrollRule
	VCenterKey string
}

// Config is what an Enroller works with.
type Config struct {
	Rules []Rule
	// Sources are the vCenters' VM lists by VCenterKey.
	Sources map[string]Source
	Fleet   Fleet
	// Store keeps assignments across restarts; nil keeps them in memory.
	Store    Store
	Observer Observer
	Log      *slog.Logger
	// Every is how often the rules are evaluated (DefaultEvery if 0);
	// Kick evaluates them sooner, on an inventory change.
	Every time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// DefaultEvery paces evaluation: a VM moved into a folder, which the
// inventory does not watch, gets its BMC within about this long.
const DefaultEvery = 2 * time.Second

// storePrefix prefixes the assignments' state entries, which are keyed
// by the vCenter's key and the VM's BIOS UUID.
const storePrefix = "enroll/"

// assignment is a VM's BMC endpoint, kept while the VM matches and for a
// grace period after.
type assignment struct {
	// Address is host:port; "" for a Redfish-only BMC.
	Address string `json:"address,omitempty"`
	// Name is the VM's name when it was first given the assignment:
	// what credential templates see, so that a rename changes no
	// password.
	Name string `json:"name,omitempty"`
	// Unmatched is when the VM was first seen not matching; zero while
	// it matches.
	Unmatched time.Time `json:"unmatched,omitzero"`
	// Grace is its rule's, kept so that a rule removed from the file
	// still ends its VMs' BMCs as it said.
	Grace time.Duration `json:"grace"`

	key      string // the enrolled BMC's bridge key, once enrolled
	enrolled bool
	// failed is why the last attempt to enrol failed: logged once, not
	// every round.
	failed string
}

// Enroller applies the rules.
type Enroller struct {
	cfg  Config
	kick chan struct{}

	mu       sync.Mutex // one evaluation at a time
	assigned map[string]*assignment
	// noted is why each rule (by index) last listed nothing, as logged.
	noted map[int]string
	// dirty are the assignments (by key) changed since the state file
	// last took them; unsaved: the last write failed.
	dirty   map[string]bool
	unsaved bool
}

// New loads the assignments an earlier run kept.
func New(cfg Config) *Enroller {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	e := &Enroller{cfg: cfg, kick: make(chan struct{}, 1), assigned: map[string]*assignment{}, noted: map[int]string{}, dirty: map[string]bool{}}
	if cfg.Store != nil {
		for _, k := range cfg.Store.Keys(storePrefix) {
			var a assignment
			if ok, err := cfg.Store.Get(k, &a); ok && err == nil {
				e.assigned[strings.TrimPrefix(k, storePrefix)] = &a
			} else if err != nil {
				cfg.Log.Error("enrolment: saved assignment unreadable; ignored", "key", k, "err", err)
			}
		}
	}
	return e
}

// minGap spaces rounds: a busy inventory kicks the enroller at every
// change, and a round with a tag rule is a call to vCenter's tagging
// service.
const minGap = 250 * time.Millisecond

// Run evaluates the rules every Config.Every and on Kick (at most every
// minGap) until ctx ends.
func (e *Enroller) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Every)
	defer t.Stop()
	for {
		e.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(minGap):
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.kick:
		}
	}
}

// Kick asks for an evaluation soon (an inventory change); it never blocks.
func (e *Enroller) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Password is the password of the VM with the BIOS UUID under a rule
// with passwordSecretFile: the first MaxPassword characters of the
// URL-safe base64 of HMAC-SHA256(secret, "ipmi-vmware-bridge/v1/" +
// the UUID in lower case). It depends on nothing else, so it survives
// restarts and can be computed elsewhere (the README shows how).
func Password(secret []byte, uuid string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("ipmi-vmware-bridge/v1/" + strings.ToLower(uuid)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:ipmi.MaxPassword]
}
