package bridge

import (
	"errors"
	"log/slog"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// enter counts an operation that may bind in b.bg, unless Close began or
// the bridge's context ended: Close waits for those counted, and none
// starts after it.
func (b *Bridge) enter() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.ctx.Err() != nil {
		return false
	}
	b.bg.Add(1)
	return true
}

// bind (re)binds bm to its VM and (re)starts its endpoint. Binds of one BMC
// never overlap, as they would race for its address: while one runs,
// another call asks it to bind once more and waits for it. No lock is held
// while the endpoint starts, so that readers (`bmc list`, Redfish, the
// reconciler) never wait for it.
func (b *Bridge) bind(bm *BMC) {
	if !b.enter() {
		return
	}
	defer b.bg.Done()
	bm.mu.Lock()
	if running := bm.binding; running != nil {
		bm.rebind = true
		bm.mu.Unlock()
		<-running
		return
	}
	done := make(chan struct{})
	defer close(done)
	bm.binding = done
	for again := true; again; {
		bm.rebind = false
		bm.mu.Unlock()
		b.bindOnce(bm)
		bm.mu.Lock()
		again = bm.rebind
	}
	bm.binding = nil
	bm.mu.Unlock()
}

// wantsLocked reports whether a bind of bm for spec still stands: bm was
// neither removed, changed nor stopped meanwhile, and the bridge is not
// closing. bm.mu must be held.
func (b *Bridge) wantsLocked(bm *BMC, spec Spec) bool {
	return !bm.removed && !bm.stopped && bm.spec == spec && b.ctx.Err() == nil
}

// bindOnce resolves bm's VM and, unless bm serves it already, restarts
// bm's endpoint on it.
func (b *Bridge) bindOnce(bm *BMC) {
	bm.mu.Lock()
	spec := bm.spec
	bm.mu.Unlock()
	log := b.opts.Log.With("bmc", spec.Key())
	if spec.VCenter != "" {
		log = log.With("vcenter", spec.VCenter)
	}
	inv, err := b.inventory(spec)
	if err != nil {
		b.failed(bm, spec, err, "")
		return
	}
	ref, err := inv.Resolve(b.ctx, spec.VM)
	if err != nil {
		b.unresolved(bm, spec, inv, err, log)
		return
	}
	bm.mu.Lock()
	if !b.wantsLocked(bm, spec) || (bm.vm != nil && bm.vm.Reference() == ref && bm.serving()) {
		bm.mu.Unlock()
		return
	}
	// The address is free once stopLocked returns; the old machine is
	// closed once the new endpoint serves.
	release := b.stopLocked(bm, Waiting)
	bm.mu.Unlock()
	defer release()
	b.serve(bm, spec, inv, ref, log)
}

// unresolved records why bm's VM could not be looked up. A BMC still bound
// keeps its machine, which answers errors (its VM was deleted and no new
// one exists yet); one that is not serves node-busy while vCenter is
// unavailable.
func (b *Bridge) unresolved(bm *BMC, spec Spec, inv inventory, err error, log *slog.Logger) {
	bm.mu.Lock()
	if !b.wantsLocked(bm, spec) || bm.vm != nil {
		bm.mu.Unlock()
		return
	}
	bm.err, bm.status = err, Failed
	if errors.Is(err, machine.ErrNotFound) {
		bm.status = Waiting
	}
	status := bm.status
	unbound := errors.Is(err, machine.ErrUnavailable) && bm.ep == nil && !spec.NoIPMI
	level := slog.LevelDebug
	if now := time.Now(); err.Error() != bm.warned || now.Sub(bm.warnedAt) >= warnAgain {
		level, bm.warned, bm.warnedAt = slog.LevelWarn, err.Error(), now
	}
	bm.mu.Unlock()
	log.Log(b.ctx, level, "bmc not started", "vm", spec.VM, "config", spec.Where, "status", status, "err", err)
	if unbound {
		b.serveUnbound(bm, spec, inv, log)
	}
}

// serve starts an endpoint on the VM ref for bm and installs it, unless bm
// no longer wants it by then.
func (b *Bridge) serve(bm *BMC, spec Spec, inv inventory, ref types.ManagedObjectReference, log *slog.Logger) {
	id, err := inv.Identity(ref)
	if err != nil {
		b.failed(bm, spec, err, "")
		return
	}
	vm := inv.NewVM(ref, b.vmOptions(spec, id, log))
	m := b.wrap(b.withConsole(vm, spec, id))
	var ep *ipmi.Endpoint
	if !spec.NoIPMI {
		if ep, err = ipmi.Listen(b.ctx, m, b.endpointConfig(spec, id.Name)); err != nil {
			vm.Close()
			b.failed(bm, spec, err, id.Name)
			log.Error("bmc not started", "vm", id.Name, "config", spec.Where, "err", err)
			return
		}
	}
	bm.mu.Lock()
	if !b.wantsLocked(bm, spec) {
		bm.mu.Unlock()
		if ep != nil {
			_ = ep.Close()
		}
		vm.Close()
		return
	}
	bm.vm, bm.m, bm.name = vm, m, id.Name
	bm.status, bm.err = Running, nil
	addr := "none (Redfish only)"
	if ep != nil {
		b.installLocked(bm, ep, id.Name, log)
		addr = bm.addr.String()
	} else {
		b.gen.Add(1) // installLocked counts a start; Redfish re-reads its systems
	}
	bm.mu.Unlock()
	log.Info("bmc serving", "vm", id.Name, "uuid", id.UUID, "address", addr)
}

