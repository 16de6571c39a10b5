package redfish

import (
	"encoding/json"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// someConsole stands for a VM's serial console.
type someConsole struct{ machine.SerialConsole }

// The Manager's SerialConsole says what the BMC offers: IPMI SOL, one
// session, when its system has a serial console; nothing otherwise.
func TestManagerSerialConsole(t *testing.T) {
	for _, tc := range []struct {
		name    string
		console machine.SerialConsole
		want    string
	}{
		{"a console", someConsole{}, `{"ConnectTypesSupported":["IPMI"],"MaxConcurrentSessions":1,"ServiceEnabled":true}`},
		{"none", nil, `{"ConnectTypesSupported":[],"MaxConcurrentSessions":0,"ServiceEnabled":false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.fakes["vm-0"].Console = tc.console
			got, err := json.Marshal(at(e.get("/redfish/v1/Managers/vm-0"), "SerialConsole"))
			if err != nil || string(got) != tc.want {
				t.Fatalf("SerialConsole %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}
