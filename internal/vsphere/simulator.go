package vsphere

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"sync"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/units"
	// The vAPI endpoints (/rest, /api): tags, for enrolment by tag.
	_ "github.com/vmware/govmomi/vapi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sync/errgroup"
)

// SeedVMNames are the VMs of the cluster the original design bridged, in the
// order their BMCs take ports.
var SeedVMNames = []string{
	"skinner-master-0", "skinner-master-1", "skinner-master-2",
	"skinner-worker-1", "skinner-worker-2",
}

// Simulator credentials, printed in the banner so that govc or any SDK client
// can look at the simulated VMs.
const (
	SimulatorUser     = "vcsim"
	SimulatorPassword = "vcsim"
)

// VMName returns the name of the i-th simulated VM: the seed's names first,
// then generated ones.
func VMName(i int) string {
	if i < len(SeedVMNames) {
		return SeedVMNames[i]
	}
	return fmt.Sprintf("skinner-vm-%d", i)
}

// simMu serialises Model.Create, Remove and Service.NewServer: they touch
// package-level state in govmomi's simulator and race when two
// simulators start at once.
var simMu sync.Mutex

// newServer is svc.NewServer under simMu.
func newServer(svc *simulator.Service) *simulator.Server {
	simMu.Lock()
	defer simMu.Unlock()
	return svc.NewServer()
}

// Simulator is an in-process vCenter (govmomi's vcsim) holding the VMs to bridge.
type Simulator struct {
	// URL is the SDK endpoint, without credentials.
	URL *url.URL
	// CAFile holds the simulator's self-signed certificate, for clients that verify TLS.
	CAFile string
	// VMs are the names of the created VMs, in creation order.
	VMs []string

	model  *simulator.Model
	server *simulator.Server
	// closing is closed once the server Stop stopped has ended its
	// requests.
	closing chan struct{}
}

// StartSimulator starts a vCenter simulator listening on addr (host:port,
// port 0 for an ephemeral one) with n powered-off EFI VMs, each with a NIC, a
// disk and a CD-ROM.
func StartSimulator(ctx context.Context, addr string, n int) (sim *Simulator, err error) {
	if n < 0 {
		return nil, fmt.Errorf("simulator: negative VM count %d", n)
	}
	// NewServer panics when the port is taken; find out first and say so.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	if err := l.Close(); err != nil {
		return nil, err
	}

	m := simulator.VPX()
	m.Host, m.ClusterHost, m.Machine, m.Autostart = 0, 1, 0, false
	simMu.Lock()
	err = m.Create()
	simMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	m.Service.Listen = &url.URL{Host: addr, User: url.UserPassword(SimulatorUser, SimulatorPassword)}
	m.Service.TLS = &tls.Config{}
	m.Service.RegisterEndpoints = true // the vAPI's, for tags
	s := &Simulator{model: m}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.server = newServer(m.Service)
	u := *s.server.URL
	u.User = nil
	s.URL = &u
	if s.CAFile, err = s.server.CertificateFile(); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}

	c, err := Connect(ctx, Options{URL: s.URL.String(), Username: SimulatorUser, Password: SimulatorPassword, CAFile: s.CAFile})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := c.Close(ctx); cerr != nil && err == nil {
			err = fmt.Errorf("simulator: logging out after seeding: %w", cerr)
		}
	}()
	if s.VMs, err = createVMs(ctx, c.vim, n); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	return s, nil
}

