package ipmi

import (
	"context"
	"sync"

	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// chassis answers the Chassis commands (IPMI v2.0 §28) from a
// machine.Machine. It replaces go-ipmi's HAL-based chassis handlers because
// those map App Cold/Warm Reset (a BMC reset, `ipmitool bmc reset cold`) to
// the same HAL methods as Chassis Control hard reset and soft-off, which on
// a bridge would reset or shut down the VM; and because Ironic needs boot
// option parameters 0 and 3 to read back and parameter 5 exactly as set.
type chassis struct {
	m machine.Machine

	mu sync.Mutex
	// Parameters that only the BMC keeps (Table 28-14).
	setInProgress byte    // #0
	validBitClear byte    // #3
	bootInfoAck   [2]byte // #4
	// Parameter #5 as last written, and the machine's override right after
	// that write: while the machine still reports that override, the exact
	// bytes are read back (clients compare bits the VM has no use for, such
	// as BIOS verbosity); once it changed (a one-time boot consumed, a
	// Redfish PATCH) the bytes are derived from the machine afresh.
	bootFlags    [5]byte
	bootFlagsFor *machine.BootOverride
}

func (c *chassis) register(r *handlers.Registry) {
	r.RegisterFunc(types.CommandGetChassisStatus, c.status)
	r.RegisterFunc(types.CommandChassisControl, c.control)
	r.RegisterFunc(types.CommandChassisIdentify, c.identify)
	r.RegisterFunc(types.CommandSetSystemBootOptions, c.setBootOptions)
	r.RegisterFunc(types.CommandGetSystemBootOptions, c.getBootOptions)
}

// status implements Get Chassis Status (§28.2): power state in byte 1
// (restore policy 00b, "stays off": a VM stays off after its host fails
// unless vSphere HA restarts it), no last event, no misc state.
func (c *chassis) status(ctx context.Context, _ *handlers.HandlerContext, _ []byte) ([]byte, types.CompletionCode, error) {
	s, err := c.m.PowerState(ctx)
	if err != nil {
		return nil, completionCode(err), err
	}
	var power byte
	if s.IsOn() {
		power = 0x01
	}
	return []byte{power, 0x00, 0x00}, types.CodeOK, nil
}

// controlActions maps Chassis Control request byte 1 (§28.3 Table 28-4).
var controlActions = map[byte]machine.PowerAction{
	0x00: machine.Off,
	0x01: machine.On,
	0x02: machine.Cycle,
	0x03: machine.Reset,
	0x04: machine.NMI, // "pulse diagnostic interrupt": ipmitool power diag, Ironic inject NMI
	0x05: machine.SoftOff,
}

func (c *chassis) control(ctx context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 1 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	a, ok := controlActions[req[0]&0x0F]
	if !ok {
		return nil, types.CodeRequestDataFieldInvalid, nil
	}
	if err := c.m.Power(ctx, a); err != nil {
		return nil, completionCode(err), err
	}
	return nil, types.CodeOK, nil
}

// identify accepts Chassis Identify (§28.5): a VM has no LED to blink, and an
// error would make `ipmitool chassis identify` look like a broken BMC.
func (c *chassis) identify(context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error) {
	return nil, types.CodeOK, nil
}

// Boot option parameter selectors (§28.13 Table 28-14).
const (
	paramSetInProgress = 0x00
	paramValidBitClear = 0x03
	paramBootInfoAck   = 0x04
	paramBootFlags     = 0x05
)

func (c *chassis) setBootOptions(ctx context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 1 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	param, data := req[0]&0x7F, req[1:]
	c.mu.Lock()
	defer c.mu.Unlock()
	switch param {
	case paramSetInProgress:
		if len(data) != 1 {
			return nil, types.CodeRequestDataLengthInvalid, nil
		}
		// ipmitool writes 01h (set in progress), 02h (commit) and 00h
		// (set complete) around a boot device change; a refusal would only
		// disable its later writes, but a real BMC accepts them.
		switch data[0] & 0x03 {
		case 0x00, 0x02:
			c.setInProgress = 0x00
		case 0x01:
			c.setInProgress = 0x01
		default:
			return nil, types.CodeRequestDataFieldInvalid, nil
		}
		return nil, types.CodeOK, nil
	case paramValidBitClear:
		// Ironic and pyghmi send 08h ("don't clear on the 60 s timeout")
		// before every boot device change and fail unless it succeeds. The
		// bridge never clears the valid bit on a timeout, so any value holds.
		if len(data) != 1 {
			return nil, types.CodeRequestDataLengthInvalid, nil
		}
		c.validBitClear = data[0] & 0x1F
		return nil, types.CodeOK, nil
	case paramBootInfoAck:
		// Byte 1 is a write mask for byte 2 (Table 28-14 #4); ipmitool
		// tolerates errors here but a real BMC keeps the bits.
		if len(data) != 2 {
			return nil, types.CodeRequestDataLengthInvalid, nil
		}
		c.bootInfoAck[0] = c.bootInfoAck[0]&^data[0] | data[1]&data[0]
		return nil, types.CodeOK, nil
	case paramBootFlags:
		return c.setBootFlags(ctx, data)
	}
	return nil, types.CodeParameterNotSupported, nil
}

// setBootFlags writes parameter #5. c.mu must be held.
func (c *chassis) setBootFlags(ctx context.Context, data []byte) ([]byte, types.CompletionCode, error) {
	if len(data) == 0 || len(data) > 5 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	var raw [5]byte
	copy(raw[:], data) // a short write leaves the trailing bytes zero
	o, ok := decodeBootFlags(raw)
	if !ok {
		return nil, types.CodeRequestDataFieldInvalid, nil
	}
	if err := c.m.SetBootOverride(ctx, o); err != nil {
		return nil, completionCode(err), err
	}
	now, err := c.m.BootOverride(ctx)
	if err != nil {
		return nil, completionCode(err), err
	}
	c.bootFlags, c.bootFlagsFor = raw, &now
	return nil, types.CodeOK, nil
}

func (c *chassis) getBootOptions(ctx context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 1 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	param := req[0] & 0x7F
	resp := []byte{0x01, param} // parameter version 1 (pyghmi asserts it)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch param {
	case paramSetInProgress:
		return append(resp, c.setInProgress), types.CodeOK, nil
	case paramValidBitClear:
		return append(resp, c.validBitClear), types.CodeOK, nil
	case paramBootInfoAck:
		return append(resp, c.bootInfoAck[0], c.bootInfoAck[1]), types.CodeOK, nil
	case paramBootFlags:
		o, err := c.m.BootOverride(ctx)
		if err != nil {
			return nil, completionCode(err), err
		}
		if c.bootFlagsFor != nil && *c.bootFlagsFor == o {
			return append(resp, c.bootFlags[:]...), types.CodeOK, nil
		}
		flags := encodeBootFlags(o)
		return append(resp, flags[:]...), types.CodeOK, nil
	}
	return nil, types.CodeParameterNotSupported, nil
}

