package vsphere

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// memInventory is an inventory synchronised by hand with the VMs given, on
// a client that is never asked anything.
func memInventory(vms ...*mo.VirtualMachine) *Inventory {
	inv := NewInventory(&Client{}, quiet())
	inv.down = nil
	for _, vm := range vms {
		inv.vms[vm.Self] = vm
	}
	return inv
}

func memVM(value string, p types.VirtualMachinePowerState, cv string) *mo.VirtualMachine {
	vm := &mo.VirtualMachine{Config: &types.VirtualMachineConfigInfo{ChangeVersion: cv}}
	vm.Self = types.ManagedObjectReference{Type: "VirtualMachine", Value: value}
	vm.Runtime.PowerState = p
	return vm
}

const (
	on  = types.VirtualMachinePowerStatePoweredOn
	off = types.VirtualMachinePowerStatePoweredOff
)

// A task's confirmed state stands in for the watcher's until it delivers
// it; a later task's replaces it, even when the watcher, lagging, still
// shows the VM as that later task left it (the earlier state was never
// delivered): reads then show the watcher's.
func TestConfirmReplacesAnEarlierConfirmation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		shown        types.VirtualMachinePowerState
		earlier, now types.VirtualMachinePowerState
		want         machine.PowerState
	}{
		{"first confirmation", off, "", on, machine.PowerOn},
		{"watcher shows it already", on, "", on, machine.PowerOn},
		{"earlier one not delivered", off, on, off, machine.PowerOff},
		{"earlier one replaced", off, off, on, machine.PowerOn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := memVM("vm-1", tc.shown, "1")
			inv := memInventory(vm)
			if tc.earlier != "" {
				inv.confirmed[vm.Self] = confirmedPower{tc.earlier, time.Now()}
			}
			inv.confirm(vm.Self, tc.now)
			got, err := inv.get(vm.Self)
			if err != nil {
				t.Fatal(err)
			}
			if p := powerState(got.Runtime.PowerState); p != tc.want {
				t.Fatalf("reads %s, want %s", p, tc.want)
			}
		})
	}
}

// vSphere documents config.changeVersion as opaque: any other value is a
// reconfiguration to read again, whatever order the two would sort in.
func TestChangeVersionComparedForEqualityOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		kind  types.ObjectUpdateKind
		cs    []types.PropertyChange
		stale bool
	}{
		{"later in sort order", types.ObjectUpdateKindModify, []types.PropertyChange{{Name: "config.changeVersion", Val: "2026-12-01"}}, true},
		{"earlier in sort order", types.ObjectUpdateKindModify, []types.PropertyChange{{Name: "config.changeVersion", Val: "1"}}, true},
		{"the same", types.ObjectUpdateKindModify, []types.PropertyChange{{Name: "config.changeVersion", Val: "2026-11-30"}}, false},
		{"no version", types.ObjectUpdateKindModify, []types.PropertyChange{{Name: "runtime.powerState", Val: on}}, false},
		{"an enter carries the configuration", types.ObjectUpdateKindEnter, []types.PropertyChange{{Name: "config.changeVersion", Val: "1"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := memVM("vm-1", off, "2026-11-30")
			inv := memInventory(vm)
			inv.mu.Lock()
			inv.applyLocked(types.ObjectUpdate{Obj: vm.Self, Kind: tc.kind, ChangeSet: tc.cs}, true)
			stale := inv.stale[vm.Self]
			inv.mu.Unlock()
			if stale != tc.stale {
				t.Fatalf("stale %v, want %v", stale, tc.stale)
			}
		})
	}
}

