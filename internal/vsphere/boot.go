package vsphere

import (
	"slices"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Record is the BMC state of a VM that must survive a restart of the
// bridge, as a real BMC keeps its boot flags in non-volatile memory: the
// boot override, the virtual media inserted, and the changes waiting for
// the VM to be off.
type Record struct {
	Override machine.BootOverride `json:"override"`
	// Restore is the boot order in force before a one-time override, put
	// back once the VM has booted; nil when no one-time override waits.
	Restore []string `json:"restore,omitempty"`
	// OneTime marks a one-time override waiting for its boot (Restore may
	// then be empty: the VM had no explicit boot order).
	OneTime bool `json:"oneTime,omitempty"`
	// PendingFirmware is a firmware change requested while the VM ran;
	// vSphere refuses it then, so it waits for the next power-on.
	PendingFirmware string `json:"pendingFirmware,omitempty"`
	// PendingSecureBoot is a secure-boot change requested while the VM
	// ran, waiting for the next power-on as PendingFirmware does.
	PendingSecureBoot *bool `json:"pendingSecureBoot,omitempty"`
	// RestoreFirmware is the firmware a one-time override replaced, put
	// back after its boot (as Restore is for the boot order); empty when
	// the override left the firmware alone.
	RestoreFirmware string `json:"restoreFirmware,omitempty"`
	// MediaURL is the URL of the image inserted in the CD drive, and
	// MediaFile the datastore path it was stored at ("[ds] dir/x.iso"):
	// the drive shows MediaURL while its backing is still MediaFile.
	MediaURL  string `json:"mediaURL,omitempty"`
	MediaFile string `json:"mediaFile,omitempty"`
	// MediaVerify is the drive's VerifyCertificate once a client set it;
	// nil: the media.verifyCertificate default.
	MediaVerify *bool `json:"mediaVerifyCertificate,omitempty"`
	// PendingConsole is the console's proxy URI (VMOptions.ConsoleURI)
	// whose serial port waits for the VM to be off: vSphere adds a serial
	// port, or changes its backing, only on a powered-off VM.
	PendingConsole string `json:"pendingConsole,omitempty"`
}

// bootClasses are the device classes a boot override can select.
var bootClasses = []string{machine.ClassDisk, machine.ClassCDROM, machine.ClassEthernet}

// planState is the record in force and, from it and vm, the boot state a
// boot change is planned on under the VM's firmware policy. It exists so
// that every boot change (an override, secure boot, the restore after a
// one-time boot) plans from the record it then writes over.
func (v *VM) planState(vm *mo.VirtualMachine) (Record, machine.BootState) {
	rec := v.record()
	return rec, bootState(vm, rec, v.opts.FollowEFIBit)
}

// bootState is the VM's boot configuration as machine.PlanBoot sees it:
// vm's configuration, and the changes rec holds for later.
func bootState(vm *mo.VirtualMachine, rec Record, p FirmwarePolicy) machine.BootState {
	s := machine.BootState{
		Policy: p, Off: powerState(vm.Runtime.PowerState) == machine.PowerOff,
		Firmware: bootMode(vm.Config.Firmware), PendingFirmware: recordMode(rec.PendingFirmware),
		PendingSecureBoot: rec.PendingSecureBoot,
		Override:          rec.Override, OneTime: rec.OneTime, Restore: rec.Restore,
		RestoreFirmware: recordMode(rec.RestoreFirmware),
	}
	bo := vm.Config.BootOptions
	if bo == nil {
		bo = &types.VirtualMachineBootOptions{}
	}
	s.Order = encodeOrder(bo.BootOrder)
	s.SecureBoot = bo.EfiSecureBootEnabled != nil && *bo.EfiSecureBootEnabled
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	for _, c := range bootClasses {
		if len(devices.BootOrder([]string{c})) > 0 {
			s.Devices = append(s.Devices, c)
		}
	}
	return s
}

// withBoot returns rec holding what s keeps for later.
func (rec Record) withBoot(s machine.BootState) Record {
	rec.Override, rec.OneTime, rec.Restore = s.Override, s.OneTime, s.Restore
	rec.PendingFirmware, rec.RestoreFirmware = firmware(s.PendingFirmware), firmware(s.RestoreFirmware)
	rec.PendingSecureBoot = s.PendingSecureBoot
	return rec
}

// bootSpec is the reconfiguration applying c to vm. vSphere replaces
// bootOptions whole, so the rest is carried over; an unchanged boot order
// is sent as it is, since encodeOrder drops entries it does not know.
func bootSpec(vm *mo.VirtualMachine, c machine.BootChange) types.VirtualMachineConfigSpec {
	bo := types.VirtualMachineBootOptions{}
	if vm.Config.BootOptions != nil {
		bo = *vm.Config.BootOptions
	}
	if !slices.Equal(c.Order, encodeOrder(bo.BootOrder)) {
		bo.BootOrder = decodeOrder(object.VirtualDeviceList(vm.Config.Hardware.Device), c.Order)
	}
	bo.EnterBIOSSetup = types.NewBool(c.BIOSSetup)
	return types.VirtualMachineConfigSpec{BootOptions: &bo, Firmware: firmware(c.Firmware)}
}

// bootableClass names a boot order entry's device class and device key.
func bootableClass(d types.BaseVirtualMachineBootOptionsBootableDevice) (string, int32) {
	switch d := d.(type) {
	case *types.VirtualMachineBootOptionsBootableEthernetDevice:
		return object.DeviceTypeEthernet, d.DeviceKey
	case *types.VirtualMachineBootOptionsBootableDiskDevice:
		return object.DeviceTypeDisk, d.DeviceKey
	case *types.VirtualMachineBootOptionsBootableCdromDevice:
		return object.DeviceTypeCdrom, 0
	case *types.VirtualMachineBootOptionsBootableFloppyDevice:
		return object.DeviceTypeFloppy, 0
	}
	return "", 0
}

// encodeOrder writes a boot order as "class" or "class:key" strings.
func encodeOrder(order []types.BaseVirtualMachineBootOptionsBootableDevice) []string {
	out := []string{}
	for _, d := range order {
		class, key := bootableClass(d)
		switch class {
		case "":
		case object.DeviceTypeEthernet, object.DeviceTypeDisk:
			out = append(out, class+":"+strconv.Itoa(int(key)))
		default:
			out = append(out, class)
		}
	}
	return out
}

// decodeOrder reads what encodeOrder wrote, and plain classes (every
// device of the class), dropping entries whose device no longer exists:
// vSphere refuses a boot order naming a missing device.
func decodeOrder(devices object.VirtualDeviceList, enc []string) []types.BaseVirtualMachineBootOptionsBootableDevice {
	var out []types.BaseVirtualMachineBootOptionsBootableDevice
	for _, e := range enc {
		class, k, hasKey := strings.Cut(e, ":")
		if !hasKey {
			out = append(out, devices.BootOrder([]string{class})...)
			continue
		}
		key, err := strconv.Atoi(k)
		if err != nil || devices.FindByKey(int32(key)) == nil {
			continue
		}
		switch class {
		case object.DeviceTypeEthernet:
			out = append(out, &types.VirtualMachineBootOptionsBootableEthernetDevice{DeviceKey: int32(key)})
		case object.DeviceTypeDisk:
			out = append(out, &types.VirtualMachineBootOptionsBootableDiskDevice{DeviceKey: int32(key)})
		}
	}
	return out
}

const efi = string(types.GuestOsDescriptorFirmwareTypeEfi)

func bootMode(firmware string) machine.BootMode {
	if firmware == efi {
		return machine.BootModeUEFI
	}
	return machine.BootModeLegacy
}

// recordMode reads a firmware a Record holds; "" is none.
func recordMode(firmware string) machine.BootMode {
	if firmware == "" {
		return machine.BootModeUnspecified
	}
	return bootMode(firmware)
}

// firmware is vSphere's name for mode m; "" for none.
func firmware(m machine.BootMode) string {
	switch m {
	case machine.BootModeUEFI:
		return efi
	case machine.BootModeLegacy:
		return string(types.GuestOsDescriptorFirmwareTypeBios)
	}
	return ""
}

// FirmwarePolicy is machine.FirmwarePolicy, the configuration's
// boot.followEfiBit, under the name the daemon's options use.
type FirmwarePolicy = machine.FirmwarePolicy

// Firmware policies (see machine.FirmwarePolicy).
const (
	FollowPersistent = machine.FollowPersistent
	FollowAlways     = machine.FollowAlways
	FollowNever      = machine.FollowNever
)
