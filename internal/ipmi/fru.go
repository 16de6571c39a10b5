package ipmi

import (
	"unicode/utf8"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The FRU names the machine's SMBIOS manufacturer and product
// (machine.Identity), so that `ipmitool fru print` and ipmi-fru agree with
// the OS. The board area names the same maker and product: a VM's virtual
// board is its platform's.
const (
	// fruChassisOther is SMBIOS chassis type 01h "Other", which VMware
	// reports; the FRU chassis type uses the SMBIOS codes (FRU spec §10).
	fruChassisOther = 0x01
)

// packFRU builds FRU device 0 (IPMI v2.0 §34; Platform Management FRU
// Information Storage Definition v1.0): chassis, board and product areas
// with the VM's serial number, and its name as the product asset tag, the
// field operators label machines with. go-ipmi's types.PackFRU has no asset
// tag field, so the product area is filled in directly.
func packFRU(id machine.Identity) ([]byte, error) {
	serial := fruField(id.SerialNumber)
	fru := &types.FRU{
		ChassisInfoArea: &types.FRUChassisInfoArea{
			ChassisType:            fruChassisOther,
			PartNumberTypeLength:   fruTypeLength(nil),
			SerialNumberTypeLength: fruTypeLength(serial),
			SerialNumber:           serial,
		},
		BoardInfoArea: &types.FRUBoardInfoArea{
			// Manufacturing date 0: "unspecified" (FRU spec §11).
			ManufacturerTypeLength: fruTypeLength([]byte(id.Manufacturer)),
			Manufacturer:           []byte(id.Manufacturer),
			ProductNameTypeLength:  fruTypeLength([]byte(id.Model)),
			ProductName:            []byte(id.Model),
			SerialNumberTypeLength: fruTypeLength(serial),
			SerialNumber:           serial,
			PartNumberTypeLength:   fruTypeLength(nil),
			FRUFileIDTypeLength:    fruTypeLength(nil),
		},
		ProductInfoArea: &types.FRUProductInfoArea{
			ManufacturerTypeLength: fruTypeLength([]byte(id.Manufacturer)),
			Manufacturer:           []byte(id.Manufacturer),
			NameTypeLength:         fruTypeLength([]byte(id.Model)),
			Name:                   []byte(id.Model),
			PartModelTypeLength:    fruTypeLength(nil),
			VersionTypeLength:      fruTypeLength(nil),
			SerialNumberTypeLength: fruTypeLength(serial),
			SerialNumber:           serial,
			AssetTagTypeLength:     fruTypeLength(fruField(id.Name)),
			AssetTag:               fruField(id.Name),
			FRUFileIDTypeLength:    fruTypeLength(nil),
		},
	}
	return types.PackFRUInventory(fru)
}

// fruMaxField is the longest field a type/length byte can describe (6 bits).
const fruMaxField = 63

// fruField fits s into an 8-bit ASCII+Latin 1 FRU field (FRU spec §13.1).
// A longer value (a vSphere VM name has up to 80 characters) is cut, on a
// UTF-8 character boundary, because go-ipmi would wrap its length into the
// type bits. A one-byte value gets a trailing space: the type needs at least
// two bytes, and C1h (type 11b, length 1) is the end-of-fields marker.
func fruField(s string) []byte {
	if len(s) > fruMaxField {
		cut := fruMaxField
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if len(s) == 1 {
		s += " "
	}
	return []byte(s)
}

// fruTypeLength is the type/length byte of an 8-bit ASCII+Latin 1 field
// (FRU spec §13.1): type 11b, then the length; C0h for an empty field.
func fruTypeLength(b []byte) types.TypeLength {
	return types.TypeLength(0xC0 | byte(len(b)))
}