// A configuration read again replaces the inventory's whatever order the
// two versions would sort in: the read came after the update that asked
// for it, so it is the newer.
func TestRereadConfigurationApplied(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ shown, read string }{
		{"9", "10"},
		{"10", "9"},
	} {
		t.Run(tc.shown+" then "+tc.read, func(t *testing.T) {
			vm := memVM("vm-1", off, tc.shown)
			inv := memInventory(vm)
			inv.stale[vm.Self] = true
			fresh := memVM("vm-1", "", tc.read)
			fresh.Config.Firmware = "bios"
			inv.mu.Lock()
			inv.configLocked(fresh)
			inv.mu.Unlock()
			got, err := inv.get(vm.Self)
			if err != nil {
				t.Fatal(err)
			}
			if got.Config.ChangeVersion != tc.read || got.Config.Firmware != "bios" || inv.stale[vm.Self] {
				t.Fatalf("version %s, firmware %s, stale %v", got.Config.ChangeVersion, got.Config.Firmware, inv.stale[vm.Self])
			}
			if got.Runtime.PowerState != off {
				t.Fatalf("the re-read lost the power state: %s", got.Runtime.PowerState)
			}
		})
	}
}

// syncedInventory is an inventory over its own client that is not
// running: the test applies updates and re-reads by hand, and counts what
// that asks vCenter.
func syncedInventory(t *testing.T, e *testEnv) *Inventory {
	t.Helper()
	ctx := context.Background()
	c, err := Connect(ctx, simOptions(e.sim))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	v, err := view.NewManager(c.vim).CreateContainerView(ctx, c.vim.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	var contents []types.ObjectContent
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, watched, &contents); err != nil {
		t.Fatal(err)
	}
	fs := types.PropertyFilterUpdate{}
	for _, oc := range contents {
		u := types.ObjectUpdate{Obj: oc.Obj, Kind: types.ObjectUpdateKindEnter}
		for _, p := range oc.PropSet {
			u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Name: p.Name, Op: types.PropertyChangeOpAssign, Val: p.Val})
		}
		fs.ObjectSet = append(fs.ObjectSet, u)
	}
	inv := NewInventory(c, quiet())
	inv.apply(&types.UpdateSet{FilterSet: []types.PropertyFilterUpdate{fs}}, &syncState{seen: map[types.ManagedObjectReference]bool{}})
	return inv
}

// The configurations of VMs reconfigured together (vSphere announces each
// only as a new config.changeVersion) are read again in one call, a VM
// deleted meanwhile included: it fails none of the others' read.
func TestStaleConfigurationsReadInOneCall(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		vms       []string
		destroyed string
	}{
		{"three VMs", []string{"skinner-master-0", "skinner-master-1", "skinner-master-2"}, ""},
		{"one deleted meanwhile", []string{"skinner-worker-1", "skinner-worker-2"}, "skinner-worker-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := syncedInventory(t, e)
			var fs types.PropertyFilterUpdate
			refs := map[string]types.ManagedObjectReference{}
			for _, name := range tc.vms {
				ref, err := inv.find(name)
				if err != nil {
					t.Fatal(err)
				}
				refs[name] = ref
				cv := reconfigureOutside(t, e, ref)
				fs.ObjectSet = append(fs.ObjectSet, types.ObjectUpdate{Obj: ref, Kind: types.ObjectUpdateKindModify,
					ChangeSet: []types.PropertyChange{{Name: "config.changeVersion", Op: types.PropertyChangeOpAssign, Val: cv}}})
			}
			if tc.destroyed != "" {
				task, err := object.NewVirtualMachine(e.out.vim, refs[tc.destroyed]).Destroy(ctx)
				if err == nil {
					err = task.Wait(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			inv.apply(&types.UpdateSet{FilterSet: []types.PropertyFilterUpdate{fs}}, &syncState{synced: true})
			before := inv.c.Requests()["RetrievePropertiesEx"]
			if err := inv.reread(ctx); err != nil {
				t.Fatal(err)
			}
			if n := inv.c.Requests()["RetrievePropertiesEx"] - before; n != 1 {
				t.Fatalf("%d VMs re-read in %d calls", len(tc.vms), n)
			}
			for name, ref := range refs {
				vm := inv.vms[ref]
				fresh := vm.Config.BootOptions != nil && vm.Config.BootOptions.EnterBIOSSetup != nil && *vm.Config.BootOptions.EnterBIOSSetup
				if name != tc.destroyed && (!fresh || inv.stale[ref]) {
					t.Errorf("%s: configuration not read again (stale %v)", name, inv.stale[ref])
				}
			}
		})
	}
}

// reconfigureOutside asks, through the outside client, for BIOS setup at
// the VM's next boot, and returns its new config.changeVersion.
func reconfigureOutside(t *testing.T, e *testEnv, ref types.ManagedObjectReference) string {
	t.Helper()
	ctx := context.Background()
	vm := object.NewVirtualMachine(e.out.vim, ref)
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{BootOptions: &types.VirtualMachineBootOptions{EnterBIOSSetup: types.NewBool(true)}})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	var m mo.VirtualMachine
	if err := property.DefaultCollector(e.out.vim).RetrieveOne(ctx, ref, []string{"config.changeVersion"}, &m); err != nil {
		t.Fatal(err)
	}
	return m.Config.ChangeVersion
}

