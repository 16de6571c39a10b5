package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// DefaultTaskWait bounds how long an action waits for its vCenter task before
// answering. ipmitool as Ironic runs it gives up after 5 s (-N 5 -R 1); a
// slower task is left to finish in the background and its outcome logged.
const DefaultTaskWait = 2 * time.Second

// VM is a machine.Machine over one vSphere VM, bound by managed object
// reference so that a rename or move does not lose it.
type VM struct {
	c   *vim25.Client
	obj *object.VirtualMachine
	id  machine.Identity
	log *slog.Logger

	// TaskWait bounds the wait for a vCenter task (see DefaultTaskWait).
	TaskWait time.Duration

	// life outlives requests: background task waits and the second half of
	// a power cycle run under it.
	life   context.Context
	cancel context.CancelFunc

	// mu serialises actions on this VM so that a cycle, a boot change and a
	// power-on never interleave their vCenter calls.
	mu       sync.Mutex
	override machine.BootOverride
	// pendingFirmware is a firmware change requested while the VM was
	// running; vSphere refuses it then, so it is applied before the next
	// power-on the bridge performs.
	pendingFirmware string
	bg              sync.WaitGroup
	events          *machine.EventLog
}

var _ machine.Machine = (*VM)(nil)

func newVM(c *vim25.Client, ref types.ManagedObjectReference, id machine.Identity, log *slog.Logger) *VM {
	if log == nil {
		log = slog.Default()
	}
	life, cancel := context.WithCancel(context.Background())
	return &VM{
		c: c, obj: object.NewVirtualMachine(c, ref), id: id,
		log:      log.With("vm", id.Name),
		TaskWait: DefaultTaskWait,
		life:     life, cancel: cancel,
		events: machine.NewEventLog(256, nil),
	}
}

// Close cancels background waits and waits for them to end.
func (v *VM) Close() {
	v.cancel()
	v.bg.Wait()
}

// Reference returns the VM's managed object reference.
func (v *VM) Reference() types.ManagedObjectReference { return v.obj.Reference() }

// Identity implements machine.Machine.
func (v *VM) Identity(context.Context) (machine.Identity, error) {
	return v.id, nil
}

// vmProps are the properties every action reads.
var vmProps = []string{"runtime.powerState", "config.firmware", "config.bootOptions", "config.hardware.device"}

func (v *VM) props(ctx context.Context, ps ...string) (*mo.VirtualMachine, error) {
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(v.c).RetrieveOne(ctx, v.obj.Reference(), ps, &vm); err != nil {
		return nil, fmt.Errorf("vm %s: %w", v.id.Name, mapError(err))
	}
	return &vm, nil
}

func powerState(s types.VirtualMachinePowerState) machine.PowerState {
	switch s {
	case types.VirtualMachinePowerStatePoweredOn:
		return machine.PowerOn
	case types.VirtualMachinePowerStatePoweredOff:
		return machine.PowerOff
	case types.VirtualMachinePowerStateSuspended:
		return machine.PowerSuspended
	}
	return machine.PowerUnknown
}

// PowerState implements machine.Machine.
func (v *VM) PowerState(ctx context.Context) (machine.PowerState, error) {
	vm, err := v.props(ctx, "runtime.powerState")
	if err != nil {
		return machine.PowerUnknown, err
	}
	return powerState(vm.Runtime.PowerState), nil
}

// Power implements machine.Machine. On and Off succeed when the VM is
// already in that state (Ironic sends "power on" without checking first);
// cycle, reset and NMI need a running VM, as IPMI v2.0 §28.3 says of power
// cycle ("no effect if the system is in S4/S5").
func (v *VM) Power(ctx context.Context, a machine.PowerAction) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	vm, err := v.props(ctx, "runtime.powerState")
	if err != nil {
		return err
	}
	state := powerState(vm.Runtime.PowerState)
	if (a == machine.Cycle || a == machine.Reset || a == machine.NMI) && state != machine.PowerOn {
		return fmt.Errorf("vm %s is %s, %s needs it running: %w", v.id.Name, state, a, machine.ErrInvalidState)
	}
	switch a {
	case machine.On:
		if state == machine.PowerOn {
			return nil
		}
		return v.powerOn(ctx, state)
	case machine.Off:
		if state == machine.PowerOff {
			return nil
		}
		task, err := v.obj.PowerOff(ctx)
		return v.await(ctx, task, err, "power off")
	case machine.SoftOff:
		if state != machine.PowerOn {
			return nil
		}
		if err := v.obj.ShutdownGuest(ctx); err != nil {
			return fmt.Errorf("vm %s: guest shutdown: %w", v.id.Name, mapError(err))
		}
		return nil
	case machine.Cycle:
		return v.cycle(ctx)
	case machine.Reset:
		task, err := v.obj.Reset(ctx)
		return v.await(ctx, task, err, "reset")
	case machine.NMI:
		req := types.SendNMI{This: v.obj.Reference()}
		if _, err := methods.SendNMI(ctx, v.c, &req); err != nil {
			return fmt.Errorf("vm %s: NMI: %w", v.id.Name, mapError(err))
		}
		return nil
	}
	return fmt.Errorf("power action %s: %w", a, machine.ErrInvalidArgument)
}

