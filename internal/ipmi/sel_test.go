package ipmi

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

var selTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) // 6B06CDC0h

// selHarness is a harness whose machine logged logSELEvents's events.
func selHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	logSELEvents(t, h.m)
	return h
}

// logSELEvents has m log, at selTime: power on, a boot override
// (persistent: a one-time one would add its use by the reset), a reset
// and power off (sequence numbers 1 to 4).
func logSELEvents(t testing.TB, m *machinetest.Fake) {
	t.Helper()
	m.Log = machine.NewEventLog(64, func() time.Time { return selTime })
	ctx := context.Background()
	for _, err := range []error{
		m.Power(ctx, machine.On),
		m.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootPXE, Mode: machine.BootModeUEFI}),
		m.Power(ctx, machine.Reset),
		m.Power(ctx, machine.Off),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The four records logSELEvents's events read as (§32.1).
var (
	selPowerOn  = []byte{0x01, 0x00, 0x02, 0xc0, 0xcd, 0x06, 0x6b, 0x20, 0x00, 0x04, 0x09, sensorPower, 0xef, 0x00, 0xff, 0xff}
	selBoot     = []byte{0x02, 0x00, 0x02, 0xc0, 0xcd, 0x06, 0x6b, 0x20, 0x00, 0x04, 0x12, sensorBootConfig, 0x6f, 0x00, 0xff, 0xff}
	selRestart  = []byte{0x03, 0x00, 0x02, 0xc0, 0xcd, 0x06, 0x6b, 0x20, 0x00, 0x04, 0x1d, sensorRestart, 0x6f, 0x07, 0xff, 0xff}
	selPowerOff = []byte{0x04, 0x00, 0x02, 0xc0, 0xcd, 0x06, 0x6b, 0x20, 0x00, 0x04, 0x09, sensorPower, 0x6f, 0x00, 0xff, 0xff}
)

// getEntry asks for record id with Get SEL Entry.
func (h *harness) getEntry(res, id uint16, offset, count byte) ([]byte, types.CompletionCode) {
	h.t.Helper()
	req := binary.LittleEndian.AppendUint16(nil, res)
	req = binary.LittleEndian.AppendUint16(req, id)
	return h.do(types.CommandGetSELEntry, append(req, offset, count)...)
}

func (h *harness) reserveSEL() uint16 {
	h.t.Helper()
	res, cc := h.do(types.CommandReserveSEL)
	if cc != types.CodeOK || len(res) != 2 {
		h.t.Fatalf("reserve SEL: % x cc %#x", res, uint8(cc))
	}
	return binary.LittleEndian.Uint16(res)
}

// Walk the SEL the way `ipmitool sel list` does: whole records from ID 0,
// without a reservation, following next record IDs to FFFFh.
func TestSELWalk(t *testing.T) {
	t.Parallel()
	h := selHarness(t)
	want := [][]byte{selPowerOn, selBoot, selRestart, selPowerOff}
	var got [][]byte
	for id := uint16(firstRecord); id != lastRecord; {
		resp, cc := h.getEntry(0, id, 0, 0xff)
		if cc != types.CodeOK || len(resp) != 18 {
			t.Fatalf("entry %#x: % x cc %#x", id, resp, uint8(cc))
		}
		got = append(got, resp[2:])
		id = binary.LittleEndian.Uint16(resp)
		if len(got) > len(want) {
			t.Fatal("the chain does not end")
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("entry %d = % x, want % x", i+1, got[i], want[i])
		}
	}
}