// Refresh, after the bridge changed a VM, waits for the watcher to show
// the change, asking vCenter nothing itself; without a change it gives up
// at its deadline.
func TestRefreshWaitsForTheWatcher(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	for _, tc := range []struct {
		name    string
		vm      string
		change  bool
		wait    time.Duration
		wantErr error
	}{
		{"changed", "skinner-master-1", true, 10 * time.Second, nil},
		{"unchanged", "skinner-master-2", false, 300 * time.Millisecond, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := e.inv.find(tc.vm)
			if err != nil {
				t.Fatal(err)
			}
			e.inv.sending(ref)
			if tc.change {
				reconfigureOutside(t, e, ref)
			}
			before := e.c.Requests()
			ctx, cancel := context.WithTimeout(context.Background(), tc.wait)
			defer cancel()
			if err := e.inv.Refresh(ctx, ref); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Refresh: %v, want %v", err, tc.wantErr)
			}
			// The watcher's own read of the configuration is all.
			reads := e.c.Requests()["RetrievePropertiesEx"] - before["RetrievePropertiesEx"]
			if want := map[bool]uint64{true: 1, false: 0}[tc.change]; reads != want {
				t.Errorf("%d configuration reads, want %d (the watcher's)", reads, want)
			}
			vm, err := e.inv.get(ref)
			if err != nil {
				t.Fatal(err)
			}
			bios := vm.Config.BootOptions != nil && vm.Config.BootOptions.EnterBIOSSetup != nil && *vm.Config.BootOptions.EnterBIOSSetup
			if bios != tc.change {
				t.Errorf("inventory shows BIOS setup %v after Refresh, want %v", bios, tc.change)
			}
		})
	}
}

// awaitPower is woken by the watcher's update of the VM and asks vCenter
// nothing; a state the VM never reaches ends it at its bound.
func TestAwaitPower(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	v := e.bind(t, "skinner-worker-1", VMOptions{})
	outside := object.NewVirtualMachine(e.out.vim, v.Reference())
	for _, tc := range []struct {
		name string
		act  func(context.Context) (*object.Task, error)
		want machine.PowerState
		ok   bool
	}{
		{"powered on outside", outside.PowerOn, machine.PowerOn, true},
		{"never suspended", nil, machine.PowerSuspended, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			before := requestsExceptWatch(e.c.Requests())
			if tc.act != nil {
				task, err := tc.act(ctx)
				if err == nil {
					err = task.Wait(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			if got := v.awaitPower(ctx, tc.want, time.Second); got != tc.ok {
				t.Fatalf("awaitPower %s: %v after %v, want %v", tc.want, got, time.Since(start), tc.ok)
			}
			if n := requestsExceptWatch(e.c.Requests()) - before; n != 0 {
				t.Errorf("awaiting sent %d vCenter requests", n)
			}
		})
	}
}
