package vsphere

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Resolve finds a VM by BIOS UUID or name in the inventory, or by inventory
// path ("/DC0/vm/folder/name") through vCenter's search index.
func (inv *Inventory) Resolve(ctx context.Context, ref string) (types.ManagedObjectReference, error) {
	var none types.ManagedObjectReference
	switch {
	case ref == "":
		return none, fmt.Errorf("vm: empty reference: %w", machine.ErrInvalidArgument)
	case strings.HasPrefix(ref, "/"):
		if err := inv.Available(); err != nil {
			return none, err
		}
		r, err := object.NewSearchIndex(inv.c.vim).FindByInventoryPath(ctx, ref)
		if err != nil {
			return none, fmt.Errorf("vm %q: %w", ref, mapError(err))
		}
		if r == nil || r.Reference().Type != "VirtualMachine" {
			return none, fmt.Errorf("vm at inventory path %s: %w", ref, machine.ErrNotFound)
		}
		return r.Reference(), nil
	}
	return inv.find(ref)
}

// identity derives what a BMC reports from a VM's configuration.
func identity(name string, cfg *types.VirtualMachineConfigInfo) machine.Identity {
	uuid := strings.ToLower(cfg.Uuid)
	id := machine.Identity{Name: name, UUID: uuid, SerialNumber: serialNumber(uuid)}
	id.CPUs, id.MemoryMiB = int(cfg.Hardware.NumCPU), int(cfg.Hardware.MemoryMB)
	// A type assertion, not VirtualDeviceList.SelectByType: that walks
	// each device's struct by reflection, and Redfish asks for a system's
	// identity on every GET.
	for _, d := range cfg.Hardware.Device {
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
