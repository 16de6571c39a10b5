package vsphere

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// A VM's serial console reaches the bridge through vSphere's virtual serial
// port concentrator (vSPC) protocol: a serial port backed by a network URI
// with direction "server" and a proxy URI makes the VM's host connect out to
// the proxy (the bridge's concentrator, VMOptions.ConsoleURI), which then
// serves the guest's serial line. That is how VMware's "Using a Proxy with
// vSphere Virtual Serial Ports" and OpenStack's VMware driver configure a
// vSPC port.
//
// The bridge adds such a port and never takes one over: a serial port the
// user configured (file, pipe, device, or a network backing with another
// service URI) stays as it is, and the bridge's port comes after it. The
// guest numbers serial ports in device order (the first is ttyS0 or COM1),
// so on a VM that already had one the console is the guest's second port;
// which one the guest's kernel writes to is the guest's configuration.
// vSphere adds a serial port, or changes its backing, only while the VM is
// powered off: on a running VM the change waits (Record.PendingConsole)
// until the VM is seen off, or until the bridge powers it on. Turning the
// console off (an empty ConsoleURI) leaves the port alone, since the guest
// or its user may rely on it; only a change still waiting is dropped.

// ConsoleServiceURI is the service URI of the serial port the bridge gives
// a VM for its console. With a proxy URI the host does not connect to it:
// it names the service to the proxy (the telnet DO-PROXY request carries
// it), so it is a name, not an address. The bridge recognises its own port
// by it: one pointing at another proxy URI (the concentrator moved) is
// pointed at the new one rather than a second port added.
const ConsoleServiceURI = "ipmi-vmware-bridge"

// Pacing of the console's reconciliation while vCenter cannot take it.
const (
	consoleRetry    = time.Second
	consoleMaxRetry = time.Minute
)

// ConsoleStatus is where the VM's serial port for the console stands.
type ConsoleStatus struct {
	// Set: a serial port of the VM's points at the bridge's concentrator
	// (its proxy URI is VMOptions.ConsoleURI).
	Set bool
	// Pending: the port waits for the VM to be powered off to be added
	// or pointed at the concentrator (vSphere changes serial ports only
	// then); it is set before the bridge next powers the VM on.
	Pending bool
	// Failures counts the changes of the port vCenter refused or left
	// without a verdict since the VM was bound.
	Failures int64
}

// ConsoleStatus reports the VM's serial port for the console, from the
// inventory.
func (v *VM) ConsoleStatus() (ConsoleStatus, error) {
	vm, err := v.snapshot()
	if err != nil {
		return ConsoleStatus{}, err
	}
	return ConsoleStatus{
		Set:      consoleSet(vm.Config.Hardware.Device, v.opts.ConsoleURI),
		Pending:  v.record().PendingConsole != "",
		Failures: v.consoleFailures.Load(),
	}, nil
}

// consolePorts reads a VM's serial ports against the proxy URI uri: set
// when one points at it; ours is the first port with the bridge's service
// URI otherwise. Type assertions, not VirtualDeviceList.SelectByType, which
// walks every device by reflection.
func consolePorts(devices []types.BaseVirtualDevice, uri string) (set bool, ours *types.VirtualSerialPort) {
	for _, d := range devices {
		p, ok := d.(*types.VirtualSerialPort)
		if !ok {
			continue
		}
		b, ok := p.Backing.(*types.VirtualSerialPortURIBackingInfo)
		switch {
		case !ok:
		case uri != "" && b.ProxyURI == uri:
			return true, nil
		case b.ServiceURI == ConsoleServiceURI && ours == nil:
			ours = p
		}
	}
	return false, ours
}

// consoleSet reports whether a serial port among devices points at uri.
func consoleSet(devices []types.BaseVirtualDevice, uri string) bool {
	set, _ := consolePorts(devices, uri)
	return set
}