func TestSELGetEntry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		reserve   bool // use a valid reservation
		id        uint16
		off, n    byte
		want      []byte
		cc        types.CompletionCode
		emptyLog  bool
		staleResv bool // use a reservation cancelled by a later one
	}{
		{name: "first", id: firstRecord, n: 0xff, want: append([]byte{0x02, 0x00}, selPowerOn...)},
		{name: "last", id: lastRecord, n: 0xff, want: append([]byte{0xff, 0xff}, selPowerOff...)},
		{name: "by id", id: 3, n: 0xff, want: append([]byte{0x04, 0x00}, selRestart...)},
		{name: "header only", id: 2, n: 3, want: []byte{0x03, 0x00, 0x02, 0x00, 0x02}},
		{name: "partial", reserve: true, id: 3, off: 10, n: 6, want: append([]byte{0x04, 0x00}, selRestart[10:]...)},
		{name: "partial past the end is cut", reserve: true, id: 3, off: 13, n: 9, want: append([]byte{0x04, 0x00}, selRestart[13:]...)},
		{name: "partial without reservation", id: 3, off: 10, n: 6, cc: types.CodeReservationCanceled},
		{name: "partial with a cancelled reservation", staleResv: true, id: 3, off: 10, n: 6, cc: types.CodeReservationCanceled},
		{name: "offset out of range", reserve: true, id: 3, off: 16, n: 1, cc: types.CodeParameterOutOfRange},
		{name: "no such record", id: 9, n: 0xff, cc: types.CodeRequestedDataNotPresent},
		{name: "empty SEL", emptyLog: true, id: firstRecord, n: 0xff, cc: types.CodeRequestedDataNotPresent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := selHarness(t)
			if tt.emptyLog {
				h = newHarness(t)
			}
			var res uint16
			switch {
			case tt.reserve:
				res = h.reserveSEL()
			case tt.staleResv:
				res = h.reserveSEL()
				h.reserveSEL()
			}
			got, cc := h.getEntry(res, tt.id, tt.off, tt.n)
			checkResp(t, got, cc, tt.want, tt.cc)
		})
	}
	t.Run("short request", func(t *testing.T) {
		h := selHarness(t)
		if _, cc := h.do(types.CommandGetSELEntry, 0, 0, 0, 0); cc != types.CodeRequestDataLengthInvalid {
			t.Fatalf("cc %#x", uint8(cc))
		}
	})
}

func TestSELInfo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		h     func(*testing.T) *harness
		info  []byte
		alloc []byte
	}{
		{"four events", selHarness,
			[]byte{0x51, 4, 0, 0xc0, 0x0f, 0xc0, 0xcd, 0x06, 0x6b, 0xff, 0xff, 0xff, 0xff, 0x03},
			[]byte{0x00, 0x01, 16, 0, 252, 0, 252, 0, 1}},
		{"empty", newHarness,
			[]byte{0x51, 0, 0, 0x00, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03},
			[]byte{0x00, 0x01, 16, 0, 0x00, 0x01, 0x00, 0x01, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h(t)
			if got, cc := h.do(types.CommandGetSELInfo); cc != types.CodeOK || !bytes.Equal(got, tt.info) {
				t.Errorf("info % x cc %#x, want % x", got, uint8(cc), tt.info)
			}
			if got, cc := h.do(types.CommandGetSELAllocInfo); cc != types.CodeOK || !bytes.Equal(got, tt.alloc) {
				t.Errorf("allocation info % x cc %#x, want % x", got, uint8(cc), tt.alloc)
			}
		})
	}
}

// Events that fell off the machine's full log before anyone cleared them
// are a SEL overflow; a Clear SEL starts afresh.
func TestSELOverflow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.m.Log = machine.NewEventLog(2, func() time.Time { return selTime })
	for _, k := range []machine.EventKind{machine.EventPowerOn, machine.EventReset, machine.EventPowerOff} {
		h.m.Log.Add(k, "")
	}
	info, _ := h.do(types.CommandGetSELInfo)
	if info[1] != 2 || info[13]&0x80 == 0 {
		t.Fatalf("info % x: want 2 entries and the overflow flag", info)
	}
	res := h.reserveSEL()
	h.do(types.CommandClearSEL, byte(res), byte(res>>8), 'C', 'L', 'R', clearInitiate)
	info, _ = h.do(types.CommandGetSELInfo)
	if info[1] != 0 || info[13]&0x80 != 0 {
		t.Fatalf("after clear % x: want no entries and no overflow", info)
	}
}

