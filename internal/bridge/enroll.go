package bridge

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Enroll adds a BMC for an enrolment rule's VM (see package enroll). It is
// not saved (the enroller keeps its own record of what it enrolled and
// enrols again after a restart; an operator's stop of it is kept, and
// holds then), a reload of the configuration leaves it,
// and it is refused only when its key is taken: the enroller has already
// checked that the VM has no other BMC.
func (b *Bridge) Enroll(s Spec) error {
	if !b.enter() {
		return ErrClosed
	}
	defer b.bg.Done()
	b.mu.Lock()
	if b.byAddress(s.Key()) != nil {
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", s.Key(), ErrInUse)
	}
	bm := &BMC{spec: s, enrolled: true}
	if b.wasStopped(s.Key()) {
		// An operator stopped it in an earlier run: it stays stopped.
		bm.stopped, bm.status = true, Stopped
	}
	b.bmcs = append(b.bmcs, bm)
	b.mu.Unlock()
	b.bind(bm)
	return nil
}

// wasStopped reports whether the state file says an operator stopped
// the BMC with the key.
func (b *Bridge) wasStopped(key string) bool {
	var s saved
	if st := b.opts.State; st != nil {
		if ok, err := st.Get(bmcPrefix+key, &s); ok && err == nil {
			return s.Stopped
		}
	}
	return false
}

// Unenroll stops and removes the enrolled BMC with the key (Spec.Key).
func (b *Bridge) Unenroll(key string) error {
	if !b.enter() {
		return ErrClosed
	}
	defer b.bg.Done()
	b.mu.Lock()
	var release func()
	err := fmt.Errorf("%s: %w", key, ErrUnknownBMC)
	for _, bm := range b.bmcs {
		if bm.enrolled && bm.spec.Key() == key {
			// Not saved, so nothing to forget but an operator's stop,
			// which drop forgets.
			release, err = b.drop(bm, false)
			break
		}
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	release()
	return nil
}

// Taken lists the UDP ports the BMCs use, each with the hosts that use it
// ("0.0.0.0" or "::" for every address), so that an enroller does not
// give out an endpoint that would not bind.
func (b *Bridge) Taken() map[int][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[int][]string{}
	for _, bm := range b.bmcs {
		host, port, err := net.SplitHostPort(bm.spec.Address)
		if n, perr := strconv.Atoi(port); err == nil && perr == nil {
			out[n] = append(out[n], host)
		}
	}
	return out
}

// Bridged reports the BIOS UUIDs (lower case) of the VMs of the vCenter
// vcenter (Spec.VCenter) that BMCs other than enrolled ones are for,
// serving or not (stopped, or their port taken): the enroller gives
// those VMs no second BMC. A BMC configured by UUID is known by it; one
// configured by name is looked up in the inventory when it is not bound.
func (b *Bridge) Bridged(vcenter string) map[string]bool {
	out := map[string]bool{}
	for _, bm := range b.BMCs() {
		if bm.enrolled || bm.spec.VCenter != vcenter {
			continue
		}
		out[strings.ToLower(bm.spec.VM)] = true
		u := bm.boundUUID()
		if u == "" {
			u = b.uuidOf(bm.spec)
		}
		if u != "" {
			out[strings.ToLower(u)] = true
		}
	}
	return out
}

// uuidOf is the BIOS UUID of the VM s names, from the inventory's memory:
// "" when it cannot be found there (not synchronised, no such VM, or an
// inventory path, which would take a vCenter call).
func (b *Bridge) uuidOf(s Spec) string {
	inv, ok := b.invs[s.VCenter]
	if !ok || strings.Contains(s.VM, "/") {
		return ""
	}
	ref, err := inv.Resolve(b.ctx, s.VM)
	if err != nil {
		return ""
	}
	id, err := inv.Identity(ref)
	if err != nil {
		return ""
	}
	return id.UUID
}
