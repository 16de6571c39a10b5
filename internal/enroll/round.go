package enroll

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// match is a VM a rule matched in this round.
type match struct {
	rule int
	vm   VM
}

// Round evaluates every rule once: matched VMs get (or keep) their BMC,
// VMs that no longer match are marked, and those past their grace lose
// theirs.
func (e *Enroller) Round(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	matched, down := e.collect(ctx)
	e.assign(matched)
	e.expire(matched, down)
	e.save()
	if e.cfg.Observer != nil {
		e.cfg.Observer.Enrolled(len(e.assigned))
	}
}

// save writes the assignments changed since the last successful write,
// at once. A failed write (a full disk) is logged when it starts failing
// and tried again every round, so the state catches up once it can.
func (e *Enroller) save() {
	if e.cfg.Store == nil || len(e.dirty) == 0 {
		return
	}
	puts, deletes := map[string]any{}, []string(nil)
	for k := range e.dirty {
		if a, ok := e.assigned[k]; ok {
			puts[storePrefix+k] = a
		} else {
			deletes = append(deletes, storePrefix+k)
		}
	}
	err := e.cfg.Store.Apply(puts, deletes)
	if err == nil {
		if e.unsaved {
			e.cfg.Log.Info("enrolment: assignments saved again")
		}
		clear(e.dirty)
		e.unsaved = false
		return
	}
	if !e.unsaved {
		e.cfg.Log.Error("enrolment: assignments not saved (tried again every round); a restart meanwhile may give these VMs other ports", "err", err)
	}
	e.unsaved = true
}

// collect lists the VMs each rule matches, the first rule to match a VM
// winning, and VMs another BMC serves left out. down holds the vCenters
// that could not be listed: nothing of theirs is taken as gone.
func (e *Enroller) collect(ctx context.Context) (matched map[string]match, down map[string]bool) {
	matched, down = map[string]match{}, map[string]bool{}
	bridged := map[string]map[string]bool{}
	for i, r := range e.cfg.Rules {
		if down[r.VCenterKey] {
			continue
		}
		vms, err := e.list(ctx, i, r)
		if err != nil {
			// Later rules of this vCenter wait too: one of them taking a
			// VM this rule would have given another endpoint would last.
			down[r.VCenterKey] = true
			e.note(i, "enrolment: VMs not listed; this vCenter's enrolled VMs keep their BMCs and its later rules wait", r, err)
			continue
		}
		if bridged[r.VCenterKey] == nil {
			bridged[r.VCenterKey] = e.cfg.Fleet.Bridged(r.VCenterKey)
		}
		for _, vm := range vms {
			u := strings.ToLower(vm.UUID)
			k := r.VCenterKey + "/" + u
			if _, dup := matched[k]; dup || u == "" || bridged[r.VCenterKey][u] {
				continue
			}
			matched[k] = match{i, vm}
		}
	}
	return matched, down
}

// list is what r matches. A folder that does not exist matches nothing
// (its VMs were moved out and it was deleted, or it is mistyped: the log
// says which folder); any other error is the vCenter's.
func (e *Enroller) list(ctx context.Context, i int, r Rule) ([]VM, error) {
	src := e.cfg.Sources[r.VCenterKey]
	if src == nil {
		return nil, fmt.Errorf("no vCenter %q", r.VCenter)
	}
	vms, err := src.Matching(ctx, vsphere.Filter{Folder: r.Folder, Name: r.Name, Tag: r.Tag})
	if errors.Is(err, machine.ErrInvalidArgument) {
		e.note(i, "enrolment rule matches nothing", r, err)
		return nil, nil
	}
	if err == nil {
		e.note(i, "", r, nil)
	}
	return vms, err
}

// note logs why rule i listed nothing when the reason changes (rounds
// run every 2 s: a missing tag is said once), and that it lists again
// once it does.
func (e *Enroller) note(i int, msg string, r Rule, err error) {
	was := e.noted[i]
	if err == nil {
		if was != "" {
			e.cfg.Log.Info("enrolment rule lists VMs again", "rule", r.Where)
		}
		delete(e.noted, i)
		return
	}
	if was != err.Error() {
		e.noted[i] = err.Error()
		e.cfg.Log.Warn(msg, "rule", r.Where, "err", err)
	}
}

