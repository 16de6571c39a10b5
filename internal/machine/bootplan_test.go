package machine

import (
	"errors"
	"fmt"
	"testing"
)

func TestFirmwarePolicyFollows(t *testing.T) {
	once := BootOverride{Enabled: true, Device: BootPXE, Mode: BootModeLegacy}
	pers := once
	pers.Persistent = true
	noMode := BootOverride{Enabled: true, Persistent: true, Device: BootPXE}
	off := BootOverride{Mode: BootModeLegacy}
	for _, tt := range []struct {
		p                       FirmwarePolicy
		once, pers, noMode, off bool
	}{
		{"", false, true, false, false},
		{"bogus", false, true, false, false},
		{FollowPersistent, false, true, false, false},
		{FollowAlways, true, true, false, false},
		{FollowNever, false, false, false, false},
	} {
		got := [4]bool{tt.p.Follows(once), tt.p.Follows(pers), tt.p.Follows(noMode), tt.p.Follows(off)}
		if want := [4]bool{tt.once, tt.pers, tt.noMode, tt.off}; got != want {
			t.Errorf("%q: follows once, persistent, no mode, disabled = %v, want %v", tt.p, got, want)
		}
	}
}

// outcome is what a plan decides, in one comparable line: the change made
// now, then what the system keeps.
type outcome struct {
	Order     []string
	BIOSSetup bool
	Now       BootMode
	Firmware  BootMode
	Pending   BootMode
	OneTime   bool
	Restore   []string
	RestoreFW BootMode
}

func outcomeOf(next BootState, c BootChange) string {
	return fmt.Sprintf("%+v", outcome{c.Order, c.BIOSSetup, c.Firmware, next.Firmware, next.PendingFirmware, next.OneTime, next.Restore, next.RestoreFirmware})
}

var (
	allDevices = []string{ClassDisk, ClassCDROM, ClassEthernet}
	// uefiOff is a powered-off UEFI system booting from its disk first.
	uefiOff = BootState{Policy: FollowPersistent, Off: true, Devices: allDevices, Order: []string{"disk:2000", "cdrom"}, Firmware: BootModeUEFI}
	uefiOn  = func() BootState { s := uefiOff; s.Off = false; return s }()
	// onceLegacy is `ipmitool chassis bootdev pxe`: one-time, EFI bit clear.
	onceLegacy = BootOverride{Enabled: true, Device: BootPXE, Mode: BootModeLegacy}
	pxeOrder   = []string{ClassEthernet, ClassDisk, ClassCDROM}
	uefi       = BootModeUEFI
	legacy     = BootModeLegacy
	none       = BootModeUnspecified
)

// with returns s changed by f, for the table's variations.
func with(s BootState, f func(*BootState)) BootState { f(&s); return s }

// pendingOnce is uefiOff with a one-time pxe override waiting, which under
// "always" switched the firmware to legacy.
var pendingOnce = with(uefiOff, func(s *BootState) {
	s.Policy, s.Order, s.Firmware = FollowAlways, pxeOrder, BootModeLegacy
	s.Override, s.OneTime, s.Restore, s.RestoreFirmware = BootOverride{Enabled: true, Device: BootPXE}, true, uefiOff.Order, BootModeUEFI
})

