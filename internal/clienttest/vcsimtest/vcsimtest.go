// Package vcsimtest runs package vsphere's vCenter simulator for the tests
// of the packages above vsphere (bridge, redfish, e2e, the command): one
// way to start it, connect to it and wait for an inventory of it, where
// each test file had written its own. It lives apart from clienttest so
// that the tests using clienttest alone do not link the simulator, and so
// that package vsphere's own tests may use clienttest; they cannot use
// this package, which imports vsphere.
package vcsimtest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Start runs a simulator with n VMs on a loopback port until the test
// ends. It closes after the cleanups the test registers later (daemons
// that talk to it stop first, without a vCenter outage in their logs).
func Start(t testing.TB, n int) *vsphere.Simulator {
	t.Helper()
	sim, err := vsphere.StartSimulator(context.Background(), "127.0.0.1:0", n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// Options are what a client of sim connects with: its URL, its user and
// password, and its certificate to verify.
func Options(sim *vsphere.Simulator) vsphere.Options {
	return vsphere.Options{URL: sim.URL.String(), Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: sim.CAFile}
}

// Inventory runs a simulator with n VMs and an inventory of it, its log
// discarded, until the test ends; it returns once the inventory has
// synchronised, and the inventory stops before the simulator closes.
func Inventory(t testing.TB, n int) (*vsphere.Simulator, *vsphere.Inventory) {
	t.Helper()
	sim := Start(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := vsphere.Connect(ctx, Options(sim))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	inv := vsphere.NewInventory(c, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { inv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-inv.Ready():
	case <-time.After(clienttest.Patience):
		t.Fatal("the inventory never synchronised")
	}
	return sim, inv
}
