package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/openshift"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// The Daemon is the management API's backend.
var _ api.Backend = (*Daemon)(nil)

func (d *Daemon) apiBMC(i bridge.Info) api.BMC {
	b := api.BMC{VM: i.Spec.VM, Name: i.Name, Address: i.Spec.Address, Source: "config", Status: string(i.Status), Requests: i.Requests, Sessions: []api.Session{},
		Console: d.consoleState(i), // console.go
		IPMI:    !i.Spec.NoIPMI, Redfish: !i.Spec.NoRedfish}
	if v := d.vcenterOf(i.Spec.VCenter); v != nil { // vcenters.go
		b.VCenter = v.name
	}
	switch {
	case i.Runtime:
		b.Source = "runtime"
	case i.Enrolled:
		b.Source = "enrolled"
	}
	if i.Err != nil {
		b.Error = i.Err.Error()
	}
	if i.Status == bridge.Running {
		b.Power = i.Power.String()
		if i.Addr != nil {
			b.Address = i.Addr.String()
		}
	}
	for _, s := range i.Sessions {
		b.Sessions = append(b.Sessions, api.Session(s))
	}
	return b
}

// apiError gives bridge and machine errors their API meaning.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bridge.ErrUnknownBMC), errors.Is(err, machine.ErrNotFound):
		return fmt.Errorf("%w: %v", api.ErrNotFound, err)
	case errors.Is(err, bridge.ErrInUse), errors.Is(err, bridge.ErrFromConfig), errors.Is(err, bridge.ErrEnrolled),
		errors.Is(err, bridge.ErrDuplicate), errors.Is(err, bridge.ErrAmbiguous):
		return fmt.Errorf("%w: %v", api.ErrConflict, err)
	case errors.Is(err, machine.ErrInvalidArgument):
		return fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	return err
}

// BMCs implements api.Backend.
func (d *Daemon) BMCs() []api.BMC {
	out := []api.BMC{}
	for _, bm := range d.bridge.BMCs() {
		out = append(out, d.apiBMC(bm.Info()))
	}
	return out
}

// BMC implements api.Backend.
func (d *Daemon) BMC(id string) (api.BMC, error) {
	bm, err := d.bridge.Lookup(id)
	if err != nil {
		return api.BMC{}, apiError(err)
	}
	return d.apiBMC(bm.Info()), nil
}

// Add implements api.Backend.
func (d *Daemon) Add(ctx context.Context, a api.Add) (api.BMC, error) {
	v, err := d.vcenterNamed(a.VCenter) // vcenters.go
	if err != nil {
		return api.BMC{}, err
	}
	s, err := d.spec(a)
	if err != nil {
		return api.BMC{}, err
	}
	if _, err := v.inv.Resolve(ctx, a.VM); err != nil {
		return api.BMC{}, apiError(d.named(v, err))
	}
	s.VCenter = v.key
	s.AllowDuplicate = a.AllowDuplicate
	bm, err := d.bridge.Add(s)
	if err != nil {
		return api.BMC{}, apiError(err)
	}
	return d.apiBMC(bm.Info()), nil
}