func TestPlanBoot(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    BootState
		o    BootOverride
		want outcome
	}{
		{"persistent pxe", uefiOff, BootOverride{Enabled: true, Persistent: true, Device: BootPXE},
			outcome{pxeOrder, false, none, uefi, none, false, nil, none}},
		{"classes kept in order, defaults appended", with(uefiOff, func(s *BootState) { s.Order = []string{"floppy", "disk:2000"} }),
			BootOverride{Enabled: true, Persistent: true, Device: BootCD},
			outcome{[]string{ClassCDROM, "floppy", ClassDisk, ClassEthernet}, false, none, uefi, none, false, nil, none}},
		{"once remembers the order", uefiOff, BootOverride{Enabled: true, Device: BootPXE},
			outcome{pxeOrder, false, none, uefi, none, true, uefiOff.Order, none}},
		{"bios setup keeps the order", uefiOff, BootOverride{Enabled: true, Device: BootBIOSSetup},
			outcome{uefiOff.Order, true, none, uefi, none, true, uefiOff.Order, none}},
		{"none keeps the order", uefiOff, BootOverride{},
			outcome{uefiOff.Order, false, none, uefi, none, false, nil, none}},
		{"persistent legacy, off: at once", uefiOff, BootOverride{Enabled: true, Persistent: true, Device: BootDisk, Mode: BootModeLegacy},
			outcome{[]string{ClassDisk, ClassCDROM, ClassEthernet}, false, legacy, legacy, none, false, nil, none}},
		{"persistent legacy, running: at power-on", uefiOn, BootOverride{Enabled: true, Persistent: true, Device: BootNone, Mode: BootModeLegacy},
			outcome{uefiOff.Order, false, none, uefi, legacy, false, nil, none}},
		{"persistent legacy, never", with(uefiOff, func(s *BootState) { s.Policy = FollowNever }), BootOverride{Enabled: true, Persistent: true, Mode: BootModeLegacy},
			outcome{uefiOff.Order, false, none, uefi, none, false, nil, none}},
		{"pending change cancelled", with(uefiOn, func(s *BootState) { s.PendingFirmware = BootModeLegacy }), BootOverride{Enabled: true, Persistent: true, Mode: BootModeUEFI},
			outcome{uefiOff.Order, false, none, uefi, none, false, nil, none}},
		{"once legacy, persistent policy: firmware kept", uefiOff, onceLegacy,
			outcome{pxeOrder, false, none, uefi, none, true, uefiOff.Order, none}},
		{"once legacy, always, off: at once, efi to come back", with(uefiOff, func(s *BootState) { s.Policy = FollowAlways }), onceLegacy,
			outcome{pxeOrder, false, legacy, legacy, none, true, uefiOff.Order, uefi}},
		{"once legacy, always, running: at power-on", with(uefiOn, func(s *BootState) { s.Policy = FollowAlways }), onceLegacy,
			outcome{pxeOrder, false, none, uefi, legacy, true, uefiOff.Order, uefi}},
		{"once replaced by once: from the persistent order", pendingOnce, BootOverride{Enabled: true, Device: BootBIOSSetup},
			outcome{uefiOff.Order, true, uefi, uefi, none, true, uefiOff.Order, none}},
		{"once replaced by once legacy: firmware stays", pendingOnce, BootOverride{Enabled: true, Device: BootCD, Mode: BootModeLegacy},
			outcome{[]string{ClassCDROM, ClassDisk, ClassEthernet}, false, none, legacy, none, true, uefiOff.Order, uefi}},
		{"once cleared: order and firmware back", pendingOnce, BootOverride{},
			outcome{uefiOff.Order, false, uefi, uefi, none, false, nil, none}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next, c, err := PlanBoot(tt.s, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := outcomeOf(next, c), fmt.Sprintf("%+v", tt.want); got != want {
				t.Errorf("plan\n got %s\nwant %s", got, want)
			}
			if want := (BootOverride{Enabled: tt.o.Enabled, Persistent: tt.o.Persistent, Device: tt.o.Device}); next.Override != want {
				t.Errorf("override kept %v, want %v (the firmware is kept, not the mode)", next.Override, want)
			}
		})
	}
}

func TestPlanBootMissingDevice(t *testing.T) {
	s := with(uefiOff, func(s *BootState) { s.Devices = []string{ClassDisk} })
	for _, d := range []BootDevice{BootPXE, BootCD} {
		if _, _, err := PlanBoot(s, BootOverride{Enabled: true, Device: d}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("boot from %s without one: %v", d, err)
		}
	}
	// A disabled override names no device to boot from.
	if _, _, err := PlanBoot(s, BootOverride{Device: BootPXE}); err != nil {
		t.Errorf("disabled override: %v", err)
	}
}

