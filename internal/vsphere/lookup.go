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
	if err := pc.RetrieveOne(ctx, moref, []string{"name", "config.uuid"}, &vm); err != nil {
		return nil, fmt.Errorf("vm %q: %w", ref, mapError(err))
	}
	if vm.Config == nil {
		return nil, fmt.Errorf("vm %q: has no configuration (inaccessible?): %w", ref, machine.ErrNotFound)
	}
	return newVM(c.vim, moref, vm.Name, strings.ToLower(vm.Config.Uuid), log), nil
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
