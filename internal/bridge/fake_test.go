package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine/machinetest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// fakeInventory is an in-memory inventory. A VM is a machinetest.Fake
// under a reference that is never reused, so that a VM deleted and
// created again under its name is a new VM, as in vCenter.
type fakeInventory struct {
	mu    sync.Mutex
	byRef map[types.ManagedObjectReference]*machinetest.Fake
	next  int
	// down, when set, is vCenter's absence: Resolve fails with it.
	down  error
	subs  []func(vsphere.Change)
	ready chan struct{}
	// opts are the options of every NewVM, by VM name.
	opts map[string]vsphere.VMOptions

	// open counts the bound machines not closed yet, newVMs those ever
	// bound; powerReads counts their PowerState calls.
	open, newVMs, powerReads atomic.Int64
	// closing, when set, runs in every bound machine's Close (tests
	// block it there).
	closing atomic.Pointer[func()]
}

// newInventory returns a synchronised inventory holding a VM per name;
// tests that want it unsynchronised replace ready before starting a
// bridge.
func newInventory(names ...string) *fakeInventory {
	f := &fakeInventory{byRef: map[types.ManagedObjectReference]*machinetest.Fake{}, ready: make(chan struct{}), opts: map[string]vsphere.VMOptions{}}
	close(f.ready)
	for _, n := range names {
		f.create(n)
	}
	return f
}

// create adds a VM and reports it as the inventory's watcher would.
func (f *fakeInventory) create(name string) types.ManagedObjectReference {
	f.mu.Lock()
	f.next++
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: fmt.Sprintf("vm-%d", f.next)}
	f.byRef[ref] = &machinetest.Fake{ID: machine.Identity{Name: name, UUID: fmt.Sprintf("42000000-0000-4000-8000-%012d", f.next)}}
	f.mu.Unlock()
	f.emit(vsphere.Change{Ref: ref, Added: true})
	return ref
}

// destroy deletes the VM named name.
func (f *fakeInventory) destroy(name string) {
	f.mu.Lock()
	ref, _ := f.findLocked(name)
	delete(f.byRef, ref)
	f.mu.Unlock()
	f.emit(vsphere.Change{Ref: ref, Removed: true})
}

// rename renames the VM named from.
func (f *fakeInventory) rename(from, to string) {
	f.mu.Lock()
	ref, _ := f.findLocked(from)
	vm := f.byRef[ref]
	f.mu.Unlock()
	vm.SetIdentity(func(id *machine.Identity) { id.Name = to })
}

func (f *fakeInventory) setDown(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = err
}

func (f *fakeInventory) emit(c vsphere.Change) {
	f.mu.Lock()
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	for _, fn := range subs {
		fn(c)
	}
}

func (f *fakeInventory) findLocked(vm string) (types.ManagedObjectReference, bool) {
	for ref, m := range f.byRef {
		if id, _ := m.Identity(context.Background()); id.Name == vm || id.UUID == vm {
			return ref, true
		}
	}
	return types.ManagedObjectReference{}, false
}

func (f *fakeInventory) Resolve(_ context.Context, vm string) (types.ManagedObjectReference, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != nil {
		return types.ManagedObjectReference{}, f.down
	}
	ref, ok := f.findLocked(vm)
	if !ok {
		return ref, fmt.Errorf("vm %q: %w", vm, machine.ErrNotFound)
	}
	return ref, nil
}

func (f *fakeInventory) vm(ref types.ManagedObjectReference) (*machinetest.Fake, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.byRef[ref]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("vm %s: %w (deleted?)", ref.Value, machine.ErrNotFound)
}

func (f *fakeInventory) Identity(ref types.ManagedObjectReference) (machine.Identity, error) {
	m, err := f.vm(ref)
	if err != nil {
		return machine.Identity{}, err
	}
	return m.Identity(context.Background())
}