// Boot flag bits of parameter #5 data byte 1 (Table 28-14).
const (
	flagValid      = 0x80
	flagPersistent = 0x40
	flagEFI        = 0x20
)

// bootDevices maps the boot device selector (data byte 2 bits 5:2) to what a
// VM can boot from. Selectors absent here (diagnostic partition, floppies)
// have no VM equivalent and are refused rather than silently ignored.
var bootDevices = map[byte]machine.BootDevice{
	0x00: machine.BootNone,
	0x01: machine.BootPXE,
	0x02: machine.BootDisk,
	0x03: machine.BootDisk, // hard drive, safe mode
	0x05: machine.BootCD,
	0x06: machine.BootBIOSSetup,
	0x08: machine.BootCD,   // remote CD/DVD
	0x09: machine.BootCD,   // primary remote media: the virtual CD
	0x0B: machine.BootDisk, // remote hard drive
}

// bootSelectors is the selector each device reads back as when the bytes
// are derived from the machine.
var bootSelectors = map[machine.BootDevice]byte{
	machine.BootNone:      0x00,
	machine.BootPXE:       0x01,
	machine.BootDisk:      0x02,
	machine.BootCD:        0x05,
	machine.BootBIOSSetup: 0x06,
}

func decodeBootFlags(raw [5]byte) (machine.BootOverride, bool) {
	dev, ok := bootDevices[raw[1]>>2&0x0F]
	if !ok {
		return machine.BootOverride{}, false
	}
	o := machine.BootOverride{
		Enabled:    raw[0]&flagValid != 0,
		Persistent: raw[0]&flagPersistent != 0,
		Device:     dev,
	}
	if o.Enabled {
		o.Mode = machine.BootModeLegacy
		if raw[0]&flagEFI != 0 {
			o.Mode = machine.BootModeUEFI
		}
	}
	return o, true
}

func encodeBootFlags(o machine.BootOverride) [5]byte {
	var raw [5]byte
	if o.Enabled {
		raw[0] |= flagValid
	}
	if o.Persistent {
		raw[0] |= flagPersistent
	}
	if o.Mode == machine.BootModeUEFI {
		raw[0] |= flagEFI
	}
	raw[1] = bootSelectors[o.Device] << 2
	return raw
}
