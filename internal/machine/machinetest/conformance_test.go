package machinetest

import (
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The Fake keeps the contract the vSphere machine keeps, so that protocol
// tests against it hold against vSphere.
func TestFakeConformance(t *testing.T) {
	Run(t, func(t *testing.T, p machine.FirmwarePolicy) machine.Machine {
		return &Fake{ID: machine.Identity{
			Name: "conformance", UUID: "4230a5b6-0c1d-2e3f-8899-aabbccddeeff",
			SerialNumber: "VMware-42 30 a5 b6 0c 1d 2e 3f-88 99 aa bb cc dd ee ff",
			CPUs:         2, MemoryMiB: 4096, MACs: []string{"00:50:56:aa:bb:01"},
			Disks:      []machine.Disk{{ID: "2000", Name: "Hard disk 1", CapacityBytes: 16 << 30, Bus: "SCSI"}},
			GuestTools: true, NMI: true,
		}, FollowEFIBit: p}
	}, Options{})
}