// assign gives each matched VM without one an endpoint from its rule's
// pool, in rule and name order, and enrols those not enrolled yet. Only
// the VMs that need an endpoint are sorted and only then are the taken
// ports gathered: a round where nothing is new costs one pass.
func (e *Enroller) assign(matched map[string]match) {
	var need []string
	for k, m := range matched {
		r := e.cfg.Rules[m.rule]
		if a := e.assigned[k]; a == nil || (a.Address == "") != r.NoIPMI {
			need = append(need, k)
			continue
		}
		e.keep(k, r, m.vm)
	}
	if len(need) == 0 {
		return
	}
	slices.SortFunc(need, func(a, b string) int {
		return cmp.Or(cmp.Compare(matched[a].rule, matched[b].rule), cmp.Compare(matched[a].vm.Name, matched[b].vm.Name), cmp.Compare(a, b))
	})
	pools := newPools(e.taken())
	exhausted := map[int]int{}
	for _, k := range need {
		m := matched[k]
		r := e.cfg.Rules[m.rule]
		if !e.release(k) {
			continue
		}
		addr, ok := pools.allocate(m.rule, r)
		if !ok {
			exhausted[m.rule]++
			continue
		}
		e.assigned[k] = &assignment{Address: addr, Name: m.vm.Name}
		e.dirty[k] = true
		e.keep(k, r, m.vm)
	}
	e.exhausted(exhausted)
}

// release ends the BMC of assignment k, whose rule now wants the other
// kind (IPMI, or Redfish-only), before it is given a new one; false when
// the BMC could not be removed (tried again next round).
func (e *Enroller) release(k string) bool {
	a := e.assigned[k]
	if a == nil || !a.enrolled {
		return true
	}
	if err := e.cfg.Fleet.Unenroll(a.key); err != nil && !errors.Is(err, bridge.ErrUnknownBMC) {
		e.cfg.Log.Error("enrolment: BMC not removed to change its kind", "bmc", a.key, "err", err)
		return false
	}
	a.enrolled = false
	return true
}

// keep renews the assignment k of a matched VM (matching again, under
// its rule's grace) and enrols it if it is not.
func (e *Enroller) keep(k string, r Rule, vm VM) {
	a := e.assigned[k]
	if a.Name == "" { // kept by a version without names
		a.Name = vm.Name
		e.dirty[k] = true
	}
	if !a.Unmatched.IsZero() || a.Grace != r.Grace {
		a.Unmatched, a.Grace = time.Time{}, r.Grace
		e.dirty[k] = true
	}
	if !a.enrolled {
		e.enroll(r, vm, a)
	}
}

// exhausted reports the VMs left without a BMC for want of endpoints.
func (e *Enroller) exhausted(byRule map[int]int) {
	for i, n := range byRule {
		r := e.cfg.Rules[i]
		e.cfg.Log.Error("enrolment: pool exhausted; VMs left without a BMC: widen the rule's addresses or ports",
			"rule", r.Where, "vms", n, "ports", fmt.Sprintf("%d-%d", r.Ports[0], r.Ports[1]), "addresses", len(r.Addresses))
		if e.cfg.Observer != nil {
			e.cfg.Observer.PoolExhausted(fmt.Sprintf("enroll[%d]", i), n)
		}
	}
}

// enroll starts vm's BMC as r says, on a's endpoint. A failure is
// logged when it differs from the last one, and tried again next round.
func (e *Enroller) enroll(r Rule, vm VM, a *assignment) {
	s := bridge.Spec{VM: strings.ToLower(vm.UUID), VCenter: r.VCenterKey, Address: a.Address,
		NoIPMI: r.NoIPMI, NoRedfish: r.NoRedfish, Console: r.Console, Where: r.Where}
	err := credentials(r, vm, a, &s)
	if err == nil {
		err = e.cfg.Fleet.Enroll(s)
	}
	if err != nil {
		if a.failed != err.Error() {
			a.failed = err.Error()
			e.cfg.Log.Error("enrolment: BMC not added", "vm", vm.Name, "rule", r.Where, "err", err)
		}
		return
	}
	a.enrolled, a.key, a.failed = true, s.Key(), ""
	e.cfg.Log.Info("enrolled", "vm", vm.Name, "uuid", vm.UUID, "bmc", s.Key(), "rule", r.Where)
}

