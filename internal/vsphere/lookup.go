package vsphere

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// FindVM resolves a VM by BIOS UUID, inventory path (starting with "/") or
// name, and binds a machine to it. A missing VM is reported as
// machine.ErrNotFound; a name that several VMs share is refused, since the
// bridge must never power the wrong machine.
func (c *Client) FindVM(ctx context.Context, ref string, log *slog.Logger) (*VM, error) {
	moref, err := c.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	var vm mo.VirtualMachine
	pc := property.DefaultCollector(c.vim)
	if err := pc.RetrieveOne(ctx, moref, []string{"name", "config.uuid", "config.hardware"}, &vm); err != nil {
		return nil, fmt.Errorf("vm %q: %w", ref, mapError(err))
	}
	if vm.Config == nil {
		return nil, fmt.Errorf("vm %q: has no configuration (inaccessible?): %w", ref, machine.ErrNotFound)
	}
	return newVM(c.vim, moref, identity(vm.Name, vm.Config), log), nil
}

// identity derives what a BMC reports from a VM's configuration.
func identity(name string, cfg *types.VirtualMachineConfigInfo) machine.Identity {
	uuid := strings.ToLower(cfg.Uuid)
	id := machine.Identity{Name: name, UUID: uuid, SerialNumber: serialNumber(uuid)}
	id.CPUs, id.MemoryMiB = int(cfg.Hardware.NumCPU), int(cfg.Hardware.MemoryMB)
	for _, d := range object.VirtualDeviceList(cfg.Hardware.Device).SelectByType((*types.VirtualEthernetCard)(nil)) {
		if nic, ok := d.(types.BaseVirtualEthernetCard); ok {
			id.MACs = append(id.MACs, nic.GetVirtualEthernetCard().MacAddress)
		}
	}
	return id
}

// serialNumber is the SMBIOS system serial number vSphere gives a VM: its
// BIOS UUID's 16 bytes in hex, "VMware-" first and a dash after the eighth.
func serialNumber(uuid string) string {
	hex := strings.ReplaceAll(uuid, "-", "")
	if len(hex) != 32 {
		return ""
	}
	var b strings.Builder
	b.WriteString("VMware-")
	for i := 0; i < 32; i += 2 {
		switch {
		case i == 16:
			b.WriteByte('-')
		case i > 0:
			b.WriteByte(' ')
		}
		b.WriteString(hex[i : i+2])
	}
	return b.String()
}

func (c *Client) resolve(ctx context.Context, ref string) (types.ManagedObjectReference, error) {
	var none types.ManagedObjectReference
	si := object.NewSearchIndex(c.vim)
	switch {
	case ref == "":
		return none, fmt.Errorf("vm: empty reference: %w", machine.ErrInvalidArgument)
	case uuidPattern.MatchString(ref):
		// vcsim compares UUIDs case-sensitively, vCenter does not: lower-case.
		r, err := si.FindByUuid(ctx, nil, strings.ToLower(ref), true, types.NewBool(false))
		if err != nil {
			return none, fmt.Errorf("vm %q: %w", ref, mapError(err))
		}
		if r == nil {
			return none, fmt.Errorf("vm with BIOS UUID %s: %w", ref, machine.ErrNotFound)
		}
		return r.Reference(), nil
	case strings.HasPrefix(ref, "/"):
		r, err := si.FindByInventoryPath(ctx, ref)
		if err != nil {
			return none, fmt.Errorf("vm %q: %w", ref, mapError(err))
		}
		if r == nil || r.Reference().Type != "VirtualMachine" {
			return none, fmt.Errorf("vm at inventory path %s: %w", ref, machine.ErrNotFound)
		}
		return r.Reference(), nil
	}
	v, err := view.NewManager(c.vim).CreateContainerView(ctx, c.vim.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return none, fmt.Errorf("vm %q: %w", ref, mapError(err))
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	// Compare names exactly: property.Match would treat them as glob patterns.
	var all []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &all); err != nil {
		return none, fmt.Errorf("vm %q: %w", ref, mapError(err))
	}
	var refs []types.ManagedObjectReference
	for _, vm := range all {
		if vm.Name == ref {
			refs = append(refs, vm.Self)
		}
	}
	switch len(refs) {
	case 0:
		return none, fmt.Errorf("vm named %q: %w", ref, machine.ErrNotFound)
	case 1:
		return refs[0], nil
	}
	return none, fmt.Errorf("vm name %q matches %d VMs; use its inventory path or BIOS UUID: %w", ref, len(refs), machine.ErrInvalidArgument)
}
