package ipmi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/bougou/go-ipmi/pkg/types"
)

// The records are packed by hand; go-ipmi's parser, written independently
// from the same tables, must read back what we meant.
func TestSDRRecordsParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id         uint16
		recordType types.SDRRecordType
		name       string
		sensorType types.SensorType
		reading    types.EventReadingType
		entity     types.EntityID
	}{
		{sensorCPU, types.SDRRecordTypeFullSensor, "CPU Usage", types.SensorTypeProcessor, types.EventReadingTypeThreshold, entityProcessor},
		{sensorMemory, types.SDRRecordTypeFullSensor, "Memory Usage", types.SensorTypeMemory, types.EventReadingTypeThreshold, entityMemoryModule},
		{sensorPower, types.SDRRecordTypeCompactSensor, "Power State", types.SensorTypePowerUnit, types.EventReadingTypeSensorSpecific, entityPowerUnit},
	}
	records := sdrRecords()
	if len(records) != len(tests) {
		t.Fatalf("%d records, want %d", len(records), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := records[tt.id]
			if int(raw[4]) != len(raw)-5 {
				t.Fatalf("record length byte %d, record has %d bytes after the header", raw[4], len(raw)-5)
			}
			sdr, err := types.ParseSDR(raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			h := sdr.RecordHeader
			if h.RecordID != tt.id || h.RecordType != tt.recordType || h.SDRVersion != 0x51 {
				t.Fatalf("header %+v", h)
			}
			if got := sdr.SensorName(); got != tt.name {
				t.Errorf("name %q, want %q", got, tt.name)
			}
			if got := sdr.SensorNumber(); got != types.SensorNumber(tt.id) {
				t.Errorf("sensor number %d, want %d", got, tt.id)
			}
			switch {
			case sdr.Full != nil:
				f := sdr.Full
				if f.GeneratorID != 0x0020 || f.SensorType != tt.sensorType || f.SensorEventReadingType != tt.reading || f.SensorEntityID != tt.entity {
					t.Errorf("owner %#x type %v reading %v entity %v", f.GeneratorID, f.SensorType, f.SensorEventReadingType, f.SensorEntityID)
				}
				if !f.SensorUnit.Percentage || f.SensorUnit.BaseUnit != 0 || f.SensorUnit.AnalogDataFormat != 0 {
					t.Errorf("units %+v, want unsigned percentage", f.SensorUnit)
				}
				if f.ReadingFactors.M != 1 || f.ReadingFactors.B != 0 || f.ReadingFactors.R_Exp != 0 || f.ReadingFactors.B_Exp != 0 {
					t.Errorf("reading factors %+v, want M=1", f.ReadingFactors)
				}
				if got := f.ConvertReading(57); got != 57 {
					t.Errorf("raw 57 reads %v", got)
				}
				if f.SensorMaxReadingRaw != 100 || f.SensorMinReadingRaw != 0 {
					t.Errorf("range %d-%d, want 0-100", f.SensorMinReadingRaw, f.SensorMaxReadingRaw)
				}
			case sdr.Compact != nil:
				c := sdr.Compact
				if c.GeneratorID != 0x0020 || c.SensorType != tt.sensorType || c.SensorEventReadingType != tt.reading || c.SensorEntityID != tt.entity {
					t.Errorf("owner %#x type %v reading %v entity %v", c.GeneratorID, c.SensorType, c.SensorEventReadingType, c.SensorEntityID)
				}
				// Assertion, deassertion and reading masks (bytes 15-20),
				// offset 0 only. Read from the bytes: go-ipmi's parser
				// swaps each mask's two bytes (ipmitool and FreeIPMI read
				// the first byte as offsets 7:0, as Table 43-2 says).
				if got, want := raw[14:20], []byte{0x01, 0, 0x01, 0, 0x01, 0}; !bytes.Equal(got, want) {
					t.Errorf("masks % x, want % x", got, want)
				}
			default:
				t.Fatal("neither a full nor a compact record")
			}
		})
	}
}

