package vsphere

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
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

// The SMBIOS system manufacturer and product name of every vSphere VM (the
// guest's dmidecode and Ironic's inspection see them).
const (
	smbiosManufacturer = "VMware, Inc."
	smbiosProduct      = "VMware Virtual Platform"
)

// identity derives what a BMC reports from a VM's configuration and its
// guest's state.
func identity(vm *mo.VirtualMachine) machine.Identity {
	cfg := vm.Config
	uuid := strings.ToLower(cfg.Uuid)
	id := machine.Identity{Name: vm.Name, UUID: uuid, InstanceUUID: strings.ToLower(cfg.InstanceUuid), SerialNumber: serialNumber(uuid),
		Manufacturer: smbiosManufacturer, Model: smbiosProduct}
	id.CPUs, id.MemoryMiB = int(cfg.Hardware.NumCPU), int(cfg.Hardware.MemoryMB)
	if b := cfg.BootOptions; b != nil {
		if b.EfiSecureBootEnabled != nil {
			id.SecureBoot = *b.EfiSecureBootEnabled && cfg.Firmware == string(types.GuestOsDescriptorFirmwareTypeEfi)
		}
		for _, d := range b.BootOrder {
			if class, _ := bootableClass(d); class != "" {
				id.BootOrder = append(id.BootOrder, class)
			}
		}
	}
	if vm.Guest != nil {
		id.GuestTools = vm.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
	}
	// Type assertions, not VirtualDeviceList.SelectByType: that walks
	// each device's struct by reflection, and Redfish asks for a system's
	// identity on every GET.
	controllers := map[int32]types.BaseVirtualDevice{}
	for _, d := range cfg.Hardware.Device {
		switch d.(type) {
		case types.BaseVirtualSCSIController, types.BaseVirtualSATAController, *types.VirtualNVMEController, *types.VirtualIDEController:
			controllers[d.GetVirtualDevice().Key] = d
		}
	}
	for _, d := range cfg.Hardware.Device {
		switch d := d.(type) {
		case types.BaseVirtualEthernetCard:
			id.MACs = append(id.MACs, d.GetVirtualEthernetCard().MacAddress)
		case *types.VirtualDisk:
			id.Disks = append(id.Disks, disk(d, controllers[d.ControllerKey]))
		}
	}
	return id
}

// disk describes a virtual disk on controller c (nil if not found).
func disk(d *types.VirtualDisk, c types.BaseVirtualDevice) machine.Disk {
	out := machine.Disk{ID: strconv.Itoa(int(d.Key)), Name: label(d.GetVirtualDevice()), CapacityBytes: d.CapacityInBytes}
	if out.CapacityBytes == 0 {
		out.CapacityBytes = d.CapacityInKB * 1024 // set by older vCenters only
	}
	switch b := d.Backing.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		out.UUID = b.Uuid
	case *types.VirtualDiskSeSparseBackingInfo:
		out.UUID = b.Uuid
	case *types.VirtualDiskSparseVer2BackingInfo:
		out.UUID = b.Uuid
	case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
		out.UUID = b.Uuid
	}
	if c == nil {
		return out
	}
	out.ControllerID, out.Controller = strconv.Itoa(int(c.GetVirtualDevice().Key)), label(c.GetVirtualDevice())
	switch c.(type) {
	case types.BaseVirtualSCSIController:
		out.Bus = "SCSI"
	case types.BaseVirtualSATAController:
		out.Bus = "SATA"
	case *types.VirtualNVMEController:
		out.Bus = "NVMe"
	case *types.VirtualIDEController:
		out.Bus = "IDE"
	}
	return out
}

func label(d *types.VirtualDevice) string {
	if d.DeviceInfo != nil {
		return d.DeviceInfo.GetDescription().Label
	}
	return ""
}

// serialNumber is the SMBIOS system serial number vSphere gives a VM: its
// BIOS UUID's 16 bytes in hex, "VMware-" first and a dash after the eighth.
func serialNumber(uuid string) string {
	if v := VMXUUID(uuid); v != "" {
		return "VMware-" + v
	}
	return ""
}

// VMXUUID writes an API-form UUID in VMware's .vmx form, "42 1a 2b 3c 4d
// 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8": the form of the SMBIOS serial number
// (after "VMware-") and of the UUIDs an ESXi host names a VM by to a
// serial port concentrator. A string that is not 32 hex digits gives "".
func VMXUUID(uuid string) string {
	hex := strings.ReplaceAll(uuid, "-", "")
	if len(hex) != 32 {
		return ""
	}
	var b strings.Builder
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