// Events of a kind the SEL has no record type for are left out.
func TestSELSkipsUnknownKinds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.m.Log = machine.NewEventLog(8, func() time.Time { return selTime })
	h.m.Log.Add(machine.EventKind(99), "")
	h.m.Log.Add(machine.EventPowerOn, "")
	resp, cc := h.getEntry(0, firstRecord, 0, 0xff)
	if cc != types.CodeOK || binary.LittleEndian.Uint16(resp) != lastRecord || resp[2] != 2 {
		t.Fatalf("first entry % x cc %#x: want only record 2", resp, uint8(cc))
	}
}

func TestSELClear(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		priv  bmc.PrivilegeLevel
		req   func(res uint16) []byte
		cc    types.CompletionCode
		clear bool // the SEL is empty afterwards
	}{
		{"ipmitool", bmc.PrivilegeLevelAdministrator, func(r uint16) []byte { return []byte{byte(r), byte(r >> 8), 'C', 'L', 'R', 0xaa} }, types.CodeOK, true},
		{"operator may", bmc.PrivilegeLevelOperator, func(r uint16) []byte { return []byte{byte(r), byte(r >> 8), 'C', 'L', 'R', 0xaa} }, types.CodeOK, true},
		{"erasure status", bmc.PrivilegeLevelAdministrator, func(r uint16) []byte { return []byte{byte(r), byte(r >> 8), 'C', 'L', 'R', 0x00} }, types.CodeOK, false},
		{"user may not", bmc.PrivilegeLevelUser, func(r uint16) []byte { return []byte{byte(r), byte(r >> 8), 'C', 'L', 'R', 0xaa} }, types.CodeInsufficientPrivilege, false},
		{"no reservation", bmc.PrivilegeLevelAdministrator, func(uint16) []byte { return []byte{0, 0, 'C', 'L', 'R', 0xaa} }, types.CodeReservationCanceled, false},
		{"cancelled reservation", bmc.PrivilegeLevelAdministrator, func(r uint16) []byte { return []byte{byte(r - 1), byte((r - 1) >> 8), 'C', 'L', 'R', 0xaa} }, types.CodeReservationCanceled, false},
		{"not CLR", bmc.PrivilegeLevelAdministrator, func(r uint16) []byte { return []byte{byte(r), byte(r >> 8), 'C', 'L', 'X', 0xaa} }, types.CodeRequestDataFieldInvalid, false},
		{"unknown operation", bmc.PrivilegeLevelAdministrator, func(r uint16) []byte { return []byte{byte(r), byte(r >> 8), 'C', 'L', 'R', 0x01} }, types.CodeRequestDataFieldInvalid, false},
		{"short", bmc.PrivilegeLevelAdministrator, func(r uint16) []byte { return []byte{byte(r), byte(r >> 8), 'C', 'L', 'R'} }, types.CodeRequestDataLengthInvalid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := selHarness(t)
			h.hctx.Session.PrivilegeLevel = tt.priv
			h.reserveSEL()
			res := h.reserveSEL() // the first is cancelled
			got, cc := h.do(types.CommandClearSEL, tt.req(res)...)
			if cc != tt.cc {
				t.Fatalf("cc %#x, want %#x", uint8(cc), uint8(tt.cc))
			}
			if cc == types.CodeOK && !bytes.Equal(got, []byte{erasureDone}) {
				t.Fatalf("got % x, want erasure completed", got)
			}
			_, cc = h.getEntry(0, firstRecord, 0, 0xff)
			if empty := cc == types.CodeRequestedDataNotPresent; empty != tt.clear {
				t.Fatalf("SEL empty: %v, want %v", empty, tt.clear)
			}
			if n := len(h.m.Events(0)); n != 4 {
				t.Fatalf("the machine's log has %d events, want all 4 kept", n)
			}
		})
	}
}

