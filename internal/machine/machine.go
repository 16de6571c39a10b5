// Package machine owns the one interface between the management protocols
// (IPMI, Redfish) and the virtualisation backend (vSphere): power, boot
// override and identity, expressed as power states and boot devices, never as
// NetFns or HTTP verbs. It also owns the typed errors every backend returns,
// so that each protocol maps them to its own status codes in one place, and
// the rules of a boot override (PlanBoot and its kin), so that every
// backend follows the same ones.
package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Machine is one managed system behind a virtual BMC.
//
// Implementations are safe for concurrent use. Actions return once the
// backend has accepted them; they do not wait for slow backend tasks, because
// a BMC that answers late costs an Ironic operator a 5 s retry.
type Machine interface {
	// Identity returns what a BMC reports about the system it manages.
	Identity(ctx context.Context) (Identity, error)
	// PowerState returns the current power state.
	PowerState(ctx context.Context) (PowerState, error)
	// Power performs a power action. On and Off are idempotent.
	Power(ctx context.Context, a PowerAction) error
	// BootOverride returns the boot override in force.
	BootOverride(ctx context.Context) (BootOverride, error)
	// SetBootOverride replaces the boot override and applies it to the system.
	SetBootOverride(ctx context.Context, o BootOverride) error
	// Stats returns the system's current resource usage.
	Stats(ctx context.Context) (Stats, error)
	// Events returns the power and boot events recorded after sequence
	// number since (0 for all that are kept), oldest first.
	Events(since uint64) []Event
	// Media returns the state of the system's virtual CD drive.
	Media(ctx context.Context) (Media, error)
	// InsertMedia fetches the ISO image at url (http or https) into the
	// backend and connects it to the CD drive, replacing any image there.
	// A URL that cannot be fetched, or whose content is not an ISO image,
	// fails with ErrInvalidArgument and leaves the drive as it was; the
	// error's text names the class of failure and is fit for a client. A
	// later InsertMedia or EjectMedia cancels one in progress.
	InsertMedia(ctx context.Context, url string) error
	// EjectMedia disconnects the image from the CD drive. Ejecting an empty
	// drive succeeds. It cancels an InsertMedia in progress.
	EjectMedia(ctx context.Context) error
	// SetSecureBoot turns UEFI secure boot on or off, from the next boot
	// on. Turning it on for a system without UEFI firmware fails with
	// ErrInvalidArgument.
	SetSecureBoot(ctx context.Context, on bool) error
	// SetMediaVerify sets whether later inserts verify an https image's
	// certificate (Redfish VirtualMedia.VerifyCertificate); it outlives
	// images and restarts.
	SetMediaVerify(ctx context.Context, verify bool) error
	// SerialConsole returns the system's serial console, or nil when its
	// BMC offers none (the default: the VM's serial port must be pointed
	// at the bridge first).
	SerialConsole() SerialConsole
}

// Media is the state of a system's virtual CD drive.
type Media struct {
	// Inserted: an image is connected.
	Inserted bool
	// Image is the URL the connected image was fetched from.
	Image string
	// VerifyCertificate: inserts verify an https image's certificate.
	VerifyCertificate bool
}

// Identity describes the managed system.
type Identity struct {
	// Name is the backend's name for the system (the VM name).
	Name string
	// UUID is the system's SMBIOS (BIOS) UUID in canonical lower-case form:
	// the UUID the guest, Ironic inspection and Redfish all see.
	UUID string
	// InstanceUUID is the backend's own id of the system, lower case (a
	// VM's vCenter instance UUID, which an ESXi host also names it by on
	// a serial port connection); "" when the backend has none.
	InstanceUUID string
	// SerialNumber is the SMBIOS system serial number the guest sees
	// (on vSphere "VMware-" and the BIOS UUID's bytes).
	SerialNumber string
	// Manufacturer and Model are the SMBIOS system manufacturer and
	// product name the guest sees, which every protocol reports.
	Manufacturer, Model string
	// CPUs and MemoryMiB are the configured virtual hardware.
	CPUs      int
	MemoryMiB int
	// MACs are the addresses of the system's NICs, in device order.
	MACs []string
	// Disks are the system's virtual disks, in device order: what a
	// BMC's storage inventory reports (Ironic's inspection takes the
	// root disk's size from it).
	Disks []Disk
	// BootOrder is the firmware's boot order by device class ("disk",
	// "ethernet", "cdrom", "floppy"); empty: the firmware's default.
	BootOrder []string
	// SecureBoot: the firmware enforces UEFI secure boot; SecureBootNext:
	// it will from the next boot (a change can wait for the system to be
	// off).
	SecureBoot, SecureBootNext bool
	// GuestTools: the guest's agent (VMware Tools) runs, so the guest can
	// be asked to shut down or restart.
	GuestTools bool
	// SoftOffFallback: a guest shutdown the guest cannot do becomes a hard
	// power-off (the backend is configured so).
	SoftOffFallback bool
	// NMI: the backend can raise an NMI in the system now (it runs, and
	// the backend can send one).
	NMI bool
	// SerialConsole: the system's serial port points at the bridge's
	// console concentrator (on vSphere, a vSPC serial port whose proxy URI
	// is the concentrator's), so what it prints can reach a console.
	SerialConsole bool
}