// powerOn applies a pending firmware change, then powers on (or resumes).
// v.mu must be held.
func (v *VM) powerOn(ctx context.Context, state machine.PowerState) error {
	if v.pendingFirmware != "" && state == machine.PowerOff {
		spec := types.VirtualMachineConfigSpec{Firmware: v.pendingFirmware}
		task, err := v.obj.Reconfigure(ctx, spec)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("vm %s: set firmware %s before power-on: %w", v.id.Name, v.pendingFirmware, mapError(err))
		}
		v.log.Info("firmware changed before power-on", "firmware", v.pendingFirmware)
		v.pendingFirmware = ""
	}
	task, err := v.obj.PowerOn(ctx)
	return v.await(ctx, task, err, "power on")
}

// cycle powers off, answers, and powers on again in the background once the
// VM is off, so that the reply does not wait for two tasks.
func (v *VM) cycle(ctx context.Context) error {
	task, err := v.obj.PowerOff(ctx)
	if err != nil {
		return fmt.Errorf("vm %s: power off: %w", v.id.Name, mapError(err))
	}
	v.bg.Add(1)
	go func() {
		defer v.bg.Done()
		if err := task.Wait(v.life); err != nil && !isKind(err, machine.ErrInvalidState) {
			v.log.Error("power cycle: power off failed", "err", mapError(err))
			return
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if err := v.powerOn(v.life, machine.PowerOff); err != nil {
			v.log.Error("power cycle: power on failed", "err", err)
		}
	}()
	return nil
}

func isKind(err, kind error) bool { return errors.Is(mapError(err), kind) }

// await waits for a task for at most TaskWait. A task still running then is
// accepted: the reply goes out and the outcome is logged when it comes. An
// InvalidPowerState fault means another actor got there first; the
// requested state holds, so it counts as success.
func (v *VM) await(ctx context.Context, task *object.Task, err error, what string) error {
	if err != nil {
		return fmt.Errorf("vm %s: %s: %w", v.id.Name, what, mapError(err))
	}
	wctx, cancel := context.WithTimeout(ctx, v.TaskWait)
	defer cancel()
	err = task.Wait(wctx)
	if wctx.Err() != nil && ctx.Err() == nil {
		v.bg.Add(1)
		go func() {
			defer v.bg.Done()
			if err := task.Wait(v.life); err != nil && !isKind(err, machine.ErrInvalidState) {
				v.log.Error("vCenter task failed after the reply", "task", what, "err", mapError(err))
				return
			}
			v.log.Debug("vCenter task finished after the reply", "task", what)
		}()
		return nil
	}
	if err != nil {
		if isKind(err, machine.ErrInvalidState) && (what == "power on" || what == "power off") {
			return nil
		}
		return fmt.Errorf("vm %s: %s: %w", v.id.Name, what, mapError(err))
	}
	return nil
}

// BootOverride implements machine.Machine. Mode reports the firmware the
// VM will boot with next: a pending change, else the configured one.
func (v *VM) BootOverride(ctx context.Context) (machine.BootOverride, error) {
	vm, err := v.props(ctx, "config.firmware")
	if err != nil {
		return machine.BootOverride{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	o := v.override
	fw := vm.Config.Firmware
	if v.pendingFirmware != "" {
		fw = v.pendingFirmware
	}
	o.Mode = bootMode(fw)
	return o, nil
}

func bootMode(firmware string) machine.BootMode {
	if firmware == string(types.GuestOsDescriptorFirmwareTypeEfi) {
		return machine.BootModeUEFI
	}
	return machine.BootModeLegacy
}

func firmware(m machine.BootMode) string {
	if m == machine.BootModeUEFI {
		return string(types.GuestOsDescriptorFirmwareTypeEfi)
	}
	return string(types.GuestOsDescriptorFirmwareTypeBios)
}

// SetBootOverride implements machine.Machine: pxe, disk and cdrom move that
// device class to the front of the VM's boot order, bios asks for BIOS
// setup at the next boot, and the mode switches the firmware (at once when
// the VM is off; else before the next power-on, since vSphere refuses a
// firmware change on a running VM).
func (v *VM) SetBootOverride(ctx context.Context, o machine.BootOverride) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	vm, err := v.props(ctx, vmProps...)
	if err != nil {
		return err
	}
	if vm.Config == nil {
		return fmt.Errorf("vm %s: no configuration: %w", v.id.Name, machine.ErrNotFound)
	}
	bo := types.VirtualMachineBootOptions{}
	if vm.Config.BootOptions != nil {
		bo = *vm.Config.BootOptions // bootOptions is replaced whole, never merged
	}
	bo.EnterBIOSSetup = types.NewBool(o.Enabled && o.Device == machine.BootBIOSSetup)
	spec := types.VirtualMachineConfigSpec{BootOptions: &bo}
	pending := v.pendingFirmware
	if o.Enabled {
		if class := bootClass(o.Device); class != "" {
			devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
			order, err := bootOrder(devices, bo.BootOrder, class)
			if err != nil {
				return fmt.Errorf("vm %s: boot from %s: %w", v.id.Name, o.Device, err)
			}
			bo.BootOrder = order
		}
		if o.Mode != machine.BootModeUnspecified {
			want := firmware(o.Mode)
			switch {
			case want == vm.Config.Firmware:
				pending = ""
			case powerState(vm.Runtime.PowerState) == machine.PowerOff:
				spec.Firmware, pending = want, ""
			default:
				pending = want
			}
		}
	}
	task, err := v.obj.Reconfigure(ctx, spec)
	if err := v.await(ctx, task, err, "set boot options"); err != nil {
		return err
	}
	v.pendingFirmware = pending
	v.override = o
	v.override.Mode = machine.BootModeUnspecified
	attrs := []any{"override", o.String()}
	if spec.Firmware != "" {
		attrs = append(attrs, "firmware", spec.Firmware)
	}
	if pending != "" {
		attrs = append(attrs, "firmware_at_next_power_on", pending)
	}
	v.log.Info("boot override set", attrs...)
	return nil
}

func bootClass(d machine.BootDevice) string {
	switch d {
	case machine.BootPXE:
		return object.DeviceTypeEthernet
	case machine.BootDisk:
		return object.DeviceTypeDisk
	case machine.BootCD:
		return object.DeviceTypeCdrom
	}
	return ""
}

// defaultClasses is the order used for device classes that the VM's boot
// order does not list yet: an installed disk first, as firmware defaults do.
var defaultClasses = []string{object.DeviceTypeDisk, object.DeviceTypeCdrom, object.DeviceTypeEthernet}

// bootOrder puts every device of class first and keeps the other classes in
// their present order, appending the classes not yet listed: an explicit
// boot order makes the firmware try only the devices it names.
func bootOrder(devices object.VirtualDeviceList, current []types.BaseVirtualMachineBootOptionsBootableDevice, class string) ([]types.BaseVirtualMachineBootOptionsBootableDevice, error) {
	if len(devices.BootOrder([]string{class})) == 0 {
		return nil, fmt.Errorf("the VM has no %s device: %w", class, machine.ErrInvalidArgument)
	}
	classes := []string{class}
	for _, d := range current {
		if c := bootableClass(d); c != "" && !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	for _, c := range defaultClasses {
		if !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	return devices.BootOrder(classes), nil
}

func bootableClass(d types.BaseVirtualMachineBootOptionsBootableDevice) string {
	switch d.(type) {
	case *types.VirtualMachineBootOptionsBootableEthernetDevice:
		return object.DeviceTypeEthernet
	case *types.VirtualMachineBootOptionsBootableDiskDevice:
		return object.DeviceTypeDisk
	case *types.VirtualMachineBootOptionsBootableCdromDevice:
		return object.DeviceTypeCdrom
	case *types.VirtualMachineBootOptionsBootableFloppyDevice:
		return object.DeviceTypeFloppy
	}
	return ""
}

// Stats implements machine.Machine from the VM's quick statistics.
func (v *VM) Stats(ctx context.Context) (machine.Stats, error) {
	vm, err := v.props(ctx, "summary.quickStats", "runtime.maxCpuUsage", "config.hardware.memoryMB")
	if err != nil {
		return machine.Stats{}, err
	}
	var s machine.Stats
	if max := vm.Runtime.MaxCpuUsage; max > 0 {
		s.CPUPercent = 100 * float64(vm.Summary.QuickStats.OverallCpuUsage) / float64(max)
	}
	if vm.Config != nil && vm.Config.Hardware.MemoryMB > 0 {
		s.MemoryPercent = 100 * float64(vm.Summary.QuickStats.GuestMemoryUsage) / float64(vm.Config.Hardware.MemoryMB)
	}
	return s, nil
}

// Events implements machine.Machine.
func (v *VM) Events(since uint64) []machine.Event { return v.events.Since(since) }
