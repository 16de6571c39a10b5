package ipmi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

const (
	testUUID   = "4230a5b6-0c1d-2e3f-8899-aabbccddeeff"
	testSerial = "VMware-42 30 a5 b6 0c 1d 2e 3f-88 99 aa bb cc dd ee ff"
)

// harness dispatches requests through the same registry an endpoint uses.
type harness struct {
	t    *testing.T
	m    *machinetest.Fake
	reg  *handlers.Registry
	hctx *handlers.HandlerContext
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	guid, err := SMBIOSGUID(testUUID)
	if err != nil {
		t.Fatal(err)
	}
	m := &machinetest.Fake{ID: machine.Identity{Name: "vm", UUID: testUUID, SerialNumber: testSerial}}
	st, err := newStorage(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBMC(guid, st, m, Config{Username: "admin", Password: "password"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &harness{t: t, m: m, reg: newRegistry(m, log, newTracker("test", nil)), hctx: &handlers.HandlerContext{
		BMC:     b,
		Session: &bmc.Session{PrivilegeLevel: bmc.PrivilegeLevelAdministrator},
	}}
}

func (h *harness) do(c types.Command, req ...byte) ([]byte, types.CompletionCode) {
	h.t.Helper()
	resp, cc, _ := h.reg.Dispatch(context.Background(), h.hctx, uint8(c.NetFn), c.ID, req)
	return resp, cc
}

// checkResp fails the test unless a handler's answer, got with completion
// code cc, is want with wantCC.
func checkResp(t testing.TB, got []byte, cc types.CompletionCode, want []byte, wantCC types.CompletionCode) {
	t.Helper()
	if cc != wantCC || !bytes.Equal(got, want) {
		t.Fatalf("got % x cc %#x, want % x cc %#x", got, uint8(cc), want, uint8(wantCC))
	}
}

func TestChassisStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		state machine.PowerState
		err   error
		want  []byte
		cc    types.CompletionCode
	}{
		{"on", machine.PowerOn, nil, []byte{0x01, 0, 0}, types.CodeOK},
		{"off", machine.PowerOff, nil, []byte{0x00, 0, 0}, types.CodeOK},
		{"suspended reads as off", machine.PowerSuspended, nil, []byte{0x00, 0, 0}, types.CodeOK},
		{"vcenter away", machine.PowerOn, machine.ErrUnavailable, nil, types.CodeNodeBusy},
		{"vm gone", machine.PowerOn, machine.ErrNotFound, nil, types.CodeRequestedDataNotPresent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.m.State, h.m.Err = tt.state, tt.err
			resp, cc := h.do(types.CommandGetChassisStatus)
			checkResp(t, resp, cc, tt.want, tt.cc)
		})
	}
}

func TestChassisControl(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		state  machine.PowerState
		req    []byte
		cc     types.CompletionCode
		after  machine.PowerState
		action machine.PowerAction
	}{
		{"on", machine.PowerOff, []byte{0x01}, types.CodeOK, machine.PowerOn, machine.On},
		{"off", machine.PowerOn, []byte{0x00}, types.CodeOK, machine.PowerOff, machine.Off},
		{"soft", machine.PowerOn, []byte{0x05}, types.CodeOK, machine.PowerOff, machine.SoftOff},
		{"cycle", machine.PowerOn, []byte{0x02}, types.CodeOK, machine.PowerOn, machine.Cycle},
		{"reset", machine.PowerOn, []byte{0x03}, types.CodeOK, machine.PowerOn, machine.Reset},
		{"diag", machine.PowerOn, []byte{0x04}, types.CodeOK, machine.PowerOn, machine.NMI},
		{"cycle while off", machine.PowerOff, []byte{0x02}, types.CodeNotSupported, machine.PowerOff, 0},
		{"reset while off", machine.PowerOff, []byte{0x03}, types.CodeNotSupported, machine.PowerOff, 0},
		{"unknown action", machine.PowerOff, []byte{0x06}, types.CodeRequestDataFieldInvalid, machine.PowerOff, 0},
		{"no data", machine.PowerOff, nil, types.CodeRequestDataLengthInvalid, machine.PowerOff, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.m.State = tt.state
			if _, cc := h.do(types.CommandChassisControl, tt.req...); cc != tt.cc {
				t.Fatalf("cc %#x, want %#x", uint8(cc), uint8(tt.cc))
			}
			if h.m.State != tt.after {
				t.Errorf("state %s, want %s", h.m.State, tt.after)
			}
			if tt.action != 0 && (len(h.m.Actions) != 1 || h.m.Actions[0] != tt.action) {
				t.Errorf("actions %v, want [%s]", h.m.Actions, tt.action)
			}
		})
	}
}

