package ipmi

import (
	"context"
	"maps"
	"slices"

	"github.com/bougou/go-ipmi/pkg/hal"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// storage is an endpoint's hal.StorageHAL: the SDR repository (sdr.go) and
// FRU device 0 (fru.go), both fixed when the endpoint is built. go-ipmi's
// Get SDR, Reserve SDR Repository and FRU handlers read them; readings and
// the SEL are answered live from the machine by our own handlers.
type storage struct {
	sdr readOnlySDR
	fru readOnlyFRU
}

// newStorage builds the records for the machine with identity id.
func newStorage(id machine.Identity) (*storage, error) {
	fru, err := packFRU(id)
	if err != nil {
		return nil, err
	}
	return &storage{sdr: sdrRecords(), fru: readOnlyFRU{0: fru}}, nil
}

func (s *storage) SDR() hal.SDRStore { return s.sdr }
func (s *storage) FRU() hal.FRUStore { return s.fru }

// readOnlySDR maps record IDs to wire-format records (IPMI v2.0 §43). It is
// never written after newStorage: a VM's sensors do not change, and the
// bridge answers no Add/Delete SDR command.
type readOnlySDR map[uint16][]byte

func (s readOnlySDR) Read(_ context.Context, id uint16) ([]byte, error) {
	r, ok := s[id]
	if !ok {
		return nil, hal.ErrNotFound // CBh, what bmc.StorageMissing expects
	}
	return slices.Clone(r), nil
}

func (readOnlySDR) Write(context.Context, uint16, []byte) error { return hal.ErrNotSupported }
func (readOnlySDR) Delete(context.Context, uint16) error        { return hal.ErrNotSupported }

// RecordIDs returns the IDs sorted: go-ipmi's repository walks them in this
// order to chain "next record ID" (§33.12).
func (s readOnlySDR) RecordIDs(context.Context) ([]uint16, error) {
	return slices.Sorted(maps.Keys(s)), nil
}

// readOnlyFRU maps FRU device IDs to FRU inventory areas (Platform
// Management FRU Information Storage Definition v1.0). Write FRU Data is not
// registered, so nothing changes them.
type readOnlyFRU map[uint8][]byte

func (f readOnlyFRU) Read(_ context.Context, id uint8) ([]byte, error) {
	d, ok := f[id]
	if !ok {
		return nil, hal.ErrNotFound
	}
	return slices.Clone(d), nil
}

func (readOnlyFRU) Write(context.Context, uint8, []byte) error { return hal.ErrNotSupported }
func (readOnlyFRU) Delete(context.Context, uint8) error        { return hal.ErrNotSupported }

func (f readOnlyFRU) DeviceIDs(context.Context) ([]uint8, error) {
	return slices.Sorted(maps.Keys(f)), nil
}
