package vsphere

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// SetSecureBoot implements machine.Machine with machine.PlanSecureBoot's
// rules: UEFI secure boot on or off, vSphere's
// bootOptions.efiSecureBootEnabled (what Ironic's UEFISecureBoot boot mode
// drives through Redfish). vSphere changes it only while the VM is off, so
// a change asked for while it runs waits for the next power-on, as a
// firmware change does (pendingFirmware applies both), and Identity
// reports it in SecureBootNext meanwhile.
func (v *VM) SetSecureBoot(ctx context.Context, on bool) error {
	ctx, vm, release, err := v.beginAction(ctx)
	if err != nil {
		return err
	}
	defer release()
	rec, s := v.planState(vm)
	next, now, err := machine.PlanSecureBoot(s, on)
	switch {
	case err != nil:
		return fmt.Errorf("vm %s: %w", vm.Name, err)
	case !now:
		return v.secureBootLater(rec.withBoot(next), on)
	}
	vd, err := v.runTask(ctx, "set secure boot", func(ctx context.Context) (*object.Task, error) {
		return v.obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{BootOptions: secureBootOptions(vm, on)})
	}, nil)
	switch {
	case vd == done:
		if rec.PendingSecureBoot != nil {
			v.save(rec.withBoot(next))
		}
		v.settled(ctx, "secure boot")
		v.log.Info("secure boot set", "enabled", on)
		return nil
	case vd == refused && isKind(err, machine.ErrInvalidState):
		// Powered on after the inventory last said so.
		s.Off = false
		next, _, _ = machine.PlanSecureBoot(s, on)
		return v.secureBootLater(rec.withBoot(next), on)
	case vd == refused:
		return fmt.Errorf("vm %s: set secure boot: %w", v.name(), mapError(err))
	}
	return err
}

// secureBootLater records a secure-boot change for the next power-on.
func (v *VM) secureBootLater(rec Record, on bool) error {
	if err := v.persistRecord(rec); err != nil {
		return err
	}
	v.log.Info("secure boot set for the next power-on", "enabled", on)
	return nil
}

// secureBootOptions is the VM's boot options with secure boot set: vSphere
// replaces bootOptions whole, so the rest is carried over.
func secureBootOptions(vm *mo.VirtualMachine, on bool) *types.VirtualMachineBootOptions {
	bo := types.VirtualMachineBootOptions{}
	if vm.Config.BootOptions != nil {
		bo = *vm.Config.BootOptions
	}
	bo.EfiSecureBootEnabled = types.NewBool(on)
	return &bo
}
