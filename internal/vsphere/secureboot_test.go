package vsphere

import (
	"context"
	"errors"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

func (e *testEnv) secureBoot(t *testing.T, v *VM) bool {
	t.Helper()
	bo := e.vmConfig(t, v).Config.BootOptions
	return bo != nil && bo.EfiSecureBootEnabled != nil && *bo.EfiSecureBootEnabled
}

// Secure boot is set at once on a VM that is off; on a running VM it
// waits for the next power-on, as a firmware change does, and the
// identity says what the next boot gets meanwhile. A BIOS VM refuses it.
func TestSetSecureBoot(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	var saved savedRecords
	v := e.bind(t, "skinner-master-0", VMOptions{Persist: saved.persist})

	if err := v.SetSecureBoot(ctx, true); err != nil {
		t.Fatal(err)
	}
	if !e.secureBoot(t, v) {
		t.Fatal("secure boot not set on a VM that is off")
	}
	if id, _ := v.Identity(ctx); !id.SecureBoot || !id.SecureBootNext {
		t.Errorf("identity %+v", id)
	}

	if err := v.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	if err := v.SetSecureBoot(ctx, false); err != nil {
		t.Fatal(err)
	}
	if !e.secureBoot(t, v) {
		t.Fatal("secure boot changed on a running VM")
	}
	if id, _ := v.Identity(ctx); !id.SecureBoot || id.SecureBootNext {
		t.Errorf("while waiting: identity secure boot %v, next %v", id.SecureBoot, id.SecureBootNext)
	}
	if r := saved.last(); r.PendingSecureBoot == nil || *r.PendingSecureBoot {
		t.Fatalf("pending change not saved: %+v", r)
	}
	powerOffOn(t, v)
	if e.secureBoot(t, v) {
		t.Fatal("secure boot still on after the power-on that was to apply its change")
	}
	if r := saved.last(); r.PendingSecureBoot != nil {
		t.Errorf("record after the power-on: %+v", r)
	}

	bios := e.bind(t, "skinner-worker-2", VMOptions{})
	if err := bios.Power(ctx, machine.Off); err != nil {
		t.Fatal(err)
	}
	if err := bios.SetBootOverride(ctx, machine.BootOverride{Enabled: true, Persistent: true, Device: machine.BootDisk, Mode: machine.BootModeLegacy}); err != nil {
		t.Fatal(err)
	}
	if err := bios.SetSecureBoot(ctx, true); !errors.Is(err, machine.ErrInvalidArgument) {
		t.Errorf("secure boot on a BIOS VM: %v", err)
	}
}
