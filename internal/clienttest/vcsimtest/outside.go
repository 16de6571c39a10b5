package vcsimtest

import (
	"context"
	"net/url"
	"path"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Outside changes a simulator's inventory as an operator would, through
// a session of its own: folders, tags, renames, deletions.
type Outside struct {
	t      testing.TB
	c      *vsphere.Client
	finder *find.Finder
	dc     *object.Datacenter
	tags   *tags.Manager
}

// NewOutside logs in to sim (SOAP and vAPI) until the test ends.
func NewOutside(t testing.TB, sim *vsphere.Simulator) *Outside {
	t.Helper()
	ctx := context.Background()
	c, err := vsphere.Connect(ctx, Options(sim))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	o := &Outside{t: t, c: c, finder: find.NewFinder(c.Vim(), true)}
	if o.dc, err = o.finder.DefaultDatacenter(ctx); err != nil {
		t.Fatal(err)
	}
	o.finder.SetDatacenter(o.dc)
	rc := rest.NewClient(c.Vim())
	if err := rc.Login(ctx, url.UserPassword(vsphere.SimulatorUser, vsphere.SimulatorPassword)); err != nil {
		t.Fatal(err)
	}
	o.tags = tags.NewManager(rc)
	return o
}

// Client is the session's vSphere client.
func (o *Outside) Client() *vsphere.Client { return o.c }

// VM finds a VM by name.
func (o *Outside) VM(name string) *object.VirtualMachine {
	o.t.Helper()
	vm, err := o.finder.VirtualMachine(context.Background(), name)
	if err != nil {
		o.t.Fatal(err)
	}
	return vm
}

// Move puts the VM into the VM folder at the inventory path dir,
// creating it (below the datacenter's VM folder) if need be.
func (o *Outside) Move(name, dir string) {
	o.t.Helper()
	o.wait(o.folder(dir).MoveInto(context.Background(), []types.ManagedObjectReference{o.VM(name).Reference()}))
}

// Clone creates the VM name, a copy of from, in the folder dir.
func (o *Outside) Clone(from, name, dir string) {
	o.t.Helper()
	o.wait(o.VM(from).Clone(context.Background(), o.folder(dir), name, types.VirtualMachineCloneSpec{}))
}

// folder is the VM folder at the path dir, created below the
// datacenter's VM folder if need be.
func (o *Outside) folder(dir string) *object.Folder {
	o.t.Helper()
	ctx := context.Background()
	folder, err := o.finder.Folder(ctx, dir)
	if err != nil {
		folders, _ := o.dc.Folders(ctx)
		if folder, err = folders.VmFolder.CreateFolder(ctx, path.Base(dir)); err != nil {
			o.t.Fatal(err)
		}
	}
	return folder
}

// Rename renames a VM.
func (o *Outside) Rename(name, to string) {
	o.t.Helper()
	o.wait(o.VM(name).Rename(context.Background(), to))
}

// Delete destroys a VM (powered off).
func (o *Outside) Delete(name string) {
	o.t.Helper()
	o.wait(o.VM(name).Destroy(context.Background()))
}

// Tag attaches the tag category/name to a VM, creating both if need be.
func (o *Outside) Tag(name, category, tag string) {
	o.t.Helper()
	if err := o.tags.AttachTag(context.Background(), o.tagID(category, tag), o.VM(name)); err != nil {
		o.t.Fatal(err)
	}
}

// Untag detaches the tag category/name from a VM.
func (o *Outside) Untag(name, category, tag string) {
	o.t.Helper()
	if err := o.tags.DetachTag(context.Background(), o.tagID(category, tag), o.VM(name)); err != nil {
		o.t.Fatal(err)
	}
}

// tagID is the tag's id, creating it and its category if need be.
func (o *Outside) tagID(category, tag string) string {
	o.t.Helper()
	ctx := context.Background()
	cat, err := o.tags.GetCategory(ctx, category)
	if err != nil {
		id, err := o.tags.CreateCategory(ctx, &tags.Category{Name: category, Cardinality: "MULTIPLE", AssociableTypes: []string{"VirtualMachine"}})
		if err != nil {
			o.t.Fatal(err)
		}
		cat = &tags.Category{ID: id, Name: category}
	}
	if t, err := o.tags.GetTagForCategory(ctx, tag, cat.ID); err == nil {
		return t.ID
	}
	id, err := o.tags.CreateTag(ctx, &tags.Tag{Name: tag, CategoryID: cat.ID})
	if err != nil {
		o.t.Fatal(err)
	}
	return id
}

func (o *Outside) wait(task *object.Task, err error) {
	o.t.Helper()
	if err == nil {
		err = task.Wait(context.Background())
	}
	if err != nil {
		o.t.Fatal(err)
	}
}