// credentials sets s's user and password as r makes them for vm.
func credentials(r Rule, vm VM, a *assignment, s *bridge.Spec) error {
	s.Username, s.Password = r.Username, r.Password
	d := config.CredentialData{Name: a.Name, UUID: strings.ToLower(vm.UUID), VCenter: r.VCenter}
	if len(r.PasswordSecret) > 0 {
		s.Password = Password(r.PasswordSecret, vm.UUID)
		d.Derived = s.Password
	}
	var err error
	if r.UsernameTemplate != nil {
		if s.Username, err = config.Credential(r.UsernameTemplate, d, ipmi.MaxUsername); err != nil {
			return err
		}
	}
	if r.PasswordTemplate != nil {
		if s.Password, err = config.Credential(r.PasswordTemplate, d, ipmi.MaxPassword); err != nil {
			return err
		}
	}
	return nil
}

// expire marks the assignments whose VM matched nothing this round and
// removes those past their grace, except on vCenters that are down.
func (e *Enroller) expire(matched map[string]match, down map[string]bool) {
	now := e.cfg.Now()
	for k, a := range e.assigned {
		if _, ok := matched[k]; ok || down[k[:strings.LastIndexByte(k, '/')]] {
			continue
		}
		if a.Unmatched.IsZero() {
			a.Unmatched = now
			e.dirty[k] = true
			continue
		}
		if now.Sub(a.Unmatched) < a.Grace {
			continue
		}
		if a.enrolled {
			if err := e.cfg.Fleet.Unenroll(a.key); err != nil && !errors.Is(err, bridge.ErrUnknownBMC) {
				e.cfg.Log.Error("enrolment: BMC not removed", "bmc", a.key, "err", err)
				continue
			}
			e.cfg.Log.Info("unenrolled: the VM no longer matches", "bmc", a.key, "since", a.Unmatched)
		}
		delete(e.assigned, k)
		e.dirty[k] = true
	}
}

// taken are the ports in use, by the BMCs and by every assignment (some
// may not be enrolled yet), with their hosts.
func (e *Enroller) taken() map[int][]string {
	t := e.cfg.Fleet.Taken()
	for _, a := range e.assigned {
		if host, port, err := net.SplitHostPort(a.Address); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				t[n] = append(t[n], host)
			}
		}
	}
	return t
}

// pools allocates endpoints within one round: each rule's scan goes on
// from where it stopped, since what it passed was taken, so that a
// thousand new VMs cost one pass over the pool, not a thousand.
type pools struct {
	taken map[int][]string
	next  map[int]int // by rule: the pool position to try next
}

func newPools(taken map[int][]string) *pools {
	return &pools{taken: taken, next: map[int]int{}}
}

// allocate takes the first free endpoint of rule i's pool (r's addresses
// by ports, address-major), "" for a Redfish-only rule.
func (p *pools) allocate(i int, r Rule) (string, bool) {
	if r.NoIPMI {
		return "", true
	}
	ports := r.Ports[1] - r.Ports[0] + 1
	for n := p.next[i]; n < len(r.Addresses)*ports; n++ {
		addr, port := r.Addresses[n/ports], r.Ports[0]+n%ports
		if p.free(addr, port) {
			p.next[i] = n + 1
			p.taken[port] = append(p.taken[port], addr.String())
			return net.JoinHostPort(addr.String(), strconv.Itoa(port)), true
		}
	}
	p.next[i] = len(r.Addresses) * ports
	return "", false
}

// free reports whether addr:port would bind: no BMC on that port listens
// on addr or on every address, and none listens on it at all when addr
// is every address.
func (p *pools) free(addr netip.Addr, port int) bool {
	for _, h := range p.taken[port] {
		a, err := netip.ParseAddr(h)
		if err != nil || a == addr || a.IsUnspecified() || addr.IsUnspecified() {
			return false
		}
	}
	return true
}
