package daemon

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// Adding a second vCenter leaves the first one's keys, and so its state
// entries (runtime BMCs, boot overrides, media copies, failed logins), as
// they were; the second's are its own.
func TestFirstVCenterKeepsItsKeys(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{VCenters: []config.VCenter{{Name: "lab"}, {Name: "prod"}},
		BMCs: []config.BMC{{VM: "a", VCenter: "lab"}, {VM: "b", VCenter: "prod"}}}
	vcs := configVCenters(cfg)
	if vcs[0].key != "" || vcs[0].statePrefix() != "" || vcs[1].key != "prod" || vcs[1].statePrefix() != "vcenter/prod/" {
		t.Fatalf("keys %q %q, prefixes %q %q", vcs[0].key, vcs[1].key, vcs[0].statePrefix(), vcs[1].statePrefix())
	}
	if specs := configSpecs(cfg); specs[0].VCenter != "" || specs[1].VCenter != "prod" {
		t.Fatalf("specs %+v", specs)
	}
}

// Two vCenters that log in and then never synchronise delay the start
// once, by startWait, not forever: every vCenter's wait sees the one
// deadline.
func TestStartWaitSharedByVCenters(t *testing.T) {
	t.Parallel()
	sim, err := vsphere.StartSimulator(context.Background(), "127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	for _, name := range []string{"lab", "prod"} {
		c, err := vsphere.Start(context.Background(), vsphere.Options{URL: sim.URL.String(), Username: vsphere.SimulatorUser, Password: vsphere.SimulatorPassword, CAFile: sim.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close(context.Background()) }()
		// The inventories never run: a vCenter that hangs after the login.
		d.vcs = append(d.vcs, &vcenter{key: name, name: name, client: c, inv: vsphere.NewInventory(c, d.log)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), startWait+10*time.Second)
	defer cancel()
	if !d.awaitInventory(ctx) {
		t.Fatal("still waiting past startWait: a vCenter never saw the deadline")
	}
}