func TestBootOptions(t *testing.T) {
	t.Parallel()
	type step struct {
		set  []byte // Set System Boot Options request
		cc   types.CompletionCode
		get  byte   // parameter to read back
		want []byte // Get System Boot Options response
	}
	tests := []struct {
		name     string
		steps    []step
		override machine.BootOverride
	}{
		{"ironic uefi pxe once", []step{
			{set: []byte{0x03, 0x08}, get: 0x03, want: []byte{0x01, 0x03, 0x08}},
			{set: []byte{0x05, 0xa0, 0x04, 0, 0, 0}, get: 0x05, want: []byte{0x01, 0x05, 0xa0, 0x04, 0, 0, 0}},
		}, machine.BootOverride{Enabled: true, Device: machine.BootPXE, Mode: machine.BootModeUEFI}},
		{"ipmitool bootdev disk persistent legacy", []step{
			{set: []byte{0x00, 0x01}, get: 0x00, want: []byte{0x01, 0x00, 0x01}},
			{set: []byte{0x04, 0x01, 0x01}, get: 0x04, want: []byte{0x01, 0x04, 0x01, 0x00}},
			{set: []byte{0x05, 0xc0, 0x08, 0, 0, 0}, get: 0x05, want: []byte{0x01, 0x05, 0xc0, 0x08, 0, 0, 0}},
			{set: []byte{0x00, 0x02}, get: 0x00, want: []byte{0x01, 0x00, 0x00}},
			{set: []byte{0x00, 0x00}, get: 0x00, want: []byte{0x01, 0x00, 0x00}},
		}, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy}},
		{"bits the VM ignores read back", []step{
			{set: []byte{0x05, 0xe0, 0x0e, 0x41, 0x00, 0x03}, get: 0x05, want: []byte{0x01, 0x05, 0xe0, 0x0e, 0x41, 0x00, 0x03}},
		}, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeUEFI}},
		{"cdrom and bios", []step{
			{set: []byte{0x05, 0xe0, 0x14, 0, 0, 0}, get: 0x05, want: []byte{0x01, 0x05, 0xe0, 0x14, 0, 0, 0}},
			{set: []byte{0x05, 0xa0, 0x18, 0, 0, 0}, get: 0x05, want: []byte{0x01, 0x05, 0xa0, 0x18, 0, 0, 0}},
		}, machine.BootOverride{Enabled: true, Device: machine.BootBIOSSetup, Mode: machine.BootModeUEFI}},
		{"short write is zero padded", []step{
			{set: []byte{0x05, 0x80, 0x04}, get: 0x05, want: []byte{0x01, 0x05, 0x80, 0x04, 0, 0, 0}},
		}, machine.BootOverride{Enabled: true, Device: machine.BootPXE, Mode: machine.BootModeLegacy}},
		{"invalid clears the override", []step{
			{set: []byte{0x05, 0xe0, 0x04, 0, 0, 0}},
			{set: []byte{0x05, 0x00, 0x00, 0, 0, 0}, get: 0x05, want: []byte{0x01, 0x05, 0x00, 0x00, 0, 0, 0}},
		}, machine.BootOverride{}},
		{"floppy refused", []step{
			{set: []byte{0x05, 0x80, 0x3c, 0, 0, 0}, cc: types.CodeRequestDataFieldInvalid, get: 0x05, want: []byte{0x01, 0x05, 0x20, 0x00, 0, 0, 0}},
		}, machine.BootOverride{}},
		{"too long", []step{
			{set: []byte{0x05, 0x80, 0x04, 0, 0, 0, 0}, cc: types.CodeRequestDataLengthInvalid},
		}, machine.BootOverride{}},
		{"unsupported parameter", []step{
			{set: []byte{0x07, 0x00}, cc: types.CodeParameterNotSupported},
		}, machine.BootOverride{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			for i, s := range tt.steps {
				if _, cc := h.do(types.CommandSetSystemBootOptions, s.set...); cc != s.cc {
					t.Fatalf("step %d: set % x: cc %#x, want %#x", i, s.set, uint8(cc), uint8(s.cc))
				}
				if s.want == nil {
					continue
				}
				got, cc := h.do(types.CommandGetSystemBootOptions, s.get, 0, 0)
				if cc != types.CodeOK || !bytes.Equal(got, s.want) {
					t.Fatalf("step %d: get %d = % x cc %#x, want % x", i, s.get, got, uint8(cc), s.want)
				}
			}
			if h.m.Override != tt.override {
				t.Errorf("machine override %v, want %v", h.m.Override, tt.override)
			}
		})
	}
}

