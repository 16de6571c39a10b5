package machine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The rules of a boot override live here, once, as pure functions over a
// BootState: every backend (the vSphere VM, the in-memory fake) maps its
// own configuration to a BootState, applies the BootChange a plan returns,
// and keeps the BootState it returns. Device classes are strings, so that
// no backend's types leak in.

// Boot device classes, as Identity.BootOrder and BootState.Order name them
// (vSphere's bootable device kinds use the same words).
const (
	ClassDisk     = "disk"
	ClassCDROM    = "cdrom"
	ClassEthernet = "ethernet"
)

// Class is the device class d boots from; "" for BootNone and
// BootBIOSSetup, which select no device.
func (d BootDevice) Class() string {
	switch d {
	case BootPXE:
		return ClassEthernet
	case BootDisk:
		return ClassDisk
	case BootCD:
		return ClassCDROM
	}
	return ""
}

// defaultClasses follow, in this order, the classes a boot order does not
// list yet: an explicit boot order makes firmware try only the devices it
// names, and an installed disk comes first, as firmware defaults do.
var defaultClasses = []string{ClassDisk, ClassCDROM, ClassEthernet}

// FirmwarePolicy says which boot overrides may change a system's firmware
// (configuration key boot.followEfiBit): the EFI bit of IPMI's boot flags
// and Redfish's BootSourceOverrideMode. Most people type `chassis bootdev
// pxe` without `options=efiboot`, which clears the EFI bit; followed for a
// one-time override, that would switch an EFI system to BIOS for its next
// boot.
type FirmwarePolicy string

// Firmware policies.
const (
	// FollowPersistent, the default: only persistent overrides change the
	// firmware; a one-time override leaves it as it is.
	FollowPersistent FirmwarePolicy = "persistent"
	// FollowAlways: one-time overrides change it too, for their one boot;
	// the firmware they replaced comes back after it (at once if the
	// system is off by then, else before the next power-on).
	FollowAlways FirmwarePolicy = "always"
	// FollowNever: no override changes the firmware; it is the backend's
	// to set.
	FollowNever FirmwarePolicy = "never"
)

// FirmwarePolicies lists the valid policies, the default first.
var FirmwarePolicies = []FirmwarePolicy{FollowPersistent, FollowAlways, FollowNever}