// createVMs creates n VMs in parallel: the simulator awaits each creation
// task in 20 ms steps, so sequential creation of 1000 VMs takes 20 s.
func createVMs(ctx context.Context, c *vim25.Client, n int) ([]string, error) {
	finder := find.NewFinder(c)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return nil, err
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, err
	}
	pool, err := finder.DefaultResourcePool(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := finder.DefaultDatastore(ctx)
	if err != nil {
		return nil, err
	}
	network, err := finder.Network(ctx, "VM Network")
	if err != nil {
		return nil, err
	}
	backing, err := network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return nil, err
	}

	names := make([]string, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range n {
		names[i] = VMName(i)
		g.Go(func() error {
			spec, err := vmSpec(names[i], ds, backing)
			if err != nil {
				return err
			}
			task, err := folders.VmFolder.CreateVM(gctx, spec, pool, nil)
			if err != nil {
				return err
			}
			if err := task.Wait(gctx); err != nil {
				return fmt.Errorf("create %s: %w", names[i], err)
			}
			return nil
		})
	}
	return names, g.Wait()
}

// vmSpec describes a VM like the ones OpenShift nodes run in: EFI firmware,
// 4 vCPUs, 16 GiB, a paravirtual disk, a CD-ROM and a vmxnet3 NIC.
func vmSpec(name string, ds *object.Datastore, backing types.BaseVirtualDeviceBackingInfo) (types.VirtualMachineConfigSpec, error) {
	spec := types.VirtualMachineConfigSpec{
		Name:     name,
		GuestId:  string(types.VirtualMachineGuestOsIdentifierRhel9_64Guest),
		NumCPUs:  4,
		MemoryMB: 16384,
		Firmware: string(types.GuestOsDescriptorFirmwareTypeEfi),
		Files:    &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds.Name())},
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return spec, err
	}
	devices = append(devices, scsi)
	ide, err := devices.CreateIDEController()
	if err != nil {
		return spec, err
	}
	devices = append(devices, ide)
	cdrom, err := devices.CreateCdrom(ide.(*types.VirtualIDEController))
	if err != nil {
		return spec, err
	}
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), ds.Reference(),
		fmt.Sprintf("[%s] %s", ds.Name(), path.Join(name, "disk1.vmdk")))
	disk.CapacityInKB = int64(units.GB*120) / units.KB
	nic, err := devices.CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return spec, err
	}
	devices = append(devices, cdrom, disk, nic)
	spec.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	return spec, err
}

// Stop makes the simulator unreachable, as a vCenter outage would: new
// connections are refused and open ones are cut. Its VMs keep their state.
func (s *Simulator) Stop() {
	srv := s.server
	s.server = nil
	srv.CloseClientConnections()
	// Close waits for requests in flight, such as a long poll that lasts
	// up to its MaxWait; the listener is closed at once all the same.
	done := make(chan struct{})
	s.closing = done
	go func() {
		srv.Close()
		close(done)
	}()
}

// Restart serves the simulator again at the same address after Stop.
func (s *Simulator) Restart() {
	svc := s.model.Service
	// NewServer registers its handlers on the service's mux and refuses to
	// register twice, so give it a fresh mux with the SDK already on it.
	mux := http.NewServeMux()
	mux.HandleFunc(s.URL.Path, svc.ServeSDK)
	mux.HandleFunc(s.URL.Path+"/vimService", svc.ServeSDK)
	svc.ServeMux = mux
	// A request the stopped server still runs reads the registry that
	// NewServer writes: wait for it to end first.
	if s.closing != nil {
		<-s.closing
		s.closing = nil
	}
	waitFree(s.URL.Host)
	s.server = newServer(svc)
}

// waitFree waits, up to restartWait, until addr can be listened on
// again: while the simulator was stopped, another socket of the machine
// may have taken its port for a moment (an outgoing connection's local
// port), and NewServer panics on a port in use.
func waitFree(addr string) {
	for deadline := time.Now().Add(restartWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return
		}
	}
}

// restartWait bounds waitFree.
const restartWait = 30 * time.Second

// Model is the simulator's model, for tests that inject faults.
func (s *Simulator) Model() *simulator.Model { return s.model }

// Close stops the simulator and deletes its files.
func (s *Simulator) Close() {
	if s.server != nil {
		s.server.Close()
		s.server = nil
	}
	simMu.Lock()
	s.model.Remove()
	simMu.Unlock()
}