// consoleChange is the device change that points a VM with devices at the
// proxy URI uri: nil when uri is empty or a port points there already, an
// edit of the bridge's own port when it has one, else a new port.
func consoleChange(devices []types.BaseVirtualDevice, uri string) *types.VirtualDeviceConfigSpec {
	if uri == "" {
		return nil
	}
	set, ours := consolePorts(devices, uri)
	switch {
	case set:
		return nil
	case ours != nil:
		// Its key and place on the controller kept, and its description
		// left for vSphere to write again from the new backing.
		d := ours.VirtualDevice
		d.DeviceInfo = nil
		return &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: consolePort(d, uri)}
	}
	// A negative key marks a new device; vSphere gives it its key and,
	// as for any serial port added without one, its controller (the
	// super I/O controller) and unit.
	return &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: consolePort(types.VirtualDevice{Key: -1}, uri)}
}

// consolePort is d made the console's serial port: a vSPC port (direction
// server, the concentrator as proxy), connected at every power-on and not
// disconnectable by the guest, whose vCPU yields when it polls the port (a
// kernel console busy-waits on it) instead of spinning. Connected is false:
// vSphere changes a serial port only on a powered-off VM, where nothing is
// connected; StartConnected connects it at power-on.
func consolePort(d types.VirtualDevice, uri string) *types.VirtualSerialPort {
	d.Backing = &types.VirtualSerialPortURIBackingInfo{VirtualDeviceURIBackingInfo: types.VirtualDeviceURIBackingInfo{
		ServiceURI: ConsoleServiceURI,
		Direction:  string(types.VirtualDeviceURIBackingOptionDirectionServer),
		ProxyURI:   uri,
	}}
	d.Connectable = &types.VirtualDeviceConnectInfo{StartConnected: true, AllowGuestControl: false, Connected: false}
	return &types.VirtualSerialPort{VirtualDevice: d, YieldOnPoll: true}
}

// transient reports an error that says nothing of the console's port
// (vCenter away or busy, the VM's actions busy) or leaves its change's
// outcome unknown: the change is tried again later.
func transient(err error) bool {
	return errors.Is(err, machine.ErrUnavailable) || errors.Is(err, machine.ErrBusy) || errors.Is(err, errOutcomeUnknown)
}

// watchConsole starts the VM's console reconciliation, when it has a
// console or a change of one waits: at once, again whenever the VM is seen
// powered off (kickConsole), and after a transient failure, with backoff.
// A refusal is not retried until the next kick: it would be refused again.
func (v *VM) watchConsole() {
	if !v.consoleWaits(v.rec) {
		return
	}
	v.kickConsole()
	v.background(func() {
		select {
		case <-v.inv.Ready():
		case <-v.life.Done():
			return
		}
		wait := consoleRetry
		var retry <-chan time.Time
		for {
			select {
			case <-v.life.Done():
				return
			case <-v.consoleKick:
				wait = consoleRetry
			case <-retry:
			}
			retry = nil
			if err := v.reconcileConsole(); transient(err) {
				v.log.Debug("console's serial port not set yet; trying again", "in", wait, "err", err)
				retry = time.After(wait)
				wait = min(2*wait, consoleMaxRetry)
			}
		}
	})
}

// kickConsole asks the console's reconciliation to run; it never blocks.
func (v *VM) kickConsole() {
	select {
	case v.consoleKick <- struct{}{}:
	default:
	}
}

// reconcileConsole is one run of the console's reconciliation, under the
// VM's action lock like any other change of the VM's. The lock is waited
// for at most callTimeout (an action holds it at most verdictWait).
func (v *VM) reconcileConsole() error {
	ctx, cancel := context.WithTimeout(v.life, callTimeout)
	err := v.lockAction(ctx)
	cancel()
	if err != nil {
		return err
	}
	defer v.mu.Unlock()
	return v.setConsole(v.life)
}

// pendingConsole sets, before a power-on, the console's serial port that
// waited for the VM to be off or was refused before. A refusal is logged
// and counted (applyConsole) and the VM powers on without it: the console
// is the bridge's business, the power-on the client's. What leaves the
// port's change unknown or unsent stops the power-on, which would
// otherwise run beside it. v.mu must be held.
func (v *VM) pendingConsole(ctx context.Context, state machine.PowerState) error {
	if !v.consoleWaits(v.record()) || state == machine.PowerOn {
		return nil
	}
	if err := v.setConsole(ctx); transient(err) {
		return err
	}
	return nil
}