// Dispatch Get SDR the way ipmitool does: Get SDR Repository Info, Reserve,
// the 5-byte header of each record, then the rest in partial reads, chained
// by next record ID until FFFFh.
func TestSDRRepositoryWalk(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	info, cc := h.do(types.CommandGetSDRRepoInfo)
	if cc != types.CodeOK || len(info) != 14 || info[0] != 0x51 || binary.LittleEndian.Uint16(info[1:]) != 3 {
		t.Fatalf("repository info % x cc %#x", info, uint8(cc))
	}
	res, cc := h.do(types.CommandReserveSDRRepo)
	if cc != types.CodeOK || len(res) != 2 {
		t.Fatalf("reserve % x cc %#x", res, uint8(cc))
	}
	want := sdrRecords()
	var ids []uint16
	for id := uint16(0); id != 0xFFFF; {
		hdr, cc := h.do(types.CommandGetSDR, res[0], res[1], byte(id), byte(id>>8), 0, 5)
		if cc != types.CodeOK || len(hdr) != 7 {
			t.Fatalf("record %#x header: % x cc %#x", id, hdr, uint8(cc))
		}
		next, rec := binary.LittleEndian.Uint16(hdr), append([]byte(nil), hdr[2:]...)
		this := binary.LittleEndian.Uint16(rec)
		for len(rec) < 5+int(rec[4]) {
			part, cc := h.do(types.CommandGetSDR, res[0], res[1], byte(this), byte(this>>8), byte(len(rec)), 16)
			if cc != types.CodeOK {
				t.Fatalf("record %#x at %d: cc %#x", this, len(rec), uint8(cc))
			}
			rec = append(rec, part[2:]...)
		}
		if !bytes.Equal(rec, want[this]) {
			t.Errorf("record %#x = % x, want % x", this, rec, want[this])
		}
		ids = append(ids, this)
		id = next
	}
	if len(ids) != 3 || ids[0] != sensorCPU || ids[1] != sensorMemory || ids[2] != sensorPower {
		t.Fatalf("walked %v", ids)
	}
}

func TestSDRRepositoryInfo(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first, _ := h.do(types.CommandGetSDRRepoInfo)
	again, _ := h.do(types.CommandGetSDRRepoInfo)
	if !bytes.Equal(first, again) {
		t.Fatalf("repository info changed between requests: % x, then % x", first, again)
	}
	want := uint32(sdrUpdated.Unix())
	if add, erase := binary.LittleEndian.Uint32(first[5:]), binary.LittleEndian.Uint32(first[9:]); add != want || erase != want {
		t.Fatalf("addition %d, erase %d, want %d (FreeIPMI's SDR cache keys on them)", add, erase, want)
	}
	if first[13] != 0x03 {
		t.Fatalf("operation support %#x, want reserve and allocation info only", first[13])
	}
}

func TestSDRErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		reserved bool // the request carries a valid reservation
		req      []byte
		cc       types.CompletionCode
	}{
		{"partial read without reservation", false, []byte{0, 0, 1, 0, 5, 16}, types.CodeReservationCanceled},
		{"no such record", false, []byte{0, 0, 9, 0, 0, 0xff}, types.CodeRequestedDataNotPresent},
		{"offset past the record", true, []byte{0, 0, 1, 0, 200, 1}, types.CodeRequestedDataNotPresent},
		{"more than 16 bytes at once", true, []byte{0, 0, 1, 0, 5, 0xff}, types.CodeCannotReturnRequestedDataBytes},
		{"short request", false, []byte{0, 0, 1}, types.CodeRequestDataTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.reserved {
				res, _ := h.do(types.CommandReserveSDRRepo)
				copy(tt.req, res)
			}
			if _, cc := h.do(types.CommandGetSDR, tt.req...); cc != tt.cc {
				t.Fatalf("cc %#x, want %#x", uint8(cc), uint8(tt.cc))
			}
		})
	}
}

// Get Device ID must announce the SDR repository and the FRU device and
// must not claim device SDRs, or ipmitool would read those instead.
func TestDeviceIDAdvertisesStorage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	got, cc := h.do(types.CommandGetDeviceID)
	if cc != types.CodeOK {
		t.Fatalf("cc %#x", uint8(cc))
	}
	if got[1]&0x80 != 0 {
		t.Errorf("device revision %#x claims device SDRs", got[1])
	}
	if got[5]&0x0A != 0x0A {
		t.Errorf("additional device support %#x lacks SDR repository (02h) or FRU (08h)", got[5])
	}
}
