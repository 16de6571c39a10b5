package ipmi

import (
	"testing"

	"github.com/bougou/go-ipmi/pkg/types"
)

func TestDCMICapabilities(t *testing.T) {
	t.Parallel()
	hdr := []byte{0xdc, 0x01, 0x05, 0x02}
	tests := []struct {
		name string
		c    types.Command
		req  []byte
		want []byte
		cc   types.CompletionCode
	}{
		{"supported capabilities", types.CommandGetDCMICapParam, []byte{0xdc, 1}, append(hdr, 0x00, 0x00, 0x00), types.CodeOK},
		{"mandatory attributes: 256 entries, rollover", types.CommandGetDCMICapParam, []byte{0xdc, 2}, append(hdr, 0x00, 0x81, 0x00, 0x00, 0x00), types.CodeOK},
		{"optional attributes", types.CommandGetDCMICapParam, []byte{0xdc, 3}, append(hdr, 0x20, 0x00), types.CodeOK},
		{"manageability access: LAN channel 1", types.CommandGetDCMICapParam, []byte{0xdc, 4}, append(hdr, 0x01, 0xff, 0xff), types.CodeOK},
		{"no power statistics", types.CommandGetDCMICapParam, []byte{0xdc, 5}, append(hdr, 0x00), types.CodeOK},
		{"unknown parameter", types.CommandGetDCMICapParam, []byte{0xdc, 6}, nil, types.CodeRequestDataFieldInvalid},
		{"no parameter", types.CommandGetDCMICapParam, []byte{0xdc}, nil, types.CodeRequestDataLengthInvalid},
		{"PICMG Get Address Info", types.CommandGetDCMICapParam, []byte{0x00}, nil, types.CodeInvalidCommand},
		{"no group extension", types.CommandGetDCMICapParam, nil, nil, types.CodeInvalidCommand},
		{"other DCMI commands", types.Command{NetFn: 0x2c, ID: 0x02}, []byte{0xdc}, nil, types.CodeInvalidCommand},
		{"HPM.2 probe", types.Command{NetFn: 0x2c, ID: 0x3e}, []byte{0x00, 0x02}, nil, types.CodeInvalidCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			got, cc := h.do(tt.c, tt.req...)
			checkResp(t, got, cc, tt.want, tt.cc)
		})
	}
}