// spec validates what an operator asked for as the config file would.
func (d *Daemon) spec(a api.Add) (bridge.Spec, error) {
	if a.Address == "" {
		a.Address = d.defaultAddress
	}
	if a.Username == "" {
		a.Username = config.DefaultUsername
	}
	if err := d.checkAdd(a); err != nil {
		return bridge.Spec{}, fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	s := bridge.Spec{VM: a.VM, Username: a.Username, Password: a.Password, Console: a.Console, NoIPMI: a.NoIPMI, NoRedfish: a.NoRedfish}
	if !a.NoIPMI {
		s.Address = net.JoinHostPort(a.Address, strconv.Itoa(a.Port))
	}
	return s, nil
}

// checkAdd refuses what the configuration file would refuse in a BMC.
func (d *Daemon) checkAdd(a api.Add) error {
	switch {
	case a.VM == "":
		return errors.New("a VM name, inventory path or BIOS UUID is needed")
	case a.NoIPMI && a.NoRedfish:
		return errors.New("a BMC serves IPMI, Redfish or both, not neither")
	case a.NoIPMI && a.Port != 0:
		return errors.New("a Redfish-only BMC opens no UDP port: give no port")
	case a.NoIPMI && d.redfishAddr == "":
		return errors.New("a Redfish-only BMC needs Redfish, which is off (redfish.address, or serve --redfish-address)")
	case !a.NoIPMI && (a.Port < 1 || a.Port > 65535):
		return fmt.Errorf("port %d: must be 1 to 65535", a.Port)
	case net.ParseIP(a.Address) == nil:
		return fmt.Errorf("address %q: must be an IP address", a.Address)
	case a.Password == "" || len(a.Password) > ipmi.MaxPassword:
		return fmt.Errorf("the BMC password must be 1 to %d bytes", ipmi.MaxPassword)
	case len(a.Username) > ipmi.MaxUsername:
		return fmt.Errorf("the username must be at most %d bytes", ipmi.MaxUsername)
	case a.Console && d.conc == nil:
		return errors.New("--console: the console concentrator is off (set console.address in the configuration, or serve --console-address)")
	}
	return nil
}

// vmFilter is the API's selection of VMs as the inventory takes it; a
// malformed tag is the caller's mistake.
func vmFilter(name, folder, tag string) (vsphere.Filter, error) {
	f := vsphere.Filter{Name: name, Folder: folder}
	if tag != "" {
		var err error
		if f.Tag, err = config.ParseTag(tag); err != nil {
			return f, fmt.Errorf("%w: %v", api.ErrInvalid, err)
		}
	}
	return f, nil
}

// AddAll implements api.Backend: one BMC per matching VM not yet bridged,
// on consecutive free ports from BasePort.
func (d *Daemon) AddAll(ctx context.Context, a api.AddAll) ([]api.BMC, error) {
	v, err := d.vcenterNamed(a.VCenter) // vcenters.go
	if err != nil {
		return nil, err
	}
	f, err := vmFilter(a.Filter, a.Folder, a.Tag)
	if err != nil {
		return nil, err
	}
	vms, err := v.inv.List(ctx, f)
	if err != nil {
		return nil, apiError(d.named(v, err))
	}
	bridged := d.bridge.ByVM()
	out := []api.BMC{}
	port := a.BasePort
	for _, vm := range vms {
		if bridged[v.key+"/"+vm.Name] != "" {
			continue
		}
		for ; port <= 65535; port++ {
			s, err := d.spec(api.Add{VM: vm.Name, Address: a.Address, Port: port, Username: a.Username, Password: a.Password, Console: a.Console})
			if err != nil {
				return out, err
			}
			s.VCenter = v.key
			if d.bridge.Find(s.Address) != nil {
				continue
			}
			bm, err := d.bridge.Add(s)
			if err != nil {
				return out, apiError(err)
			}
			out = append(out, d.apiBMC(bm.Info()))
			port++
			break
		}
	}
	return out, nil
}

// Remove implements api.Backend.
func (d *Daemon) Remove(id string) error { return apiError(d.bridge.Remove(id)) }

// Stop implements api.Backend.
func (d *Daemon) Stop(id string) error { return apiError(d.bridge.Stop(id)) }

// Start implements api.Backend.
func (d *Daemon) Start(id string) error { return apiError(d.bridge.Resume(id)) }

// VMs implements api.Backend.
// A vCenter that cannot be listed is an error even when another can: a
// partial list would read as VMs that do not exist.
func (d *Daemon) VMs(ctx context.Context, q api.VMQuery) ([]api.VM, error) {
	if q.VCenter != "" {
		if _, err := d.vcenterNamed(q.VCenter); err != nil {
			return nil, err
		}
	}
	f, err := vmFilter(q.Filter, q.Folder, q.Tag)
	if err != nil {
		return nil, err
	}
	bridged := d.bridge.ByVM()
	out := []api.VM{}
	for _, v := range d.vcs {
		if q.VCenter != "" && q.VCenter != v.name {
			continue
		}
		vms, err := v.inv.List(ctx, f)
		if err != nil {
			return nil, apiError(d.named(v, err))
		}
		for _, vm := range vms {
			out = append(out, api.VM{Name: vm.Name, VCenter: v.name, Power: vm.Power, UUID: vm.UUID, InstanceUUID: vm.InstanceUUID, Firmware: vm.Firmware, MACs: vm.MACs, BMC: bridged[v.key+"/"+vm.Name]})
		}
	}
	return out, nil
}

// checkParallel bounds the sessions check opens at once.
const checkParallel = 16

// Check implements api.Backend: a real RMCP+ session (go-ipmi's client,
// cipher suite 17) to every BMC, as a console would open it, and a power
// status inside it. Redfish-only BMCs, having no IPMI, are not listed.
func (d *Daemon) Check(ctx context.Context) []api.Check {
	bmcs := slices.DeleteFunc(d.bridge.BMCs(), func(bm *bridge.BMC) bool { return bm.Info().Spec.NoIPMI })
	out := make([]api.Check, len(bmcs))
	sem := make(chan struct{}, checkParallel)
	var wg sync.WaitGroup
	for i, bm := range bmcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = check(ctx, bm.Info())
		}()
	}
	wg.Wait()
	return out
}

