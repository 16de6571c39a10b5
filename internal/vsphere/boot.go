package vsphere

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Record is the BMC state of a VM that must survive a restart of the
// bridge, as a real BMC keeps its boot flags in non-volatile memory: the
// boot override and the virtual media inserted.
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
}

func bootClass(d machine.BootDevice) string {
	switch d {
	case machine.BootPXE:
		return object.DeviceTypeEthernet
	case machine.BootDisk:
		return object.DeviceTypeDisk
	case machine.BootCD:
		return object.DeviceTypeCdrom
	}
	return ""
}

// defaultClasses is the order used for device classes that the VM's boot
// order does not list yet: an installed disk first, as firmware defaults do.
var defaultClasses = []string{object.DeviceTypeDisk, object.DeviceTypeCdrom, object.DeviceTypeEthernet}

// bootOrder puts every device of class first and keeps the other classes in
// their present order, appending the classes not yet listed: an explicit
// boot order makes the firmware try only the devices it names.
func bootOrder(devices object.VirtualDeviceList, current []types.BaseVirtualMachineBootOptionsBootableDevice, class string) ([]types.BaseVirtualMachineBootOptionsBootableDevice, error) {
	if len(devices.BootOrder([]string{class})) == 0 {
		return nil, fmt.Errorf("the VM has no %s device: %w", class, machine.ErrInvalidArgument)
	}
	classes := []string{class}
	for _, d := range current {
		if c, _ := bootableClass(d); c != "" && !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	for _, c := range defaultClasses {
		if !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	return devices.BootOrder(classes), nil
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

// decodeOrder reads what encodeOrder wrote, dropping entries whose device
// no longer exists: vSphere refuses a boot order naming a missing device.
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

func bootMode(firmware string) machine.BootMode {
	if firmware == string(types.GuestOsDescriptorFirmwareTypeEfi) {
		return machine.BootModeUEFI
	}
	return machine.BootModeLegacy
}

func firmware(m machine.BootMode) string {
	if m == machine.BootModeUEFI {
		return string(types.GuestOsDescriptorFirmwareTypeEfi)
	}
	return string(types.GuestOsDescriptorFirmwareTypeBios)
}

// FirmwarePolicy says which boot overrides may change a VM's firmware
// (configuration key boot.followEfiBit): the EFI bit of IPMI's boot flags
// and Redfish's BootSourceOverrideMode. Most people type `chassis bootdev
// pxe` without `options=efiboot`, which clears the EFI bit; followed for a
// one-time override, that would switch an EFI VM to BIOS for its next boot.
type FirmwarePolicy string

// Firmware policies.
const (
	// FollowPersistent, the default: only persistent overrides change the
	// firmware; a one-time override leaves it as it is.
	FollowPersistent FirmwarePolicy = "persistent"
	// FollowAlways: one-time overrides change it too, for their one boot;
	// the firmware they replaced comes back after it (at once if the VM is
	// off by then, else before the next power-on).
	FollowAlways FirmwarePolicy = "always"
	// FollowNever: no override changes the firmware; it is vSphere's to set.
	FollowNever FirmwarePolicy = "never"
)

// FirmwarePolicies lists the valid policies, the default first.
var FirmwarePolicies = []FirmwarePolicy{FollowPersistent, FollowAlways, FollowNever}

// follows is the one rule deciding whether override o changes the
// firmware: every protocol's boot override goes through it. An unknown or
// empty policy is FollowPersistent.
func (p FirmwarePolicy) follows(o machine.BootOverride) bool {
	if !o.Enabled || o.Mode == machine.BootModeUnspecified {
		return false
	}
	switch p {
	case FollowAlways:
		return true
	case FollowNever:
		return false
	}
	return o.Persistent
}

// planFirmware applies override o's firmware decision to rec, the VM's
// record before o: cur is the VM's configured firmware and off whether it
// is powered off. Like the boot order, every override starts from the
// firmware in force without a one-time override, so a one-time override
// replaced or cleared before its boot takes its firmware change with it. It
// returns the firmware to configure now ("" for none): vSphere refuses a
// firmware change on a running VM, so it then waits in PendingFirmware
// for the next power-on.
func planFirmware(p FirmwarePolicy, o machine.BootOverride, cur string, off bool, rec *Record) string {
	effective := cur
	if rec.PendingFirmware != "" {
		effective = rec.PendingFirmware
	}
	base := effective
	if rec.OneTime && rec.RestoreFirmware != "" {
		base = rec.RestoreFirmware
	}
	want := base
	if p.follows(o) {
		want = firmware(o.Mode)
	}
	rec.RestoreFirmware = ""
	if o.Enabled && !o.Persistent && want != base {
		rec.RestoreFirmware = base
	}
	return setFirmware(want, effective, cur, off, rec)
}

// setFirmware makes want the firmware of the VM's next boot: at once (the
// result) when the VM is off, else through rec.PendingFirmware.
func setFirmware(want, effective, cur string, off bool, rec *Record) string {
	switch {
	case want == effective:
		return ""
	case want == cur:
		rec.PendingFirmware = ""
		return ""
	case off:
		rec.PendingFirmware = ""
		return want
	}
	rec.PendingFirmware = want
	return ""
}
