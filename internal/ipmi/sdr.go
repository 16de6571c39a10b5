package ipmi

import (
	"context"
	"encoding/binary"
	"time"

	storagecmd "github.com/bougou/go-ipmi/pkg/command/storage"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Sensor numbers (IPMI v2.0 §43.1 byte 8): the key that ties an SDR, a Get
// Sensor Reading request and a SEL entry together. Each doubles as the
// sensor's SDR record ID.
const (
	sensorCPU    = 0x01
	sensorMemory = 0x02
	sensorPower  = 0x03
)

// Entity IDs (§43.14 Table 43-13) of what each sensor watches.
const (
	entityProcessor    = 0x03
	entityMemoryModule = 0x08
	entityPowerUnit    = 0x13
)

// sdrUpdated is the "most recent addition" and "most recent erase" time of
// every endpoint's SDR repository. FreeIPMI keeps an SDR cache per host and
// refuses it ("SDR Cache ... out of date") once these timestamps differ from
// the ones it was built with, so they must stay put across requests and
// bridge restarts: the records change only with this code. Move the date
// whenever sdrRecords changes.
var sdrUpdated = time.Date(2026, time.November, 25, 0, 0, 0, 0, time.UTC)

// sdrRecords is the repository every endpoint serves: two threshold sensors
// with a reading in percent and one discrete power sensor. Ironic's sensor
// collection (`ipmitool sdr -v`) fails on an empty repository or when no
// sensor has a reading (ironic/drivers/modules/ipmitool.py, _get_sensors_data).
func sdrRecords() readOnlySDR {
	return readOnlySDR{
		sensorCPU:    packPercentSensor(sensorCPU, byte(types.SensorTypeProcessor), entityProcessor, "CPU Usage"),
		sensorMemory: packPercentSensor(sensorMemory, byte(types.SensorTypeMemory), entityMemoryModule, "Memory Usage"),
		sensorPower:  packPowerSensor(sensorPower, "Power State"),
	}
}

// The records are packed by hand, r[i] being byte i+1 of the spec's table:
// go-ipmi's SDRFull and SDRCompact Pack methods swap the two bytes of each
// event and reading mask (its parser does the same), so a mask they pack
// reads wrong in ipmitool and FreeIPMI.

// sdrHeader writes the record header (§43, bytes 1-5) and the sensor key
// (bytes 6-8): the BMC (slave address 20h, LUN 0, channel 0) owns every
// sensor, so ipmitool sends Get Sensor Reading to us without bridging.
func sdrHeader(r []byte, number, recordType byte) {
	binary.LittleEndian.PutUint16(r[0:], uint16(number))
	r[2] = types.SDRCommandSetVersion
	r[3] = recordType
	r[4] = byte(len(r) - 5)
	r[5] = 0x20
	r[6] = 0x00
	r[7] = number
}

// idString writes the ID string type/length byte (8-bit ASCII, §43.15) and
// the name, which is at most 16 bytes.
func idString(r []byte, name string) {
	r[0] = 0xC0 | byte(len(name))
	copy(r[1:], name)
}

// packPercentSensor packs a Full Sensor Record (type 01h, §43.1 Table 43-1)
// for a threshold-based sensor whose raw reading is the percentage itself:
// y = (M*x + B*10^Bexp) * 10^Rexp with M=1, B=0 and both exponents 0, units
// "percentage" over an unspecified base unit (ipmitool prints "percent",
// FreeIPMI "%"), range 0 to 100. It has no thresholds and sends no events:
// a VM's CPU or memory usage is information, not a fault.
func packPercentSensor(number, sensorType, entity byte, name string) []byte {
	r := make([]byte, 48+len(name))
	sdrHeader(r, number, 0x01)
	r[8] = entity
	r[9] = 0x01  // entity instance 1, a physical entity
	r[10] = 0x41 // initialization: init scanning, scanning enabled
	r[11] = 0x43 // capabilities: auto re-arm, no hysteresis, no thresholds, no events
	r[12] = sensorType
	r[13] = byte(types.EventReadingTypeThreshold)
	// Bytes 15-20: threshold event and reading masks, all zero (none).
	r[20] = 0x01 // units 1: unsigned analog reading, no rate, no modifier, percentage
	r[21] = 0x00 // base unit: unspecified
	r[22] = 0x00 // modifier unit: unspecified
	r[23] = 0x00 // linearization: linear
	r[24] = 0x01 // M = 1 (bytes 25-26; tolerance 0)
	// Bytes 27-30: B = 0, accuracy 0, sensor direction unspecified, R and B exponents 0.
	r[30] = 0x00 // analog characteristics: no nominal, normal max or normal min
	r[34] = 100  // sensor maximum reading
	r[35] = 0    // sensor minimum reading
	// Bytes 37-47: thresholds, hysteresis, reserved and OEM, all zero.
	idString(r[47:], name)
	return r
}

// Power Unit (sensor type 09h) offset 00h, "Power Off / Power Down" (§42.2
// Table 42-3): asserted while the machine is not on. The SEL's power events
// are this offset's assertions and deassertions on the same sensor.
const powerOffOffset = 0x00

// packPowerSensor packs a Compact Sensor Record (type 02h, §43.2 Table 43-2)
// for the Power Unit sensor with sensor-specific readings (event/reading
// type 6Fh). Only offset 00h can be asserted, read and logged.
func packPowerSensor(number byte, name string) []byte {
	r := make([]byte, 32+len(name))
	sdrHeader(r, number, 0x02)
	r[8] = entityPowerUnit
	r[9] = 0x01  // entity instance 1
	r[10] = 0x63 // initialization: init scanning and events, event generation and scanning enabled
	r[11] = 0x41 // capabilities: auto re-arm, event messages for the entire sensor only
	r[12] = byte(types.SensorTypePowerUnit)
	r[13] = byte(types.EventReadingTypeSensorSpecific)
	mask := uint16(1) << powerOffOffset
	binary.LittleEndian.PutUint16(r[14:], mask) // assertion event mask
	binary.LittleEndian.PutUint16(r[16:], mask) // deassertion event mask
	binary.LittleEndian.PutUint16(r[18:], mask) // discrete reading mask

	r[20] = 0xC0 // units 1: no analog reading
	// Bytes 22-31: no units, no record sharing, no hysteresis, reserved, OEM.
	idString(r[31:], name)
	return r
}

// registerSDR replaces go-ipmi's Get SDR Repository Info; Reserve SDR
// Repository, Get SDR and Get SDR Repository Allocation Info stay go-ipmi's.
func registerSDR(r *handlers.Registry) {
	r.RegisterFunc(types.CommandGetSDRRepoInfo, sdrRepoInfo)
}

// sdrRepoInfo answers Get SDR Repository Info (§33.9) as go-ipmi does, but
// with fixed addition and erase timestamps (sdrUpdated): go-ipmi reports the
// current time in both, which makes every FreeIPMI run after the first fail
// on its own SDR cache.
func sdrRepoInfo(ctx context.Context, hctx *handlers.HandlerContext, _ []byte) ([]byte, types.CompletionCode, error) {
	repo := hctx.BMC.SDRRepository()
	if repo == nil {
		return nil, types.CodeNotSupported, nil
	}
	info, err := repo.Info(ctx)
	if err != nil {
		return nil, types.CodeUnspecifiedError, err
	}
	resp := &storagecmd.GetSDRRepoInfoResponse{
		SDRVersion:             info.SDRVersion,
		RecordCount:            info.RecordCount,
		FreeSpaceBytes:         uint16(min(max(info.FreeBytes, 0), 0xFFFE)), // FFFEh: 64 KB-2 or more
		MostRecentAdditionTime: sdrUpdated,
		MostRecentEraseTime:    sdrUpdated,
		SDROperationSupport: storagecmd.SDROperationSupport{
			SupportReserveSDRRepo:      info.Capabilities.ReserveRepo,
			SupportGetSDRRepoAllocInfo: info.Capabilities.GetAllocInfo,
		},
	}
	return resp.Pack(), types.CodeOK, nil
}