// A change made elsewhere (Redfish, a consumed one-time boot) shows in the
// parameter 5 bytes instead of the last IPMI write.
func TestBootFlagsFollowMachine(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.do(types.CommandSetSystemBootOptions, 0x05, 0xa0, 0x04, 0, 0, 0)
	if err := h.m.SetBootOverride(context.Background(), machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootCD}); err != nil {
		t.Fatal(err)
	}
	got, _ := h.do(types.CommandGetSystemBootOptions, 0x05, 0, 0)
	if want := []byte{0x01, 0x05, 0xe0, 0x14, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	want := []byte{0xb6, 0xa5, 0x30, 0x42, 0x1d, 0x0c, 0x3f, 0x2e, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	for _, c := range []types.Command{types.CommandGetSystemGUID, types.CommandGetDeviceGUID} {
		t.Run(c.Name, func(t *testing.T) {
			got, cc := h.do(c)
			if cc != types.CodeOK || !bytes.Equal(got, want) {
				t.Fatalf("got % x cc %#x, want % x", got, uint8(cc), want)
			}
		})
	}
	t.Run("device id", func(t *testing.T) {
		got, cc := h.do(types.CommandGetDeviceID)
		if cc != types.CodeOK || len(got) < 11 || got[4] != 0x02 || got[6] != 0xdc || got[7] != 0x1a || got[8] != 0 {
			t.Fatalf("got % x cc %#x; want IPMI 2.0 and IANA 6876", got, uint8(cc))
		}
	})
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    types.Command
		req  []byte
		cc   types.CompletionCode
	}{
		{"HPM.2 probe", types.Command{NetFn: 0x2c, ID: 0x3e}, []byte{0, 2}, types.CodeInvalidCommand},
		{"PICMG probe", types.Command{NetFn: 0x2c, ID: 0x00}, []byte{0}, types.CodeInvalidCommand},
		{"cold reset leaves the VM alone", types.CommandColdReset, nil, types.CodeOK},
		{"warm reset leaves the VM alone", types.CommandWarmReset, nil, types.CodeOK},
		{"identify", types.CommandChassisIdentify, []byte{15}, types.CodeOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.m.State = machine.PowerOn
			if _, cc := h.do(tt.c, tt.req...); cc != tt.cc {
				t.Fatalf("cc %#x, want %#x", uint8(cc), uint8(tt.cc))
			}
			if len(h.m.Actions) != 0 || h.m.State != machine.PowerOn {
				t.Fatalf("the VM was touched: %v", h.m.Actions)
			}
		})
	}
}

func TestCompletionCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want types.CompletionCode
	}{
		{nil, types.CodeOK},
		{machine.ErrBusy, types.CodeNodeBusy},
		{machine.ErrUnavailable, types.CodeNodeBusy},
		{machine.ErrInvalidState, types.CodeNotSupported},
		{machine.ErrUnsupported, types.CodeSubFnDisabled},
		{machine.ErrInvalidArgument, types.CodeRequestDataFieldInvalid},
		{machine.ErrNotFound, types.CodeRequestedDataNotPresent},
		{errors.New("other"), types.CodeUnspecifiedError},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.err != nil {
			name = tt.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			if got := completionCode(tt.err); got != tt.want {
				t.Fatalf("got %#x, want %#x", uint8(got), uint8(tt.want))
			}
		})
	}
}

func TestSMBIOSGUIDRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "not-a-uuid", "4230a5b6-0c1d-2e3f-8899-aabbccddeefg", "4230a5b60c1d2e3f8899aabbccddeeff"} {
		if _, err := SMBIOSGUID(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// FuzzHandlers sends arbitrary request data to every command the bridge
// answers itself, over a machine with a few events in its log: no input may
// panic or go unanswered.
func FuzzHandlers(f *testing.F) {
	f.Add(uint8(0x00), uint8(0x08), []byte{0x05, 0xa0, 0x04, 0, 0, 0})
	f.Add(uint8(0x00), uint8(0x09), []byte{0x05, 0, 0})
	f.Add(uint8(0x00), uint8(0x02), []byte{0x01})
	f.Add(uint8(0x00), uint8(0x08), []byte{0x03, 0x08})
	f.Add(uint8(0x06), uint8(0x37), []byte{})
	// Sensors, SDR, FRU, SEL and DCMI, as ipmitool and FreeIPMI send them.
	f.Add(uint8(0x04), uint8(0x2d), []byte{sensorCPU})
	f.Add(uint8(0x04), uint8(0x2d), []byte{sensorPower})
	f.Add(uint8(0x04), uint8(0x27), []byte{sensorMemory})
	f.Add(uint8(0x0a), uint8(0x20), []byte{})
	f.Add(uint8(0x0a), uint8(0x22), []byte{})
	f.Add(uint8(0x0a), uint8(0x23), []byte{0, 0, 0, 0, 0, 5})
	f.Add(uint8(0x0a), uint8(0x10), []byte{0})
	f.Add(uint8(0x0a), uint8(0x11), []byte{0, 0, 0, 32})
	f.Add(uint8(0x0a), uint8(0x40), []byte{})
	f.Add(uint8(0x0a), uint8(0x41), []byte{})
	f.Add(uint8(0x0a), uint8(0x42), []byte{})
	f.Add(uint8(0x0a), uint8(0x43), []byte{0, 0, 0, 0, 0, 0xff})
	f.Add(uint8(0x0a), uint8(0x43), []byte{1, 0, 3, 0, 10, 6})
	f.Add(uint8(0x0a), uint8(0x43), []byte{0, 0, 0xff, 0xff, 15, 0xff})
	f.Add(uint8(0x0a), uint8(0x47), []byte{0, 0, 'C', 'L', 'R', 0xaa})
	f.Add(uint8(0x0a), uint8(0x48), []byte{})
	f.Add(uint8(0x0a), uint8(0x49), []byte{0, 0, 0, 0x60})
	f.Add(uint8(0x2c), uint8(0x01), []byte{0xdc, 0x02})
	f.Add(uint8(0x2c), uint8(0x01), []byte{0x00})
	f.Fuzz(func(t *testing.T, netFn, cmd uint8, data []byte) {
		h := selHarness(t)
		// fencePanics turns a panic into FFh; the fuzzer must still see it.
		_, _, err := h.reg.Dispatch(context.Background(), h.hctx, netFn&^1, cmd, data)
		if err != nil && strings.Contains(err.Error(), "handler panic") {
			t.Fatal(err)
		}
	})
}
