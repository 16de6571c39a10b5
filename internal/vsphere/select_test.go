package vsphere

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// names is what Matching selects, by name, sorted.
func names(t *testing.T, inv *Inventory, f Filter) ([]string, error) {
	t.Helper()
	vms, err := inv.Matching(context.Background(), f)
	var out []string
	for _, vm := range vms {
		out = append(out, vm.Name)
	}
	slices.Sort(out)
	return out, err
}

// Folders are known from the watched inventory: a VM moved into a folder
// is selected by it (and announced as Moved) without a vCenter call, a
// folder renamed takes its VMs to its new path, and a path that names no
// folder is an error, not an empty list.
func TestSelectByFolder(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	var moved atomic.Int32
	e.inv.OnChange(func(c Change) {
		if c.Moved {
			moved.Add(1)
		}
	})
	f := find.NewFinder(e.out.vim, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	folders, _ := dc.Folders(ctx)
	ocp, err := folders.VmFolder.CreateFolder(ctx, "ocp")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := f.VirtualMachine(ctx, "skinner-master-1")
	if err != nil {
		t.Fatal(err)
	}
	task, _ := ocp.MoveInto(ctx, []types.ManagedObjectReference{vm.Reference()})
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the VM in /DC0/vm/ocp", func() bool {
		got, _ := names(t, e.inv, Filter{Folder: "/DC0/vm/ocp/"})
		return slices.Equal(got, []string{"skinner-master-1"})
	})
	clienttest.Eventually(t, "the move announced as a change", func() bool { return moved.Load() > 0 })
	// A VM in a vApp in the folder is in the folder (vCenter gives it a
	// parentVApp, not a parent).
	pool, err := f.DefaultResourcePool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vapp, err := pool.CreateVApp(ctx, "app", types.DefaultResourceConfigSpec(), simulator.NewVAppConfigSpec(), ocp)
	if err != nil {
		t.Fatal(err)
	}
	task, err = vapp.CreateChildVM(ctx, types.VirtualMachineConfigSpec{Name: "in-app", GuestId: "otherGuest64", Files: &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"}}, nil)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the vApp's VM in /DC0/vm/ocp", func() bool {
		got, _ := names(t, e.inv, Filter{Folder: "/DC0/vm/ocp"})
		return slices.Equal(got, []string{"in-app", "skinner-master-1"})
	})
	if all, _ := names(t, e.inv, Filter{Folder: "/DC0/vm"}); len(all) != 6 {
		t.Errorf("/DC0/vm holds %v, want all 6 (subfolders and vApps included)", all)
	}
	task, _ = ocp.Rename(ctx, "okd")
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the renamed folder", func() bool {
		got, _ := names(t, e.inv, Filter{Folder: "/DC0/vm/okd", Name: "skinner-*"})
		return slices.Equal(got, []string{"skinner-master-1"})
	})
	if _, err := names(t, e.inv, Filter{Folder: "/DC0/vm/ocp"}); !errors.Is(err, machine.ErrInvalidArgument) {
		t.Errorf("the old path: %v, want ErrInvalidArgument", err)
	}
	calls := e.c.Requests()["RetrievePropertiesEx"]
	if _, err := names(t, e.inv, Filter{Folder: "/DC0/vm/okd"}); err != nil {
		t.Fatal(err)
	}
	if n := e.c.Requests()["RetrievePropertiesEx"]; n != calls {
		t.Errorf("selecting by folder asked vCenter %d times", n-calls)
	}
}

// Tags are read from the vAPI tagging service, which the simulator
// serves: a VM tagged is selected, untagged is not, and a tag or category
// that does not exist is an error.
func TestSelectByTag(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	rc := rest.NewClient(e.out.vim)
	if err := rc.Login(ctx, url.UserPassword(SimulatorUser, SimulatorPassword)); err != nil {
		t.Fatal(err)
	}
	m := tags.NewManager(rc)
	cat, err := m.CreateCategory(ctx, &tags.Category{Name: "cluster", Cardinality: "SINGLE", AssociableTypes: []string{"VirtualMachine"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.CreateTag(ctx, &tags.Tag{Name: "skinner", CategoryID: cat})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := find.NewFinder(e.out.vim, true).VirtualMachine(ctx, "/DC0/vm/skinner-worker-2")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AttachTag(ctx, id, vm); err != nil {
		t.Fatal(err)
	}
	tag := Tag{Category: "cluster", Name: "skinner"}
	if got, err := names(t, e.inv, Filter{Tag: tag}); err != nil || !slices.Equal(got, []string{"skinner-worker-2"}) {
		t.Fatalf("tagged: %v, %v", got, err)
	}
	if got, _ := names(t, e.inv, Filter{Tag: tag, Name: "skinner-master-*"}); len(got) != 0 {
		t.Errorf("tag and name: %v, want none", got)
	}
	// vCenter forgets the bridge's tagging session (a restart): the next
	// question, for a tag not looked up yet, logs in again.
	if err := e.c.tags.rc.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := m.CreateTag(ctx, &tags.Tag{Name: "other", CategoryID: cat})
	if err == nil {
		err = m.AttachTag(ctx, other, vm)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, err := names(t, e.inv, Filter{Tag: Tag{Category: "cluster", Name: "other"}}); err != nil || len(got) != 1 {
		t.Fatalf("after the session was lost: %v, %v", got, err)
	}
	if err := m.DetachTag(ctx, id, vm); err != nil {
		t.Fatal(err)
	}
	if got, err := names(t, e.inv, Filter{Tag: tag}); err != nil || len(got) != 0 {
		t.Errorf("untagged: %v, %v", got, err)
	}
	for _, bad := range []Tag{{Category: "cluster", Name: "nope"}, {Category: "nope", Name: "skinner"}} {
		if _, err := names(t, e.inv, Filter{Tag: bad}); !errors.Is(err, machine.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", bad, err)
		}
	}
}
