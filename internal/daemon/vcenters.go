package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/metrics"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// vcenter is one bridged vCenter: its session, watched inventory and
// virtual-media service, each its own, so that a vCenter that is down,
// slow or refusing logins holds up its own BMCs only.
type vcenter struct {
	// key names the vCenter to the bridge (bridge.Spec.VCenter) and in
	// the state file: "" for the first (or only) one, so that its BMCs
	// and state entries (runtime BMCs, boot overrides, media copies, the
	// failed-login record) stay as they were when a second vCenter is
	// added; the others' is their name.
	key string
	// name is the configured name, for logs, metrics and the API.
	name   string
	opts   vsphere.Options
	client *vsphere.Client
	inv    *vsphere.Inventory
	media  *vsphere.MediaService
}

// configVCenters are the vCenters of cfg, not yet connected.
func configVCenters(cfg *config.Config) []*vcenter {
	var out []*vcenter
	for _, vc := range cfg.VCenters {
		out = append(out, &vcenter{name: vc.Name, key: vcenterKey(cfg, vc.Name), opts: vsphere.Options{URL: vc.URL, Username: vc.Username,
			Password: vc.Password, Insecure: vc.Insecure, CAFile: vc.CAFile, LoginFailures: vc.LoginFailures, LoginWindow: vc.LoginWindow}})
	}
	return out
}

// vcenterKey is the key (see vcenter.key) of cfg's vCenter called name.
func vcenterKey(cfg *config.Config, name string) string {
	if name == cfg.VCenters[0].Name {
		return ""
	}
	return name
}

// statePrefix goes before the vCenter's entries in the state file
// (failed logins, media copies): none for the first (or only) one.
func (v *vcenter) statePrefix() string {
	if v.key == "" {
		return ""
	}
	return "vcenter/" + v.key + "/"
}

// connectVCenters starts each vCenter's client, inventory and media
// collector in g, until wctx ends.
func (d *Daemon) connectVCenters(ctx, wctx context.Context, g *errgroup.Group) error {
	for _, v := range d.vcs {
		v.opts.Log, v.opts.StatePrefix = d.log, v.statePrefix()
		if len(d.vcs) > 1 {
			v.opts.Log = d.log.With("vcenter", v.name)
		}
		if d.state != nil {
			v.opts.LoginStore = d.state
		}
		var err error
		if v.client, err = vsphere.Start(ctx, v.opts); err != nil {
			return d.named(v, err)
		}
		v.inv = vsphere.NewInventory(v.client, v.opts.Log)
		g.Go(func() error { v.inv.Run(wctx); return nil })
		g.Go(func() error { v.media.Run(wctx, v.inv, time.Minute); return nil })
	}
	return nil
}

// closeVCenters logs out of every vCenter, each within 5 s: one that
// stopped answering must not hold up the exit.
func (d *Daemon) closeVCenters(ctx context.Context) {
	for _, v := range d.vcs {
		if v.client == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = v.client.Close(cctx)
		cancel()
	}
}

// inventories are the vCenters' inventories by key, for the bridge.
func (d *Daemon) inventories() map[string]*vsphere.Inventory {
	out := map[string]*vsphere.Inventory{}
	for _, v := range d.vcs {
		out[v.key] = v.inv
	}
	return out
}

// vcenterNamed is the vCenter called name, or the only one for "".
func (d *Daemon) vcenterNamed(name string) (*vcenter, error) {
	if name == "" && len(d.vcs) == 1 {
		return d.vcs[0], nil
	}
	var names []string
	for _, v := range d.vcs {
		if v.name == name {
			return v, nil
		}
		names = append(names, v.name)
	}
	if name == "" {
		return nil, fmt.Errorf("%w: several vCenters are bridged: say which with --vcenter (%s)", api.ErrInvalid, strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("%w: no vCenter %q (%s)", api.ErrInvalid, name, strings.Join(names, ", "))
}

// vcenterOf is the vCenter a BMC's spec names by key.
func (d *Daemon) vcenterOf(key string) *vcenter {
	for _, v := range d.vcs {
		if v.key == key {
			return v
		}
	}
	return nil
}

// available is nil when every vCenter's inventory is in sync, else the
// reasons of those that are not.
func (d *Daemon) available() error {
	var errs []error
	for _, v := range d.vcs {
		if v.inv == nil {
			errs = append(errs, fmt.Errorf("vcenter %s: not connected yet", v.name))
		} else if err := v.inv.Available(); err != nil {
			errs = append(errs, d.named(v, err))
		}
	}
	return errors.Join(errs...)
}

// named prefixes err with v's name when there are several vCenters.
func (d *Daemon) named(v *vcenter, err error) error {
	if len(d.vcs) == 1 {
		return err
	}
	return fmt.Errorf("vcenter %s: %w", v.name, err)
}

// vcenterSamples are the vCenters as metrics read them.
func (d *Daemon) vcenterSamples() []metrics.VCenterSample {
	var out []metrics.VCenterSample
	for _, v := range d.vcs {
		s := metrics.VCenterSample{Name: v.name, Requests: map[string]uint64{}}
		if v.client != nil {
			s.Requests = v.client.Requests()
		}
		s.Connected = v.inv != nil && v.inv.Available() == nil
		out = append(out, s)
	}
	return out
}
