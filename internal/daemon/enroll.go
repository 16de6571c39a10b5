package daemon

import (
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/enroll"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/metrics"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// The metrics count enrolment.
var _ enroll.Observer = (*metrics.Metrics)(nil)

// enroller applies the configuration's enrolment rules to the bridge
// (nil when there are none). Every inventory change wakes it, so that a
// VM created, renamed or moved into a rule gets its BMC at once; a VM
// tagged, which vCenter announces to no watcher, within enroll.DefaultEvery.
func (d *Daemon) enroller(m *metrics.Metrics) *enroll.Enroller {
	if d.cfg == nil || len(d.cfg.Enroll) == 0 {
		return nil
	}
	cfg := enroll.Config{Sources: map[string]enroll.Source{}, Fleet: d.bridge, Observer: m, Log: d.log}
	if d.state != nil {
		cfg.Store = d.state
	}
	for _, v := range d.vcs {
		cfg.Sources[v.key] = v.inv
	}
	for _, r := range d.cfg.Enroll {
		cfg.Rules = append(cfg.Rules, enroll.Rule{EnrollRule: r, VCenterKey: vcenterKey(d.cfg, r.VCenter)}) // vcenters.go
	}
	e := enroll.New(cfg)
	for _, v := range d.vcs {
		v.inv.OnChange(func(vsphere.Change) { e.Kick() })
	}
	return e
}
