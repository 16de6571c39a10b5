package bridge

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/ipmi"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Status is where a BMC stands.
type Status string

// BMC states.
const (
	// Running: the endpoint serves the bound VM (Info.Addr is set).
	Running Status = "running"
	// Waiting: the VM does not exist (yet), or its endpoint is
	// (re)starting; the BMC starts when it appears.
	Waiting Status = "waiting"
	// Stopped by an operator, or by closing the bridge.
	Stopped Status = "stopped"
	Failed  Status = "error"
)

// BMC is one virtual BMC.
type BMC struct {
	// spec is written under both the bridge's and the BMC's lock (Reload),
	// so either may be held to read it.
	spec Spec
	// runtime: added through the management API, not the config file.
	runtime bool
	// enrolled: added by an enrolment rule (see Bridge.Enroll).
	enrolled bool

	mu      sync.Mutex
	stopped bool
	// removed: dropped from the bridge; a late bind must not revive it.
	removed bool
	status  Status
	err     error
	name    string
	addr    net.Addr
	vm      boundVM
	m       machine.Machine // vm as the protocols see it
	ep      *ipmi.Endpoint
	served  chan struct{} // closed when the endpoint's Serve returned
	// binding is closed when the running bind of this BMC ends, nil when
	// none runs; rebind asks it to bind once more, as what it read may
	// have changed meanwhile (see Bridge.bind).
	binding chan struct{}
	rebind  bool
	// warned and warnedAt are the last "not started" warning, repeated
	// only when the reason changes or after warnAgain.
	warned   string
	warnedAt time.Time
}

// warnAgain is how often an unchanged "bmc not started" warning is
// repeated: the bridge retries every few seconds, and a log line each
// time buries everything else.
const warnAgain = 10 * time.Minute

// Info is a snapshot of a BMC for display.
type Info struct {
	Spec    Spec
	Runtime bool
	// Enrolled: added by an enrolment rule.
	Enrolled bool
	Status   Status
	Err      error
	// Name is the VM's current name, once bound.
	Name string
	// UUID is the VM's BIOS UUID while bound, InstanceUUID its vCenter
	// instance UUID.
	UUID, InstanceUUID string
	// Addr is the bound address while running.
	Addr net.Addr
	// Power is the VM's power state while bound.
	Power machine.PowerState
	// Sessions are the endpoint's sessions while running.
	Sessions []ipmi.SessionInfo
	// Pending counts the endpoint's sessions in setup while running.
	Pending int
	// Endpoint counts the endpoint's requests while running.
	Requests uint64
}

// Info returns the BMC's current state. The machine and the endpoint are
// read after the lock is released: a bind or a stop waits for no reader.
func (bm *BMC) Info() Info {
	bm.mu.Lock()
	i := Info{Spec: bm.spec, Runtime: bm.runtime, Enrolled: bm.enrolled, Status: bm.status, Err: bm.err, Name: bm.name, Addr: bm.addr}
	vm, ep := bm.vm, bm.ep
	bm.mu.Unlock()
	if vm != nil {
		if id, err := vm.Identity(context.Background()); err == nil {
			i.Name, i.UUID, i.InstanceUUID = id.Name, id.UUID, id.InstanceUUID
		}
		i.Power, _ = vm.PowerState(context.Background())
	}
	if ep != nil {
		i.Sessions = ep.Sessions()
		i.Pending = ep.Pending()
		i.Requests = ep.Requests()
	}
	return i
}

// Machine returns the machine the BMC serves, or nil when it is not
// bound or stopped.
func (bm *BMC) Machine() machine.Machine {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if bm.vm == nil || !bm.serving() {
		return nil
	}
	return bm.m
}

// serving reports whether the bound BMC serves: its endpoint runs, or it
// has none (Redfish only). bm.mu must be held.
func (bm *BMC) serving() bool { return bm.ep != nil || bm.spec.NoIPMI }

// currentStatus is Info().Status without reading the machine.
func (bm *BMC) currentStatus() Status {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return bm.status
}

// boundAddr is the address the endpoint bound, or "" when none serves.
func (bm *BMC) boundAddr() string {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if bm.addr == nil {
		return ""
	}
	return bm.addr.String()
}

// boundUUID is the bound VM's BIOS UUID, "" when none is bound, read from
// its identity alone.
func (bm *BMC) boundUUID() string { return bm.boundIdentity().UUID }

// boundIdentity is the bound VM's identity, zero when none is bound.
func (bm *BMC) boundIdentity() machine.Identity {
	bm.mu.Lock()
	vm := bm.vm
	bm.mu.Unlock()
	if vm == nil {
		return machine.Identity{}
	}
	id, err := vm.Identity(context.Background())
	if err != nil {
		return machine.Identity{}
	}
	return id
}

// vmName is Info().Name, read from the bound machine's identity alone:
// looking a BMC up by name must not read every BMC's power state and
// sessions.
func (bm *BMC) vmName() string {
	bm.mu.Lock()
	vm, name := bm.vm, bm.name
	bm.mu.Unlock()
	if vm != nil {
		if id, err := vm.Identity(context.Background()); err == nil {
			return id.Name
		}
	}
	return name
}