// failed records why bm's endpoint did not start, unless bm no longer
// wants it.
func (b *Bridge) failed(bm *BMC, spec Spec, err error, name string) {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if !b.wantsLocked(bm, spec) {
		return
	}
	bm.status, bm.err = Failed, err
	if name != "" {
		bm.name = name
	}
}

// serveUnbound serves bm's address while vCenter is unavailable, so that
// clients get node-busy (C0h, which Ironic retries) with the reason rather
// than silence; binding replaces it once the VM can be looked up.
func (b *Bridge) serveUnbound(bm *BMC, spec Spec, inv inventory, log *slog.Logger) {
	ep, err := ipmi.Listen(b.ctx, b.wrap(inv.Unbound(spec.VM)), b.endpointConfig(spec, spec.VM))
	if err != nil {
		log.Error("bmc address not served while vCenter is unavailable", "vm", spec.VM, "config", spec.Where, "err", err)
		return
	}
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if !b.wantsLocked(bm, spec) || bm.ep != nil || bm.vm != nil {
		_ = ep.Close()
		return
	}
	b.installLocked(bm, ep, spec.VM, log)
}

// installLocked makes ep bm's endpoint and serves it until it is closed or
// the bridge's context ends. bm.mu must be held.
func (b *Bridge) installLocked(bm *BMC, ep *ipmi.Endpoint, vm string, log *slog.Logger) {
	bm.ep, bm.addr = ep, ep.Addr()
	bm.served = make(chan struct{})
	b.gen.Add(1)
	go func(done chan struct{}) {
		defer close(done)
		if err := ep.Serve(b.ctx); err != nil {
			log.Error("bmc stopped", "vm", vm, "err", err)
		}
	}(bm.served)
}

// stopLocked stops serving bm and leaves it in status (Stopped if an
// operator stopped it). The endpoint's socket is closed at once, so that
// its address is free for the next endpoint; the returned release waits
// for the endpoint's loop and closes the machine. bm.mu must be held, and
// release called once bm.mu (and b.mu) are released: closing a machine
// waits a moment for its vCenter actions, and bm.Info, which `bmc list`,
// the reconciler and Redfish need, takes bm.mu.
func (b *Bridge) stopLocked(bm *BMC, status Status) (release func()) {
	if bm.stopped {
		status = Stopped
	}
	bm.status, bm.err = status, nil
	b.gen.Add(1)
	ep, served, vm := bm.ep, bm.served, bm.vm
	bm.ep, bm.addr, bm.served, bm.vm, bm.m = nil, nil, nil, nil, nil
	if ep != nil {
		_ = ep.Close()
	}
	return func() {
		if served != nil {
			<-served
		}
		if vm != nil {
			vm.Close()
		}
	}
}

// vmOptions are the options of the machine bound to the VM id for spec,
// with the state an earlier run saved for it.
func (b *Bridge) vmOptions(spec Spec, id machine.Identity, log *slog.Logger) vsphere.VMOptions {
	opts := vsphere.VMOptions{
		Log: log, SoftOffTimeout: b.opts.SoftOffTimeout,
		BootHold: b.opts.BootHold, FollowEFIBit: b.opts.FollowEFIBit,
		Media: b.opts.Media[spec.VCenter],
	}
	if b.hasConsole(spec) {
		opts.ConsoleURI = b.opts.ConsoleURI
	}
	if st := b.opts.State; st != nil {
		// BIOS UUIDs are unique within a vCenter only (an imported or
		// copied VM keeps its own), so another vCenter's VMs are kept
		// apart; one vCenter's keys stay as they were.
		key := "vm/" + id.UUID
		if spec.VCenter != "" {
			key = "vm/" + spec.VCenter + "/" + id.UUID
		}
		if _, err := st.Get(key, &opts.Saved); err != nil {
			log.Error("saved VM state unreadable; starting without it", "vm", id.Name, "err", err)
		}
		opts.Persist = func(r vsphere.Record) error { return st.Put(key, r) }
	}
	return opts
}

// endpointConfig is the shared endpoint configuration with spec's address
// and credentials.
func (b *Bridge) endpointConfig(spec Spec, vm string) ipmi.Config {
	cfg := b.opts.Endpoint
	cfg.Address, cfg.Username, cfg.Password, cfg.SOLPort = spec.Address, spec.Username, spec.Password, spec.SOLPort
	cfg.Log = b.opts.Log.With("vm", vm)
	return cfg
}

// consoled is a machine whose BMC offers its VM's serial console. The
// console is asked for at each call, not kept: the concentrator may have
// replaced it (a VM forgotten to make room, then back).
type consoled struct {
	machine.Machine
	id      machine.Identity
	console func(machine.Identity) machine.SerialConsole
}

func (c consoled) SerialConsole() machine.SerialConsole { return c.console(c.id) }

// hasConsole reports whether spec's BMC offers its VM's serial console.
func (b *Bridge) hasConsole(spec Spec) bool { return spec.Console && b.opts.Console != nil }

// withConsole gives m, bound to the VM id for spec, its serial console
// when spec asks for one.
func (b *Bridge) withConsole(m machine.Machine, spec Spec, id machine.Identity) machine.Machine {
	if !b.hasConsole(spec) {
		return m
	}
	return consoled{Machine: m, id: id, console: b.opts.Console}
}

// wrap decorates m as Options.Wrap says.
func (b *Bridge) wrap(m machine.Machine) machine.Machine {
	if b.opts.Wrap == nil {
		return m
	}
	return b.opts.Wrap(m)
}
