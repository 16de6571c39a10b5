package bridge

import (
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// startBridge runs a bridge with one BMC per simulated VM.
func startBridge(t *testing.T, vms int) *Bridge {
	t.Helper()
	sim, inv := vcsimtest.Inventory(t, vms)
	var specs []Spec
	for _, name := range sim.VMs {
		specs = append(specs, Spec{VM: name, Address: "127.0.0.1:0", Username: "admin", Password: "password"})
	}
	b := Start(t.Context(), map[string]*vsphere.Inventory{"": inv}, specs, Options{Log: slog.New(slog.DiscardHandler)})
	for _, bm := range b.BMCs() {
		if i := bm.Info(); i.Status != Running {
			t.Fatalf("%s: %s %v", i.Spec.VM, i.Status, i.Err)
		}
	}
	return b
}

// Closing a VM machine may wait for vCenter actions it answered (up to
// vsphere's closeGrace, and longer before that bound existed). Stopping,
// removing or reloading a BMC must not hold the bridge's or the BMC's lock
// meanwhile: `bmc list`, the reconciler and Redfish read every BMC's Info
// and would freeze with it.
func TestStopDoesNotFreezeReadsWhileTheMachineCloses(t *testing.T) {
	inv := newInventory("vm0", "vm1", "vm2")
	b := startFake(t, inv, []Spec{spec("vm0", 2), spec("vm1", 3), spec("vm2", 4)}, Options{})
	release := make(chan struct{})
	closing := make(chan struct{}, 4)
	hook := func() {
		closing <- struct{}{}
		<-release
	}
	inv.closing.Store(&hook)
	// Remove closes a runtime BMC's machine, Stop the first BMC's, Close
	// the others'.
	bms := b.BMCs()
	added := spec("vm0", 5)
	added.AllowDuplicate = true
	if _, err := b.Add(added); err != nil {
		t.Fatal(err)
	}
	id := bms[0].Info().Addr.String()
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"remove", func() error { return b.Remove(added.Address) }},
		{"stop", func() error { return b.Stop(id) }},
		{"close", b.Close},
	} {
		t.Run(op.name, func(t *testing.T) {
			finished := make(chan error, 1)
			go func() { finished <- op.run() }()
			select {
			case <-closing:
			case err := <-finished:
				t.Fatalf("returned without closing a machine: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("the machine was never closed")
			}
			readsAnswer(t, b, id)
			if op.name == "close" {
				close(release) // Close closes several machines at once
			} else {
				release <- struct{}{}
			}
			select {
			case err := <-finished:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s never returned", op.name)
			}
		})
	}
}

// readsAnswer fails the test unless BMCs, Info, Running and Lookup answer
// within 10 s.
func readsAnswer(t *testing.T, b *Bridge, id string) {
	t.Helper()
	read := make(chan struct{})
	go func() {
		defer close(read)
		for _, bm := range b.BMCs() {
			_ = bm.Info()
		}
		_ = b.Running()
		_, _ = b.Lookup(id)
	}()
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("a lock is held while the machine closes: BMCs, Info and Lookup blocked")
	}
}

// Close ends every goroutine the bridge started (the reconciler, the
// first-synchronisation wait, each endpoint's loop), so that no BMC is
// bound again behind it; the inventory it was given runs on.
func TestCloseJoinsItsGoroutines(t *testing.T) {
	b := startBridge(t, 3)
	var addrs []string
	for _, bm := range b.BMCs() {
		addrs = append(addrs, bm.Info().Addr.String())
	}
	b.kick <- struct{}{} // a reconciliation may be running as Close begins
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	noBridgeGoroutines(t)
	// Every endpoint's socket is released: its address can be bound again.
	for _, a := range addrs {
		c, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Errorf("address %s still taken after Close: %v", a, err)
			continue
		}
		c.Close()
	}
}

// noBridgeGoroutines fails the test unless, within 5 s, no goroutine the
// bridge started (the reconciler, the first-synchronisation wait, an
// endpoint's loop) runs: call it once every bridge of the test is closed.
func noBridgeGoroutines(t *testing.T) {
	t.Helper()
	var left string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		left = ""
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			// The test's own goroutines (the inventory it runs) are not the
			// bridge's.
			if strings.Contains(g, "internal/bridge.") && !strings.Contains(g, "_test.go") {
				left += g + "\n\n"
			}
		}
		if left == "" {
			return
		}
	}
	t.Fatalf("goroutines of the bridge still running after Close:\n%s", left)
}