// consoleWaits reports whether the console's port may need a change
// before a power-on: the VM has a console, or rec holds a change to drop.
func (v *VM) consoleWaits(rec Record) bool {
	return v.opts.ConsoleURI != "" || rec.PendingConsole != ""
}

// setConsole brings the VM's serial port in line with ConsoleURI
// (consoleChange): at once when the VM is off, else recorded for later.
// The console lock of the VM (lockConsole) is held until the inventory
// shows the change, so that a second machine bound to the VM sees the port
// rather than adding another. v.mu must be held.
func (v *VM) setConsole(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	unlock, err := v.inv.lockConsole(lctx, v.obj.Reference())
	cancel()
	if err != nil {
		return err
	}
	defer unlock()
	vm, err := v.snapshot()
	if err != nil {
		return err
	}
	rec := v.record()
	spec := consoleChange(vm.Config.Hardware.Device, v.opts.ConsoleURI)
	switch {
	case spec == nil && rec.PendingConsole != "":
		rec.PendingConsole = ""
		v.save(rec)
		return nil
	case spec == nil:
		return nil
	case powerState(vm.Runtime.PowerState) != machine.PowerOff:
		v.consoleLater(rec)
		return nil
	}
	return v.applyConsole(ctx, rec, spec)
}

// applyConsole sends spec, the console port's change, and answers like
// the other reconfigurations: the record says the change is done only once
// vCenter's task succeeded (or, answered unknown, succeeds later).
func (v *VM) applyConsole(ctx context.Context, rec Record, spec *types.VirtualDeviceConfigSpec) error {
	what := "add the console's serial port"
	if spec.Operation == types.VirtualDeviceConfigSpecOperationEdit {
		what = "point the console's serial port at the concentrator"
	}
	applied := func() {
		if rec := v.record(); rec.PendingConsole != "" {
			rec.PendingConsole = ""
			v.save(rec)
		}
	}
	vd, err := v.reconfigurePending(ctx, what, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{spec}}, applied)
	switch {
	case vd == done:
		v.log.Info("serial port set for the console", "change", string(spec.Operation), "proxy_uri", v.opts.ConsoleURI)
		return nil
	case vd == refused && isKind(err, machine.ErrInvalidState):
		v.consoleLater(rec) // powered on since the inventory said off
		return nil
	case vd == refused:
		err = fmt.Errorf("vm %s: %s: %w", v.name(), what, mapError(err))
		v.log.Error("vCenter refused the console's serial port; tried again when the VM is next powered off, or on through the bridge", "failures", v.consoleFailures.Add(1), "err", err)
		return err
	case vd == unknown:
		v.consoleFailures.Add(1)
	}
	return err
}

// consoleLater records the console's port for the VM's next power-off or
// power-on, logging it once: vSphere adds a serial port, or changes its
// backing, only on a powered-off VM.
func (v *VM) consoleLater(rec Record) {
	if rec.PendingConsole == v.opts.ConsoleURI {
		return
	}
	rec.PendingConsole = v.opts.ConsoleURI
	v.save(rec)
	v.log.Info("the console's serial port waits for the VM to be powered off (vSphere changes serial ports only then)", "proxy_uri", v.opts.ConsoleURI)
}

// lockConsole takes, before ctx ends, the console lock of the VM ref,
// which serialises the console changes of the machines bound to one VM (a
// BMC and its duplicate), and returns its release.
func (inv *Inventory) lockConsole(ctx context.Context, ref types.ManagedObjectReference) (func(), error) {
	l, _ := inv.consoleLocks.LoadOrStore(ref, make(chan struct{}, 1))
	ch := l.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("vm %s: another BMC of the VM is setting its console's serial port: %w", ref.Value, machine.ErrBusy)
	}
}
