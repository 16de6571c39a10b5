package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"regexp"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/redfish"
)

func (d *Daemon) redfishAddress() string {
	file := config.SimRedfishAddress
	if d.cfg != nil {
		file = d.cfg.Redfish.Address
	}
	return override(d.opts.RedfishAddress, file)
}

func (d *Daemon) redfishPort() int {
	_, p, _ := net.SplitHostPort(d.redfishAddr)
	var port int
	fmt.Sscan(p, &port)
	return port
}

// redfishTLS prepares Redfish's TLS configuration for l (nil when Redfish
// is off): the configured key pair, or a self-signed certificate kept in
// the state directory. It runs before the first vCenter login, since it
// can fail (see Run).
func (d *Daemon) redfishTLS(ctx context.Context, l net.Listener) (*tls.Config, error) {
	if l == nil {
		return nil, nil
	}
	addr := d.redfishAddress() // as configured: the certificate names its host
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("redfish address %q: %w", addr, err)
	}
	var certFile, keyFile string
	if d.cfg != nil {
		certFile, keyFile = d.cfg.Redfish.CertFile, d.cfg.Redfish.KeyFile
	}
	dir := ""
	if d.state != nil {
		dir = d.stateDir()
	} else {
		// No state directory: a certificate for this run only.
		if dir, err = os.MkdirTemp("", "ipmi-vmware-bridge-tls-"); err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { _ = os.RemoveAll(dir) })
	}
	return redfish.TLSConfig(certFile, keyFile, dir, []string{host})
}

// startRedfish serves Redfish on l (nil when turned off) with tc for every
// running BMC, with the BMC's credentials, and returns its URL ("" when
// off).
func (d *Daemon) startRedfish(ctx context.Context, serve func(string, func() error), l net.Listener, tc *tls.Config, obs redfish.Observer) (string, error) {
	if l == nil {
		return "", nil
	}
	srv, err := redfish.New(redfish.Config{
		Systems:     d.redfishSystems,
		Version:     d.redfishVersion,
		ServiceUUID: d.serviceUUID(),
		Log:         d.log,
		Guard:       d.guard,
		Observer:    obs,
	})
	if err != nil {
		return "", err
	}
	d.redfishAddr = l.Addr().String()
	serve("redfish", func() error { return srv.ServeTLS(ctx, l, tc) })
	h, p, _ := net.SplitHostPort(d.redfishAddr)
	return "https://" + net.JoinHostPort(displayHost(h), p) + "/redfish/v1", nil
}

// redfishVersion changes when a BMC starts or stops, and when a VM
// appears, leaves or is renamed (a system is named by its VM).
func (d *Daemon) redfishVersion() uint64 {
	var names uint64 // each inventory's count only grows: so does the sum
	for _, v := range d.vcs {
		names += v.inv.Names()
	}
	return d.bridge.Generation()<<32 + names
}

// redfishSystems are the running BMCs' machines, named by their VM, but
// for IPMI-only BMCs. Endpoint, the key failed logins count under, is
// the one IPMI uses (one password, two protocols), or a Redfish-only
// BMC's key.
func (d *Daemon) redfishSystems() []redfish.System {
	var out []redfish.System
	served := d.running()
	ids := d.systemIDs(served)
	for n, i := range served {
		if i.Spec.NoRedfish {
			continue
		}
		key := i.Spec.Key()
		if i.Addr != nil {
			key = i.Addr.String()
		}
		out = append(out, redfish.System{ID: ids[n], Machine: i.m, Username: i.Spec.Username, Password: i.Spec.Password, Endpoint: key})
	}
	return out
}

// systemIDs are the Redfish ids of served, in order: the VM's name with
// one vCenter; with several, the name, '~' and the vCenter's name, for
// every VM, so that an id never moves from one VM to another as BMCs
// start and stop. '~' is one of the characters Ironic leaves unquoted in
// a system id, and a vCenter's name holds none: an id splits at its
// last '~', whatever the VM's name.
func (d *Daemon) systemIDs(served []served) []string {
	ids := make([]string, len(served))
	for n, i := range served {
		ids[n] = i.Name
		if len(d.vcs) > 1 {
			ids[n] = i.Name + "~" + d.vcenterOf(i.Spec.VCenter).name
		}
	}
	return ids
}

// serviceUUID identifies the Redfish service: the vCenter's instance UUID,
// stable across restarts and distinct per vCenter; a fixed one when
// vCenter is not connected yet or gives none that is well formed (so that
// redfish.New cannot fail after the login).
func (d *Daemon) serviceUUID() string {
	if vim := d.vcs[0].client.Vim(); vim != nil && vim.ServiceContent.About.InstanceUuid != "" {
		if u := vim.ServiceContent.About.InstanceUuid; uuidPattern.MatchString(u) {
			return u
		}
	}
	return "6e8a5f1c-0b8f-4c53-9d0c-8d2f8f0b1e5a"
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (d *Daemon) stateDir() string {
	if d.cfg != nil {
		return d.cfg.StateDir
	}
	return d.opts.StateDir
}
