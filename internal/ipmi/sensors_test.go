package ipmi

import (
	"math"
	"testing"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

func TestSensorReading(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		usage machine.Stats
		state machine.PowerState
		err   error
		req   []byte
		want  []byte
		cc    types.CompletionCode
	}{
		{"cpu", machine.Stats{CPUPercent: 12.4}, machine.PowerOn, nil, []byte{sensorCPU}, []byte{12, 0x40, 0}, types.CodeOK},
		{"memory rounds", machine.Stats{MemoryPercent: 56.6}, machine.PowerOn, nil, []byte{sensorMemory}, []byte{57, 0x40, 0}, types.CodeOK},
		{"off reads zero", machine.Stats{}, machine.PowerOff, nil, []byte{sensorCPU}, []byte{0, 0x40, 0}, types.CodeOK},
		{"above 100 clamps", machine.Stats{CPUPercent: 180}, machine.PowerOn, nil, []byte{sensorCPU}, []byte{100, 0x40, 0}, types.CodeOK},
		{"negative clamps", machine.Stats{MemoryPercent: -3}, machine.PowerOn, nil, []byte{sensorMemory}, []byte{0, 0x40, 0}, types.CodeOK},
		{"NaN reads zero", machine.Stats{CPUPercent: math.NaN()}, machine.PowerOn, nil, []byte{sensorCPU}, []byte{0, 0x40, 0}, types.CodeOK},
		{"power on", machine.Stats{}, machine.PowerOn, nil, []byte{sensorPower}, []byte{0, 0xc0, 0x00, 0x80}, types.CodeOK},
		{"power off asserts offset 0", machine.Stats{}, machine.PowerOff, nil, []byte{sensorPower}, []byte{0, 0xc0, 0x01, 0x80}, types.CodeOK},
		{"suspended reads as off", machine.Stats{}, machine.PowerSuspended, nil, []byte{sensorPower}, []byte{0, 0xc0, 0x01, 0x80}, types.CodeOK},
		{"restart has no reading", machine.Stats{}, machine.PowerOn, nil, []byte{sensorRestart}, nil, types.CodeRequestedDataNotPresent},
		{"unknown sensor", machine.Stats{}, machine.PowerOn, nil, []byte{0x42}, nil, types.CodeRequestedDataNotPresent},
		{"no sensor number", machine.Stats{}, machine.PowerOn, nil, nil, nil, types.CodeRequestDataLengthInvalid},
		{"vcenter away", machine.Stats{}, machine.PowerOn, machine.ErrUnavailable, []byte{sensorCPU}, nil, types.CodeNodeBusy},
		{"vm gone", machine.Stats{}, machine.PowerOn, machine.ErrNotFound, []byte{sensorPower}, nil, types.CodeRequestedDataNotPresent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.m.Usage, h.m.State, h.m.Err = tt.usage, tt.state, tt.err
			got, cc := h.do(types.CommandGetSensorReading, tt.req...)
			checkResp(t, got, cc, tt.want, tt.cc)
		})
	}
}

func TestSensorThresholds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  []byte
		want []byte
		cc   types.CompletionCode
	}{
		{"cpu has none readable", []byte{sensorCPU}, []byte{0, 0, 0, 0, 0, 0, 0}, types.CodeOK},
		{"memory has none readable", []byte{sensorMemory}, []byte{0, 0, 0, 0, 0, 0, 0}, types.CodeOK},
		{"discrete sensor", []byte{sensorPower}, nil, types.CodeIllegalCommand},
		{"unknown sensor", []byte{0x42}, nil, types.CodeRequestedDataNotPresent},
		{"no sensor number", nil, nil, types.CodeRequestDataLengthInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			got, cc := h.do(types.CommandGetSensorThresholds, tt.req...)
			checkResp(t, got, cc, tt.want, tt.cc)
		})
	}
}