func check(ctx context.Context, i bridge.Info) api.Check {
	c := api.Check{VM: i.Spec.VM, Endpoint: i.Spec.Address}
	if i.Name != "" {
		c.VM = i.Name
	}
	if i.Status != bridge.Running {
		c.Error = fmt.Sprintf("not serving (%s)", i.Status)
		if i.Err != nil {
			c.Error += ": " + i.Err.Error()
		}
		return c
	}
	host, portStr, _ := net.SplitHostPort(i.Addr.String())
	c.Endpoint = net.JoinHostPort(displayHost(host), portStr)
	port, _ := strconv.Atoi(portStr)
	start := time.Now()
	cl, err := client.NewClient(displayHost(host), port, i.Spec.Username, i.Spec.Password)
	if err == nil {
		cl.WithInterface(client.InterfaceLanplus)
		cl.WithTimeout(3 * time.Second)
		cl.WithRetry(1)
		if err = cl.Connect(ctx); err == nil {
			resp, serr := cl.GetChassisStatus(ctx)
			if err = serr; err == nil {
				c.Power = "off"
				if resp.PowerIsOn {
					c.Power = "on"
				}
			}
			_ = cl.Close(ctx)
		}
	}
	c.Latency = time.Since(start)
	if err != nil {
		c.Error = err.Error()
	}
	return c
}

// served is a running BMC and the machine it serves.
type served struct {
	bridge.Info
	m machine.Machine
}

// running lists the BMCs that serve, for the views that only make sense of
// a bound machine (Redfish systems, manifests, session gauges).
func (d *Daemon) running() []served {
	var out []served
	for _, bm := range d.bridge.BMCs() {
		i, m := bm.Info(), bm.Machine()
		if i.Status == bridge.Running && m != nil {
			out = append(out, served{i, m})
		}
	}
	return out
}

