package ipmi

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

func TestFRUAreas(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 62) + "é-tail" // é straddles byte 63
	tests := []struct {
		name     string
		id       machine.Identity
		assetTag string
		serial   string
	}{
		{"vm", machine.Identity{Name: "skinner-master-0", SerialNumber: testSerial}, "skinner-master-0", testSerial},
		{"long name cut on a character", machine.Identity{Name: long, SerialNumber: testSerial}, strings.Repeat("x", 62), testSerial},
		{"one-letter name padded", machine.Identity{Name: "a"}, "a ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.id.Manufacturer, tt.id.Model = "VMware, Inc.", "VMware Virtual Platform"
			raw, err := packFRU(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			fru, err := types.ParseFRU(raw)
			if err != nil {
				t.Fatal(err)
			}
			p, b, c := fru.ProductInfoArea, fru.BoardInfoArea, fru.ChassisInfoArea
			if p == nil || b == nil || c == nil {
				t.Fatalf("areas: product %v board %v chassis %v", p != nil, b != nil, c != nil)
			}
			for field, pair := range map[string][2]string{
				"product manufacturer": {string(p.Manufacturer), tt.id.Manufacturer},
				"product name":         {string(p.Name), tt.id.Model},
				"product serial":       {string(p.SerialNumber), tt.serial},
				"asset tag":            {string(p.AssetTag), tt.assetTag},
				"board manufacturer":   {string(b.Manufacturer), tt.id.Manufacturer},
				"board serial":         {string(b.SerialNumber), tt.serial},
				"chassis serial":       {string(c.SerialNumber), tt.serial},
			} {
				if pair[0] != pair[1] {
					t.Errorf("%s %q, want %q", field, pair[0], pair[1])
				}
			}
			if c.ChassisType != fruChassisOther {
				t.Errorf("chassis type %#x", c.ChassisType)
			}
			if !utf8.Valid(p.AssetTag) {
				t.Errorf("asset tag % x is not UTF-8", p.AssetTag)
			}
		})
	}
}

// ipmitool and FreeIPMI read FRU device 0 through go-ipmi's handlers.
func TestFRURead(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	want, err := packFRU(h.m.ID)
	if err != nil {
		t.Fatal(err)
	}
	info, cc := h.do(types.CommandGetFRUInventoryAreaInfo, 0)
	if cc != types.CodeOK || len(info) != 3 || int(binary.LittleEndian.Uint16(info)) != len(want) || info[2] != 0 {
		t.Fatalf("area info % x cc %#x, want %d bytes accessed by bytes", info, uint8(cc), len(want))
	}
	var got []byte
	for off := 0; off < len(want); off += 32 {
		part, cc := h.do(types.CommandReadFRUData, 0, byte(off), byte(off>>8), 32)
		if cc != types.CodeOK || int(part[0]) != len(part)-1 {
			t.Fatalf("read at %d: % x cc %#x", off, part, uint8(cc))
		}
		got = append(got, part[1:]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read % x, want % x", got, want)
	}
	if _, cc := h.do(types.CommandGetFRUInventoryAreaInfo, 1); cc != types.CodeRequestedDataNotPresent {
		t.Fatalf("FRU device 1: cc %#x, want CBh", uint8(cc))
	}
}
