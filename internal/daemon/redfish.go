package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/redfish"
)

// DefaultSimRedfishAddress is where Redfish listens in simulator mode.
const DefaultSimRedfishAddress = "127.0.0.1:8000"

func (d *Daemon) redfishAddress() string {
	file := DefaultSimRedfishAddress
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

// startRedfish serves Redfish on l (nil when turned off) for every running
// BMC, with the BMC's credentials, and returns its URL ("" when off).
func (d *Daemon) startRedfish(ctx context.Context, serve func(string, func() error), l net.Listener, obs redfish.Observer) (string, error) {
	if l == nil {
		return "", nil
	}
	addr := d.redfishAddress() // as configured: the certificate names its host
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
			return "", err
		}
		context.AfterFunc(ctx, func() { _ = os.RemoveAll(dir) })
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("redfish address %q: %w", addr, err)
	}
	tc, err := redfish.TLSConfig(certFile, keyFile, dir, []string{host})
	if err != nil {
		return "", err
	}
	d.redfishAddr = l.Addr().String()
	serve("redfish", func() error { return srv.ServeTLS(ctx, l, tc) })
	h, p, _ := net.SplitHostPort(d.redfishAddr)
	return "https://" + net.JoinHostPort(displayHost(h), p) + "/redfish/v1", nil
}

// redfishVersion changes when a BMC starts or stops, and every 10 s
// besides, which picks up VM renames (a system is named by its VM).
func (d *Daemon) redfishVersion() uint64 {
	return d.bridge.Generation()<<32 ^ uint64(time.Now().Unix()/10)
}

// redfishSystems are the running BMCs' machines, named by their VM.
func (d *Daemon) redfishSystems() []redfish.System {
	var out []redfish.System
	for _, i := range d.running() {
		out = append(out, redfish.System{ID: i.Name, Machine: i.m, Username: i.Spec.Username, Password: i.Spec.Password, Endpoint: i.Addr.String()})
	}
	return out
}

// serviceUUID identifies the Redfish service: the vCenter's instance UUID,
// stable across restarts and distinct per vCenter.
func (d *Daemon) serviceUUID() string {
	if a := d.client.Vim().ServiceContent.About; a.InstanceUuid != "" {
		return a.InstanceUuid
	}
	return "6e8a5f1c-0b8f-4c53-9d0c-8d2f8f0b1e5a"
}

func (d *Daemon) stateDir() string {
	if d.cfg != nil {
		return d.cfg.StateDir
	}
	return d.opts.StateDir
}
