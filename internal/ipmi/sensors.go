package ipmi

import (
	"context"
	"math"

	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// sensors answers the Sensor Device commands for the sensors in the SDR
// repository (sdr.go) from the machine's live state. go-ipmi registers none
// of them, and ipmitool (`sdr`, `sensor list`), FreeIPMI's ipmi-sensors and
// Ironic read every sensor through Get Sensor Reading.
type sensors struct {
	m machine.Machine
}

func (s *sensors) register(r *handlers.Registry) {
	r.RegisterFunc(types.CommandGetSensorReading, s.reading)
	r.RegisterFunc(types.CommandGetSensorThresholds, s.thresholds)
}

// Get Sensor Reading response byte 3 (IPMI v2.0 §35.14; byte 1 is the
// completion code). It must say scanning is enabled: ipmitool and FreeIPMI
// show a sensor with scanning disabled as having no reading.
const (
	readingEventsEnabled   = 0x80
	readingScanningEnabled = 0x40
)

// reading implements Get Sensor Reading (§35.14). Threshold sensors answer
// [reading, flags, comparison status]: nothing is ever crossed, as they have
// no thresholds. The power sensor answers [0, flags, offsets 7:0, offsets
// 14:8], the last byte with its reserved bit 7 set, as the spec asks and
// real BMCs do (`ipmitool sensor list` shows 0x0180 when off).
func (s *sensors) reading(ctx context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 1 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	switch req[0] {
	case sensorCPU, sensorMemory:
		st, err := s.m.Stats(ctx)
		if err != nil {
			return nil, completionCode(err), err
		}
		p := st.CPUPercent
		if req[0] == sensorMemory {
			p = st.MemoryPercent
		}
		return []byte{percentRaw(p), readingScanningEnabled, 0x00}, types.CodeOK, nil
	case sensorPower:
		ps, err := s.m.PowerState(ctx)
		if err != nil {
			return nil, completionCode(err), err
		}
		var states byte
		if !ps.IsOn() {
			states = 1 << powerOffOffset
		}
		return []byte{0x00, readingEventsEnabled | readingScanningEnabled, states, 0x80}, types.CodeOK, nil
	}
	// CBh "requested sensor not present" (§35.14).
	return nil, types.CodeRequestedDataNotPresent, nil
}

// percentRaw converts a percentage to the raw reading of packPercentSensor
// (M=1): whole percent, clamped to the SDR's 0-100 range.
func percentRaw(p float64) byte {
	if math.IsNaN(p) {
		return 0
	}
	return byte(math.Round(min(max(p, 0), 100)))
}

// thresholds implements Get Sensor Thresholds (§35.9), which `ipmitool
// sensor list` sends for every threshold sensor: the CPU and memory sensors
// have none readable. The discrete power sensor has no thresholds at all.
func (s *sensors) thresholds(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 1 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	switch req[0] {
	case sensorCPU, sensorMemory:
		// Readable threshold mask, then LNC, LCR, LNR, UNC, UCR, UNR.
		return []byte{0x00, 0, 0, 0, 0, 0, 0}, types.CodeOK, nil
	case sensorPower:
		// CDh "command illegal for specified sensor or record type".
		return nil, types.CodeIllegalCommand, nil
	}
	return nil, types.CodeRequestedDataNotPresent, nil
}