// Allows reports whether a can be asked of the system now. Protocols
// advertise only what it allows (Redfish's ResetType AllowableValues) and
// refuse the rest alike, so that an advertised action works: a guest
// shutdown or restart needs the guest's agent (or, for a shutdown, the
// fallback), an NMI a backend that can send one.
func (id Identity) Allows(a PowerAction) bool {
	switch a {
	case SoftOff:
		return id.GuestTools || id.SoftOffFallback
	case SoftReset:
		return id.GuestTools
	case NMI:
		return id.NMI
	}
	return true
}

// Equal reports whether two identities say the same, so that a protocol can
// keep what it rendered from one until the system changes.
func (id Identity) Equal(o Identity) bool {
	return id.Name == o.Name && id.UUID == o.UUID && id.InstanceUUID == o.InstanceUUID && id.SerialNumber == o.SerialNumber &&
		id.Manufacturer == o.Manufacturer && id.Model == o.Model &&
		id.CPUs == o.CPUs && id.MemoryMiB == o.MemoryMiB &&
		slices.Equal(id.MACs, o.MACs) && slices.Equal(id.Disks, o.Disks) && slices.Equal(id.BootOrder, o.BootOrder) &&
		id.SecureBoot == o.SecureBoot && id.SecureBootNext == o.SecureBootNext &&
		id.GuestTools == o.GuestTools && id.SoftOffFallback == o.SoftOffFallback && id.NMI == o.NMI &&
		id.SerialConsole == o.SerialConsole
}

// Disk is a virtual disk and the controller it hangs off.
type Disk struct {
	// ID is the disk's identifier within the system, stable while the
	// disk exists (vSphere's device key).
	ID string
	// Name is the backend's label ("Hard disk 1").
	Name          string
	CapacityBytes int64
	// Bus is the controller's kind: "SCSI", "SATA", "NVMe" or "IDE".
	Bus string
	// ControllerID and Controller identify and name the controller.
	ControllerID, Controller string
	// UUID is the disk's own identifier (vSphere's backing UUID; with
	// disk.EnableUUID the guest sees it as the disk's serial and WWN).
	UUID string
}

// Stats is the system's resource usage, as percentages of what it is
// configured with (0 when it is off).
type Stats struct {
	CPUPercent    float64
	MemoryPercent float64
}

// PowerState is the system's power state as a BMC reports it.
type PowerState int

// Power states. Suspended is kept apart from Off so that logs stay truthful,
// but every protocol reports it as off: a suspended VM runs no code.
const (
	PowerUnknown PowerState = iota
	PowerOn
	PowerOff
	PowerSuspended
)

func (s PowerState) String() string {
	switch s {
	case PowerOn:
		return "on"
	case PowerOff:
		return "off"
	case PowerSuspended:
		return "suspended"
	}
	return "unknown"
}

// IsOn reports whether the system is running (suspended counts as off).
func (s PowerState) IsOn() bool { return s == PowerOn }

// PowerAction is a request to change the power state.
type PowerAction int

