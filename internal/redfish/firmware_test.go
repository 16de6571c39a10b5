package redfish

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// TestOnceLegacyKeepsEFIOnVSphere: Redfish's Once with mode Legacy follows
// the machine's firmware rule (boot.followEfiBit, default persistent), and
// a BootSourceOverrideMode PATCH alone, which is how Ironic sets a node's
// boot mode, still changes the firmware. Checked on the VM in govmomi's
// simulator (an EFI VM, powered off).
func TestOnceLegacyKeepsEFIOnVSphere(t *testing.T) {
	ctx := context.Background()
	sim, inv := vcsimtest.Inventory(t, 1)
	vm, err := inv.Bind(ctx, vsphere.SeedVMNames[0], vsphere.VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Close)

	// A second client reads the VM from vCenter, not the bridge's view.
	u := *sim.URL
	u.User = url.UserPassword(vsphere.SimulatorUser, vsphere.SimulatorPassword)
	out, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		t.Fatal(err)
	}
	firmware := func() string {
		t.Helper()
		var m mo.VirtualMachine
		if err := property.DefaultCollector(out.Client).RetrieveOne(ctx, vm.Reference(), []string{"config.firmware"}, &m); err != nil {
			t.Fatal(err)
		}
		return m.Config.Firmware
	}

	e := newEnv(t)
	e.setSystems([]System{{ID: "vm-0", Machine: vm, Username: "admin", Password: "password"}})
	const sys = "/redfish/v1/Systems/vm-0"
	if w := e.do("PATCH", sys, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"Legacy"}}`, admin...); w.Code != 200 {
		t.Fatalf("PATCH: %d %s", w.Code, w.Body)
	}
	if fw := firmware(); fw != "efi" {
		t.Fatalf("Once + Legacy switched the firmware to %s", fw)
	}
	m := e.get(sys)
	if at(m, "Boot", "BootSourceOverrideEnabled") != "Once" || at(m, "Boot", "BootSourceOverrideMode") != "UEFI" {
		t.Errorf("Boot %v", m["Boot"])
	}
	if err := vm.Power(ctx, machine.On); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute) // catches a hang only
	for at(e.get(sys), "Boot", "BootSourceOverrideEnabled") != "Disabled" {
		if time.Now().After(deadline) {
			t.Fatal("the Once override was never used")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fw := firmware(); fw != "efi" {
		t.Fatalf("firmware after the boot: %s", fw)
	}
	if err := vm.Power(ctx, machine.Off); err != nil {
		t.Fatal(err)
	}

	// The mode alone: Ironic's set_boot_mode, which reads the mode back.
	if w := e.do("PATCH", sys, `{"Boot":{"BootSourceOverrideMode":"Legacy"}}`, admin...); w.Code != 200 {
		t.Fatalf("PATCH: %d %s", w.Code, w.Body)
	}
	if fw := firmware(); fw != "bios" {
		t.Fatalf("BootSourceOverrideMode Legacy left the firmware %s", fw)
	}
	if m := e.get(sys); at(m, "Boot", "BootSourceOverrideMode") != "Legacy" || at(m, "Boot", "BootSourceOverrideEnabled") != "Disabled" {
		t.Errorf("Boot %v", m["Boot"])
	}
}
