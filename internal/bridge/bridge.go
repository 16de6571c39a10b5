// Package bridge owns the running set of virtual BMCs: it binds each
// configured BMC to its VM, starts its IPMI endpoint, reports what came up
// and what did not, and stops them all.
package bridge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Spec is one BMC to run.
type Spec struct {
	// VM is a name, an inventory path or a BIOS UUID.
	VM       string
	Address  string // host:port
	Username string
	Password string
	// Where names the spec's origin for error messages (a config line).
	Where string
}

// BMC is the outcome of starting one Spec.
type BMC struct {
	Spec Spec
	// Name is the VM's name once found.
	Name string
	// Addr is the bound address, when running.
	Addr net.Addr
	// Err says why the BMC is not running.
	Err error

	endpoint *ipmi.Endpoint
	vm       *vsphere.VM
}

// Bridge is a set of running BMCs.
type Bridge struct {
	BMCs []*BMC
	wg   sync.WaitGroup
}

// Start binds and starts every spec. A VM that cannot be found or a port
// that cannot be bound fails that BMC only; the others serve.
func Start(ctx context.Context, c *vsphere.Client, specs []Spec, log *slog.Logger) *Bridge {
	b := &Bridge{}
	for _, s := range specs {
		bm := &BMC{Spec: s}
		b.BMCs = append(b.BMCs, bm)
		vm, err := c.FindVM(ctx, s.VM, log)
		if err != nil {
			bm.Err = err
			log.Error("bmc not started", "vm", s.VM, "address", s.Address, "config", s.Where, "err", err)
			continue
		}
		id, _ := vm.Identity(ctx)
		bm.Name, bm.vm = id.Name, vm
		ep, err := ipmi.Listen(ctx, vm, ipmi.Config{
			Address: s.Address, Username: s.Username, Password: s.Password,
			Log: log.With("vm", id.Name),
		})
		if err != nil {
			vm.Close()
			bm.Err = err
			log.Error("bmc not started", "vm", id.Name, "address", s.Address, "config", s.Where, "err", err)
			continue
		}
		bm.endpoint, bm.Addr = ep, ep.Addr()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := ep.Serve(ctx); err != nil {
				log.Error("bmc stopped", "vm", id.Name, "err", err)
			}
		}()
		log.Info("bmc serving", "vm", id.Name, "uuid", id.UUID, "address", bm.Addr.String())
	}
	return b
}

// Running counts the BMCs that serve.
func (b *Bridge) Running() int {
	n := 0
	for _, bm := range b.BMCs {
		if bm.Err == nil {
			n++
		}
	}
	return n
}

// Close stops every endpoint and waits for background vCenter tasks.
func (b *Bridge) Close() error {
	var errs []error
	for _, bm := range b.BMCs {
		if bm.endpoint != nil {
			errs = append(errs, bm.endpoint.Close())
		}
	}
	b.wg.Wait()
	for _, bm := range b.BMCs {
		if bm.vm != nil {
			bm.vm.Close()
		}
	}
	return errors.Join(errs...)
}