// BMH implements api.Backend: BareMetalHost and Secret manifests (or the
// install-config hosts list) for the running BMCs, with each VM's first
// NIC as its provisioning MAC, its firmware (and secure boot) as its boot
// mode, and the control plane chosen by req.ControlPlane marked so that
// Metal3 leaves it alone. The control plane is decided here, not by the
// client, so that every client, one that predates the field included, gets
// the same manifests for the same request.
func (d *Daemon) BMH(ctx context.Context, req api.BMH) ([]byte, error) {
	cp, err := controlPlane(req)
	if err != nil {
		return nil, err
	}
	if _, err := path.Match(req.Filter, ""); err != nil {
		// A malformed glob would match nothing: say so rather than print
		// no hosts, as vms --filter does.
		return nil, fmt.Errorf("%w: filter %q: %v", api.ErrInvalid, req.Filter, err)
	}
	var hosts []openshift.Host
	served := d.running()
	ids := d.systemIDs(served) // redfish.go
	for n, i := range served {
		if ok, _ := path.Match(req.Filter, i.Name); (req.Filter != "" && !ok) || (req.Enrolled && !i.Enrolled) {
			continue
		}
		if v := d.vcenterOf(i.Spec.VCenter); req.VCenter != "" && (v == nil || v.name != req.VCenter) {
			continue
		}
		h, err := d.bmhHost(ctx, i, req, cp)
		if err != nil {
			return nil, err
		}
		if h.RedfishSystem != "" {
			h.RedfishSystem = ids[n]
		}
		hosts = append(hosts, h)
	}
	// The Redfish port serves Redfish-only BMCs' hosts even without
	// --redfish.
	opts := openshift.Options{Namespace: req.Namespace, RedfishPort: d.redfishPort()}
	if req.Redfish {
		opts.Protocol = openshift.ProtocolRedfishVirtualMedia
	}
	var buf bytes.Buffer
	render := openshift.BareMetalHosts
	if req.InstallConfig {
		render = openshift.InstallConfigHosts
	}
	if err := render(&buf, hosts, opts); err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	return buf.Bytes(), nil
}

// controlPlane is the control plane req asks for; install-config.yaml
// has none (see openshift.Host.ControlPlane).
func controlPlane(req api.BMH) (openshift.ControlPlane, error) {
	if req.InstallConfig {
		return openshift.ControlPlane{}, nil
	}
	patterns := req.ControlPlane
	if patterns == nil {
		// Absent: a client that does not know the field is protected
		// too. An empty list is the one way to ask for none.
		patterns = []string{openshift.DefaultControlPlane}
	}
	cp, err := openshift.ParseControlPlane(patterns)
	if err != nil {
		return cp, fmt.Errorf("%w: control plane: %v", api.ErrInvalid, err)
	}
	return cp, nil
}

// bmhHost is the running BMC i as the cluster sees it: its IPMI address,
// or its Redfish system when asked for (req.Redfish) or when it serves
// Redfish alone.
func (d *Daemon) bmhHost(ctx context.Context, i served, req api.BMH, cp openshift.ControlPlane) (openshift.Host, error) {
	id, err := i.m.Identity(ctx)
	if err != nil {
		return openshift.Host{}, apiError(err)
	}
	if len(id.MACs) == 0 {
		return openshift.Host{}, fmt.Errorf("%w: VM %s has no NIC to provision through", api.ErrInvalid, id.Name)
	}
	o, err := i.m.BootOverride(ctx)
	if err != nil {
		return openshift.Host{}, apiError(err)
	}
	redfish := req.Redfish || i.Spec.NoIPMI
	if redfish && i.Spec.NoRedfish {
		return openshift.Host{}, fmt.Errorf("%w: BMC %s of %s serves IPMI only (redfish: false): leave out --redfish, or --filter it out", api.ErrInvalid, i.Spec.Key(), id.Name)
	}
	listen := d.redfishAddr
	if !i.Spec.NoIPMI {
		listen = i.Addr.String()
	}
	host, port, _ := net.SplitHostPort(listen)
	if req.Host != "" {
		host = req.Host
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return openshift.Host{}, fmt.Errorf("%w: BMC %s listens on every address (%s); say which one the cluster reaches with --host", api.ErrInvalid, i.Spec.Key(), listen)
	}
	h := openshift.Host{
		Name: id.Name, BMCAddress: net.JoinHostPort(host, port),
		Username: i.Spec.Username, Password: i.Spec.Password,
		BootMAC: id.MACs[0], UEFI: o.Mode == machine.BootModeUEFI, Online: !req.Offline,
		// What the next boot gets, not what runs: Metal3 reboots a host
		// before it deploys anything to it, so a change that waits for
		// a power cycle is in force by then.
		SecureBoot: id.SecureBootNext,
		// By vCenter's name: Match also tries the BareMetalHost's.
		ControlPlane: cp.Match(id.Name),
	}
	if redfish {
		h.RedfishSystem = id.Name
	}
	return h, nil
}