// After a clear, new events show with IDs from their sequence numbers, and
// the erase time is set.
func TestSELAfterClear(t *testing.T) {
	t.Parallel()
	h := selHarness(t)
	res := h.reserveSEL()
	before := time.Now()
	h.do(types.CommandClearSEL, byte(res), byte(res>>8), 'C', 'L', 'R', clearInitiate)
	if err := h.m.Power(context.Background(), machine.On); err != nil {
		t.Fatal(err)
	}
	resp, cc := h.getEntry(0, firstRecord, 0, 0xff)
	want := append([]byte{0xff, 0xff}, selPowerOn...)
	want[2] = 5 // the fifth event
	if cc != types.CodeOK || !bytes.Equal(resp, want) {
		t.Fatalf("first entry % x cc %#x, want % x", resp, uint8(cc), want)
	}
	info, _ := h.do(types.CommandGetSELInfo)
	if erased := int64(binary.LittleEndian.Uint32(info[9:])); erased < before.Unix() || erased > time.Now().Unix() {
		t.Fatalf("erase time %d, want about %d", erased, before.Unix())
	}
}

func TestSELRecordID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		seq  uint64
		want uint16
	}{{1, 1}, {2, 2}, {0xfffe, 0xfffe}, {0xffff, 1}, {0x1fffc, 0xfffe}, {0x1fffd, 1}} {
		if got := selRecordID(tt.seq); got != tt.want {
			t.Errorf("seq %#x: record ID %#x, want %#x", tt.seq, got, tt.want)
		}
	}
}

func TestSELTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		priv bmc.PrivilegeLevel
		req  []byte
		cc   types.CompletionCode
	}{
		{"set is accepted", bmc.PrivilegeLevelAdministrator, []byte{0, 0, 0, 0x60}, types.CodeOK},
		{"set needs four bytes", bmc.PrivilegeLevelAdministrator, []byte{0, 0, 0}, types.CodeRequestDataLengthInvalid},
		{"set needs operator", bmc.PrivilegeLevelUser, []byte{0, 0, 0, 0x60}, types.CodeInsufficientPrivilege},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.hctx.Session.PrivilegeLevel = tt.priv
			if _, cc := h.do(types.CommandSetSELTime, tt.req...); cc != tt.cc {
				t.Fatalf("cc %#x, want %#x", uint8(cc), uint8(tt.cc))
			}
			// The SEL clock stays the host's.
			got, cc := h.do(types.CommandGetSELTime)
			now := time.Now().Unix()
			if cc != types.CodeOK || len(got) != 4 || int64(binary.LittleEndian.Uint32(got)) < now-5 || int64(binary.LittleEndian.Uint32(got)) > now {
				t.Fatalf("SEL time % x cc %#x, want about %d", got, uint8(cc), now)
			}
		})
	}
}

// A SEL clear leaves an info line, as power and boot changes do; a status
// poll does not.
func TestSELClearIsLogged(t *testing.T) {
	t.Parallel()
	h := selHarness(t)
	var buf bytes.Buffer
	h.reg = newRegistry(h.m, slog.New(slog.NewTextHandler(&buf, nil)), newTracker("test", nil))
	res := h.reserveSEL()
	h.do(types.CommandClearSEL, byte(res), byte(res>>8), 'C', 'L', 'R', clearGetStatus)
	if strings.Contains(buf.String(), "ipmi change") {
		t.Fatalf("status poll logged as a change:\n%s", buf.String())
	}
	h.do(types.CommandClearSEL, byte(res), byte(res>>8), 'C', 'L', 'R', clearInitiate)
	if !strings.Contains(buf.String(), `msg="ipmi change"`) || !strings.Contains(buf.String(), `command="Clear SEL"`) {
		t.Fatalf("no info line for the clear:\n%s", buf.String())
	}
}