func TestPlanBooted(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    BootState
		ok   bool
		want outcome
	}{
		{"no one-time override", uefiOff, false, outcome{}},
		{"order back", with(uefiOn, func(s *BootState) {
			s.Order, s.OneTime, s.Restore, s.Override = pxeOrder, true, uefiOff.Order, BootOverride{Enabled: true, Device: BootPXE}
		}), true, outcome{uefiOff.Order, false, none, uefi, none, false, nil, none}},
		{"firmware back at once when off", pendingOnce, true,
			outcome{uefiOff.Order, false, uefi, uefi, none, false, nil, none}},
		{"firmware back at the next power-on", with(pendingOnce, func(s *BootState) { s.Off = false }), true,
			outcome{uefiOff.Order, false, none, legacy, uefi, false, nil, none}},
		// The running system never got the one-time firmware: the change
		// waiting for its power-on is dropped.
		{"pending one-time firmware dropped", with(uefiOn, func(s *BootState) {
			s.Policy, s.PendingFirmware, s.OneTime, s.RestoreFirmware = FollowAlways, BootModeLegacy, true, BootModeUEFI
		}), true, outcome{nil, false, none, uefi, none, false, nil, none}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next, c, ok := PlanBooted(tt.s)
			if ok != tt.ok {
				t.Fatalf("ok %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if got, want := outcomeOf(next, c), fmt.Sprintf("%+v", tt.want); got != want {
				t.Errorf("plan\n got %s\nwant %s", got, want)
			}
			if next.Override != (BootOverride{}) {
				t.Errorf("override %v after its boot", next.Override)
			}
		})
	}
}

func TestPlanSecureBoot(t *testing.T) {
	legacyOff := with(uefiOff, func(s *BootState) { s.Firmware = BootModeLegacy })
	for _, tt := range []struct {
		name       string
		s          BootState
		on         bool
		err        error
		now        bool
		sb, sbNext bool
	}{
		{"off: at once", uefiOff, true, nil, true, true, true},
		{"running: at power-on", uefiOn, true, nil, false, false, true},
		{"legacy refused", legacyOff, true, ErrInvalidArgument, false, false, false},
		{"legacy may turn it off", legacyOff, false, nil, true, false, false},
		{"legacy pending refused", with(uefiOn, func(s *BootState) { s.PendingFirmware = BootModeLegacy }), true, ErrInvalidArgument, false, false, false},
		{"uefi pending allowed", with(legacyOff, func(s *BootState) { s.Off, s.PendingFirmware = false, BootModeUEFI }), true, nil, false, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next, now, err := PlanSecureBoot(tt.s, tt.on)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if now != tt.now || next.SecureBoot != tt.sb || next.SecureBootNext() != tt.sbNext {
				t.Errorf("now %v, secure boot %v, next %v; want %v, %v, %v", now, next.SecureBoot, next.SecureBootNext(), tt.now, tt.sb, tt.sbNext)
			}
		})
	}
}

// A power-on applies what waited for it, and nothing else.
func TestPoweredOn(t *testing.T) {
	on := true
	for _, tt := range []struct {
		name string
		s    BootState
		fw   BootMode
		sb   bool
	}{
		{"nothing waits", uefiOff, BootModeUEFI, false},
		{"firmware and secure boot", with(uefiOn, func(s *BootState) { s.PendingFirmware, s.PendingSecureBoot = BootModeLegacy, &on }), BootModeLegacy, true},
	} {
		s := tt.s.PoweredOn()
		if s.Firmware != tt.fw || s.SecureBoot != tt.sb || s.PendingFirmware != BootModeUnspecified || s.PendingSecureBoot != nil || s.Off {
			t.Errorf("%s: %+v", tt.name, s)
		}
	}
}