// Power actions, named after what a BMC does (IPMI v2.0 §28.3, Redfish ResetType).
const (
	// On powers the system on, or resumes it when suspended.
	On PowerAction = iota + 1
	// Off removes power at once (hard off).
	Off
	// SoftOff asks the guest OS to shut down, as an ACPI power button would.
	SoftOff
	// Cycle powers a running system off and on again.
	Cycle
	// Reset hard-resets a running system without removing power.
	Reset
	// NMI raises a non-maskable interrupt in a running system (IPMI "diag").
	NMI
	// SoftReset asks the guest OS to restart (Redfish GracefulRestart).
	SoftReset
)

func (a PowerAction) String() string {
	switch a {
	case On:
		return "on"
	case Off:
		return "off"
	case SoftOff:
		return "soft-off"
	case Cycle:
		return "cycle"
	case Reset:
		return "reset"
	case NMI:
		return "nmi"
	case SoftReset:
		return "soft-reset"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// BootDevice is the device a boot override selects.
type BootDevice int

// Boot devices that a VM can honour.
const (
	BootNone BootDevice = iota
	BootPXE
	BootDisk
	BootCD
	BootBIOSSetup
)

func (d BootDevice) String() string {
	switch d {
	case BootNone:
		return "none"
	case BootPXE:
		return "pxe"
	case BootDisk:
		return "disk"
	case BootCD:
		return "cdrom"
	case BootBIOSSetup:
		return "bios"
	}
	return fmt.Sprintf("device(%d)", int(d))
}

// BootMode is the firmware the system boots with.
type BootMode int

// Boot modes. BootModeUnspecified in a request leaves the firmware alone; a
// Machine never reports it.
const (
	BootModeUnspecified BootMode = iota
	BootModeLegacy
	BootModeUEFI
)

func (m BootMode) String() string {
	switch m {
	case BootModeLegacy:
		return "legacy"
	case BootModeUEFI:
		return "uefi"
	}
	return "unspecified"
}

// BootOverride is the boot device request that a BMC holds for the system
// (IPMI boot flags parameter 5, Redfish Boot.BootSourceOverride*).
type BootOverride struct {
	// Enabled is the IPMI "boot flags valid" bit; false means no override.
	Enabled bool `json:"enabled"`
	// Persistent applies the override to all future boots, not only the next.
	Persistent bool `json:"persistent"`
	// Device is the device to boot from.
	Device BootDevice `json:"device"`
	// Mode selects the firmware; applied only when Enabled.
	Mode BootMode `json:"mode,omitempty"`
}

func (o BootOverride) String() string {
	if !o.Enabled {
		return "none"
	}
	p := "once"
	if o.Persistent {
		p = "persistent"
	}
	return fmt.Sprintf("%s/%s/%s", o.Device, p, o.Mode)
}

// Errors every Machine implementation returns (wrapped with detail), so that
// protocols map them to status codes in one function each.
var (
	// ErrNotFound: the system no longer exists in the backend.
	ErrNotFound = errors.New("machine not found")
	// ErrUnavailable: the backend cannot be reached now; retrying later may work.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrBusy: another operation on the system is in progress.
	ErrBusy = errors.New("machine busy")
	// ErrInvalidState: the action makes no sense in the present state (a
	// reset of a powered-off system, a guest shutdown without VMware Tools).
	ErrInvalidState = errors.New("not possible in the present state")
	// ErrUnsupported: the backend cannot do this at all.
	ErrUnsupported = errors.New("not supported")
	// ErrInvalidArgument: the request names something the system cannot use.
	ErrInvalidArgument = errors.New("invalid argument")
)

// MarshalText names the device, for state files.
func (d BootDevice) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a device name written by MarshalText.
func (d *BootDevice) UnmarshalText(b []byte) error {
	for _, c := range []BootDevice{BootNone, BootPXE, BootDisk, BootCD, BootBIOSSetup} {
		if c.String() == string(b) {
			*d = c
			return nil
		}
	}
	return fmt.Errorf("unknown boot device %q", b)
}

// MarshalText names the mode, for state files.
func (m BootMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses a mode name written by MarshalText.
func (m *BootMode) UnmarshalText(b []byte) error {
	for _, c := range []BootMode{BootModeUnspecified, BootModeLegacy, BootModeUEFI} {
		if c.String() == string(b) {
			*m = c
			return nil
		}
	}
	return fmt.Errorf("unknown boot mode %q", b)
}