// Follows is the one rule deciding whether override o changes the
// firmware. An unknown or empty policy is FollowPersistent.
func (p FirmwarePolicy) Follows(o BootOverride) bool {
	if !o.Enabled || o.Mode == BootModeUnspecified {
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

// BootState is what a backend keeps about a system's boot: its
// configuration now, the changes waiting for the next power-on, and what a
// one-time override replaced.
type BootState struct {
	// Policy decides which overrides change the firmware.
	Policy FirmwarePolicy
	// Off: the system is powered off, so its firmware can change now
	// (vSphere changes the firmware of a powered-off VM only; a suspended
	// one is not off).
	Off bool
	// Devices are the classes the system has a device of.
	Devices []string
	// Order is the boot order in force, first to last: a class ("cdrom")
	// or one device of it ("disk:2000", the part after the colon being
	// the backend's device identifier); empty: the firmware's default.
	Order []string
	// Firmware is the configured firmware (never BootModeUnspecified);
	// PendingFirmware a change waiting for the next power-on
	// (BootModeUnspecified: none).
	Firmware, PendingFirmware BootMode
	// SecureBoot is configured; PendingSecureBoot, when set, waits for the
	// next power-on as PendingFirmware does.
	SecureBoot        bool
	PendingSecureBoot *bool
	// Override is the override in force; its Mode is not kept (the
	// firmware is).
	Override BootOverride
	// OneTime: a one-time override waits for its boot. Restore and
	// RestoreFirmware are the boot order and firmware it replaced, put
	// back after that boot (RestoreFirmware unspecified: it left the
	// firmware alone).
	OneTime         bool
	Restore         []string
	RestoreFirmware BootMode
}

// NextFirmware is the firmware of the system's next boot: the pending
// change, else the configured firmware. It is what a boot override reads
// back as its mode.
func (s BootState) NextFirmware() BootMode { return cmp.Or(s.PendingFirmware, s.Firmware) }

// SecureBootNext reports whether the next boot enforces secure boot.
func (s BootState) SecureBootNext() bool {
	if s.PendingSecureBoot != nil {
		return *s.PendingSecureBoot
	}
	return s.SecureBoot
}

// BootChange is the reconfiguration a plan applies to the system now.
type BootChange struct {
	// Order is the boot order to configure (entries as in BootState.Order).
	Order []string
	// BIOSSetup: the next boot enters the firmware's setup.
	BIOSSetup bool
	// Firmware is the firmware to configure now; BootModeUnspecified:
	// leave it.
	Firmware BootMode
}

// PlanBoot plans override o on a system in state s: pxe, disk and cdrom
// move that class to the front of the boot order, bios asks for the
// firmware's setup at the next boot, and the mode switches the firmware
// when the policy says so (at once when the system is off, else at its next
// power-on). Every override starts from the persistent configuration, not
// from a one-time override still waiting, so a one-time override replaced
// or cleared before its boot takes its boot order and firmware with it. A
// one-time override remembers what it replaced, for PlanBooted. It returns
// the state once the change is applied; a class the system has no device
// of is ErrInvalidArgument.
func PlanBoot(s BootState, o BootOverride) (BootState, BootChange, error) {
	base := s.Order
	if s.OneTime {
		base = s.Restore
	}
	c := BootChange{Order: base, BIOSSetup: o.Enabled && o.Device == BootBIOSSetup}
	if class := o.Device.Class(); o.Enabled && class != "" {
		if !slices.Contains(s.Devices, class) {
			return s, BootChange{}, fmt.Errorf("the system has no %s device: %w", class, ErrInvalidArgument)
		}
		c.Order = front(base, class)
	}
	next := s
	next.Order, next.Override = c.Order, o
	next.Override.Mode = BootModeUnspecified
	next.OneTime, next.Restore = o.Enabled && !o.Persistent, nil
	if next.OneTime {
		next.Restore = base
	}
	c.Firmware = next.planFirmware(s, o)
	return next, c, nil
}

// planFirmware applies o's firmware decision to s, which starts as a copy
// of was, the state before o, and returns the firmware to configure now.
func (s *BootState) planFirmware(was BootState, o BootOverride) BootMode {
	base := was.NextFirmware()
	if was.OneTime && was.RestoreFirmware != BootModeUnspecified {
		base = was.RestoreFirmware
	}
	want := base
	if s.Policy.Follows(o) {
		want = o.Mode
	}
	s.RestoreFirmware = BootModeUnspecified
	if s.OneTime && want != base {
		s.RestoreFirmware = base
	}
	return s.setFirmware(want)
}

// setFirmware makes want the firmware of the next boot: at once (the
// result) when the system is off, else through PendingFirmware.
func (s *BootState) setFirmware(want BootMode) BootMode {
	switch {
	case want == s.NextFirmware():
		return BootModeUnspecified
	case want == s.Firmware:
		s.PendingFirmware = BootModeUnspecified
		return BootModeUnspecified
	case s.Off:
		s.Firmware, s.PendingFirmware = want, BootModeUnspecified
		return want
	}
	s.PendingFirmware = want
	return BootModeUnspecified
}

// front puts class first and keeps the other classes of order in their
// present order, appending the default classes not listed yet. Its
// entries are classes: each stands for every device of its class.
func front(order []string, class string) []string {
	classes := []string{class}
	for _, e := range order {
		c, _, _ := strings.Cut(e, ":")
		if !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	for _, c := range defaultClasses {
		if !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	return classes
}

// PlanBooted plans the end of a one-time override once the system has
// booted with it, as a real BMC clears its boot flags' valid bit after the
// boot they were for (IPMI v2.0 §28.13): the boot order it replaced comes
// back, the firmware's setup is no longer asked for, the firmware it
// replaced comes back (at once when the system is off, else at its next
// power-on) and the override is cleared. ok is false, and nothing is to be
// done, when no one-time override waits.
func PlanBooted(s BootState) (next BootState, c BootChange, ok bool) {
	if !s.OneTime {
		return s, BootChange{}, false
	}
	next = s
	c.Order = s.Restore
	if s.RestoreFirmware != BootModeUnspecified {
		c.Firmware = next.setFirmware(s.RestoreFirmware)
	}
	next.Order, next.Override = c.Order, BootOverride{}
	next.OneTime, next.Restore, next.RestoreFirmware = false, nil, BootModeUnspecified
	return next, c, true
}

// PlanSecureBoot plans UEFI secure boot on or off: at once (now) when the
// system is off, else at its next power-on, as a firmware change. Turning
// it on needs UEFI firmware at the next boot: otherwise ErrInvalidArgument.
func PlanSecureBoot(s BootState, on bool) (next BootState, now bool, err error) {
	if fw := s.NextFirmware(); on && fw != BootModeUEFI {
		return s, false, fmt.Errorf("secure boot needs UEFI firmware, the system boots %s: %w", fw, ErrInvalidArgument)
	}
	next = s
	if !s.Off {
		next.PendingSecureBoot = &on
		return next, false, nil
	}
	next.SecureBoot, next.PendingSecureBoot = on, nil
	return next, true, nil
}

// PoweredOn is the state once the changes waiting for a power-on are
// applied, which a backend does before the system starts.
func (s BootState) PoweredOn() BootState {
	s.Firmware, s.PendingFirmware = s.NextFirmware(), BootModeUnspecified
	s.SecureBoot, s.PendingSecureBoot = s.SecureBootNext(), nil
	s.Off = false
	return s
}
