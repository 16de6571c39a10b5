package ipmi

import (
	"context"

	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"
)

// dcmiGroup is the DCMI group extension ID (DCMI 1.5 §6.1), the first data
// byte of every DCMI request and response on NetFn 2Ch.
const dcmiGroup = 0xDC

// dcmiHeader opens a Get DCMI Capabilities Info answer (DCMI 1.5 §6.1.1):
// group extension, DCMI 1.5 conformance (major, minor), parameter revision
// 02h. ipmitool's `dcmi discover` refuses other conformance values and
// revisions other than 01h and 02h.
var dcmiHeader = []byte{dcmiGroup, 0x01, 0x05, 0x02}

// dcmiCapabilities are the parameters of Get DCMI Capabilities Info (DCMI
// 1.5 §6.1.1), declaring only what the bridge does: the SEL and chassis
// power over the primary LAN channel, no power management and no
// temperature monitoring. With parameter revision 02h the DCMI 1.0 bits for
// mandatory capabilities are reserved and sent as 0.
var dcmiCapabilities = map[byte][]byte{
	// 1, supported capabilities: [reserved, optional platform capabilities
	// (bit 0 power management: no), manageability access (in-band system
	// interface, serial TMODE, secondary LAN: none)].
	0x01: {0x00, 0x00, 0x00},
	// 2, mandatory platform attributes: SEL attributes (2 bytes: [11:0]
	// number of entries, [15] automatic rollover, which the machine's log
	// does by dropping its oldest event; the flush-on-rollover bits are left
	// clear because FreeIPMI and go-ipmi's client read them at different
	// bit positions), two reserved bytes, temperature sampling period 0.
	0x02: {byte(selCapacity & 0xFF), byte(selCapacity>>8&0x0F) | 0x80, 0x00, 0x00, 0x00},
	// 3, optional platform attributes: power management device slave
	// address 20h (the BMC; [7:1] is the 7-bit address), channel 0 and
	// device revision 0. Meaningless without power management, so the BMC
	// itself.
	0x03: {0x20, 0x00},
	// 4, manageability access attributes: primary LAN channel 1 (the
	// channel every BMC serves), no secondary LAN and no serial (FFh).
	0x04: {0x01, 0xFF, 0xFF},
	// 5, enhanced system power statistics attributes: no rolling average
	// time periods.
	0x05: {0x00},
}

// registerDCMI adds Get DCMI Capabilities Info (NetFn 2Ch, command 01h).
// Every other DCMI command, and the HPM.2, PICMG and VITA probes ipmitool
// sends on NetFn 2Ch, stay unregistered and answer C1h.
func registerDCMI(r *handlers.Registry) {
	r.RegisterFunc(types.CommandGetDCMICapParam, dcmiCapabilitiesInfo)
}

// dcmiCapabilitiesInfo answers request [DCh, parameter selector] with the
// header and the parameter's data. Command 01h of another group extension
// (PICMG Get Address Info, VITA) is not ours: C1h, as if unregistered.
func dcmiCapabilitiesInfo(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 1 || req[0] != dcmiGroup {
		return nil, types.CodeInvalidCommand, nil
	}
	if len(req) < 2 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	data, ok := dcmiCapabilities[req[1]]
	if !ok {
		return nil, types.CodeRequestDataFieldInvalid, nil
	}
	resp := append([]byte(nil), dcmiHeader...)
	return append(resp, data...), types.CodeOK, nil
}