func (f *fakeInventory) NewVM(ref types.ManagedObjectReference, opts vsphere.VMOptions) boundVM {
	m, _ := f.vm(ref)
	id, _ := f.Identity(ref)
	f.mu.Lock()
	f.opts[id.Name] = opts
	f.mu.Unlock()
	f.open.Add(1)
	f.newVMs.Add(1)
	return &fakeVM{Fake: m, inv: f, ref: ref}
}

func (f *fakeInventory) Unbound(vm string) machine.Machine {
	return &machinetest.Fake{ID: machine.Identity{Name: vm, UUID: vsphere.NilUUID}}
}

func (f *fakeInventory) OnChange(fn func(vsphere.Change)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, fn)
}

func (f *fakeInventory) Ready() <-chan struct{} { return f.ready }

// fakeVM is a machine bound to a fake VM: once the VM is deleted it
// answers machine.ErrNotFound, as vsphere's does.
type fakeVM struct {
	*machinetest.Fake
	inv    *fakeInventory
	ref    types.ManagedObjectReference
	closed atomic.Bool
}

func (v *fakeVM) Reference() types.ManagedObjectReference { return v.ref }

func (v *fakeVM) Identity(ctx context.Context) (machine.Identity, error) {
	if _, err := v.inv.vm(v.ref); err != nil {
		return machine.Identity{}, err
	}
	return v.Fake.Identity(ctx)
}

func (v *fakeVM) PowerState(ctx context.Context) (machine.PowerState, error) {
	v.inv.powerReads.Add(1)
	if _, err := v.inv.vm(v.ref); err != nil {
		return machine.PowerUnknown, err
	}
	return v.Fake.PowerState(ctx)
}

func (v *fakeVM) Close() {
	if v.closed.Swap(true) {
		panic("machine closed twice")
	}
	if hook := v.inv.closing.Load(); hook != nil {
		(*hook)()
	}
	v.inv.open.Add(-1)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startFake starts a bridge over inv. Closing it, at the end of the test,
// must close every machine it bound.
func startFake(t *testing.T, inv *fakeInventory, specs []Spec, opts Options) *Bridge {
	t.Helper()
	if opts.Log == nil {
		opts.Log = quiet
	}
	b := start(context.Background(), map[string]inventory{"": inv}, specs, opts)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if n := inv.open.Load(); n != 0 {
			t.Errorf("%d machines left open after Close", n)
		}
	})
	return b
}

// spec is a BMC for vm on a loopback address of its own (127.0.0.n, any
// port), so that BMCs are told apart by address without choosing ports.
func spec(vm string, n int) Spec {
	return Spec{VM: vm, Address: fmt.Sprintf("127.0.0.%d:0", n), Username: "admin", Password: "password"}
}

// servedUUID is the UUID of the VM whose machine bm serves, "" while it
// serves none or the machine cannot say.
func servedUUID(bm *BMC) string {
	m := bm.Machine()
	if m == nil {
		return ""
	}
	id, err := m.Identity(context.Background())
	if err != nil {
		return ""
	}
	return id.UUID
}

// describe is bm's status and error, for messages.
func describe(bm *BMC) string {
	i := bm.Info()
	return fmt.Sprintf("%s (%v)", i.Status, i.Err)
}

// pings reports whether an endpoint answers an ASF presence ping at addr.
func pings(addr net.Addr) bool {
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		return false
	}
	defer c.Close()
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}
	for range 3 {
		_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Write(ping); err != nil {
			return false
		}
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil && n > 8 && buf[8] == 0x40 {
			return true
		}
	}
	return false
}

// running fails the test unless bm runs and answers at its address.
func running(t *testing.T, bm *BMC) net.Addr {
	t.Helper()
	i := bm.Info()
	if i.Status != Running || i.Addr == nil {
		t.Fatalf("%s: %s, want running", i.Spec.Address, describe(bm))
	}
	if !pings(i.Addr) {
		t.Fatalf("%s: running at %s but not answering", i.Spec.Address, i.Addr)
	}
	return i.Addr
}

// taken binds a UDP port on loopback for the test and returns its address.
func taken(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

// contains reports whether err's text holds every part.
func contains(err error, parts ...string) bool {
	if err == nil {
		return false
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			return false
		}
	}
	return true
}
