// Command vmclone clones a VM of a vCenter (a vcsim process of
// scripts/estate.sh) under a new name, as an operator creating a VM
// would, and prints the clone's BIOS UUID.
//
//	vmclone -url https://127.0.0.1:PORT/sdk -ca ca.pem -from skinner-vm-5 -name new-vm
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

func main() {
	url := flag.String("url", "", "the vCenter SDK URL")
	ca := flag.String("ca", "", "its CA file")
	from := flag.String("from", "", "the VM to clone")
	name := flag.String("name", "", "the clone's name")
	flag.Parse()
	if err := run(*url, *ca, *from, *name); err != nil {
		fmt.Fprintln(os.Stderr, "vmclone:", err)
		os.Exit(1)
	}
}

func run(url, ca, from, name string) error {
	ctx := context.Background()
	c, err := vsphere.Connect(ctx, vsphere.Options{URL: url, Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: ca})
	if err != nil {
		return err
	}
	defer func() { _ = c.Close(ctx) }()
	f := find.NewFinder(c.Vim(), true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	f.SetDatacenter(dc)
	vm, err := f.VirtualMachine(ctx, from)
	if err != nil {
		return err
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	task, err := vm.Clone(ctx, folders.VmFolder, name, types.VirtualMachineCloneSpec{})
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return err
	}
	var clone mo.VirtualMachine
	if err := object.NewVirtualMachine(c.Vim(), info.Result.(types.ManagedObjectReference)).Properties(ctx, info.Result.(types.ManagedObjectReference), []string{"config.uuid"}, &clone); err != nil {
		return err
	}
	fmt.Println(clone.Config.Uuid)
	return nil
}
