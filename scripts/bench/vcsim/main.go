// Command vcsim runs the bridge's vCenter simulator (the one `serve`
// embeds) as a process of its own and writes a bridge configuration for
// its VMs, so that scripts/bench.sh measures the bridge as it runs in
// production: alone in its process, its vCenter elsewhere. The embedded
// simulator answers the bridge's inventory watch with a 20 ms ticker
// (govmomi's WaitForUpdatesEx), whose wake-ups would otherwise be counted
// as the bridge's CPU.
//
//	go run ./scripts/bench/vcsim -vms 5 -config /tmp/b/bridge.yaml -base-port 6230
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "where the simulated vCenter's SDK listens")
	vms := flag.Int("vms", 5, "how many VMs")
	file := flag.String("config", "bridge.yaml", "the bridge configuration to write (its directory also holds the bridge's state)")
	listen := flag.String("listen", config.SimListen, "the address the BMCs listen on")
	basePort := flag.Int("base-port", config.SimBasePort, "UDP port of the first BMC; the next VM's is one higher")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *vms, *file, *listen, *basePort); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, vms int, file, listen string, basePort int) error {
	sim, err := vsphere.StartSimulator(ctx, addr, vms)
	if err != nil {
		return err
	}
	defer sim.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "vcenter:\n  url: %s\n  username: %s\n  password: %s\n  caFile: %s\n", sim.URL, vsphere.SimulatorUser, vsphere.SimulatorPassword, sim.CAFile)
	fmt.Fprintf(&b, "stateDir: %s\nbmcs:\n", filepath.Join(filepath.Dir(file), "state"))
	for i, vm := range sim.VMs {
		fmt.Fprintf(&b, "  - vm: %s\n    address: %s\n    port: %d\n    username: %s\n    password: %s\n", vm, listen, basePort+i, config.SimUser, config.SimPassword)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		return err
	}
	fmt.Printf("vcsim: %d VMs at %s; configuration in %s\n", len(sim.VMs), sim.URL, file)
	<-ctx.Done()
	return nil
}
