package vsphere

import (
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
)

// The VM keeps the machine.Machine contract, checked by the suite that
// checks machinetest.Fake, so that protocol tests against the fake hold
// against vSphere. Each check gets a seed VM of its own (powered off, EFI
// firmware, a disk, a NIC and a CD-ROM); a simulator serves five of them
// in turn, since starting one costs more than most checks.
func TestConformance(t *testing.T) {
	t.Parallel()
	var e *testEnv
	next := len(SeedVMNames)
	machinetest.Run(t, func(st *testing.T, p machine.FirmwarePolicy) machine.Machine {
		if next == len(SeedVMNames) {
			e, next = startEnvFor(st, t, nil), 0
		}
		name := SeedVMNames[next]
		next++
		// The simulator's VMs have no VMware Tools: with softOffTimeout
		// a guest shutdown is allowed all the same (its fallback).
		return e.bind(st, name, VMOptions{FollowEFIBit: p, SoftOffTimeout: time.Minute})
	}, machinetest.Options{NMILearnt: true})
}
