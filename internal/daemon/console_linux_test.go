//go:build linux

package daemon

import (
	"context"
	"net"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console/consoletest"
)

// TestConsoleOverSOL is the serial console end to end, as an operator
// meets it: ipmitool's sol activate on a terminal, against a running
// daemon, through the concentrator to the VM's host (a test-side ESXi
// speaking VMware's vSPC telnet extensions), both ways.
func TestConsoleOverSOL(t *testing.T) {
	t.Parallel()
	c := startConsoleDaemon(t)
	b, err := c.d.api.BMC(context.Background(), "skinner-worker-2")
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(b.Address)
	if err != nil {
		t.Fatal(err)
	}
	c.host = consoletest.Dial(t, c.d.ep.Console, c.vm)
	c.host.Print("Red Hat Enterprise Linux CoreOS\r\nworker-2 login: ")
	sol := clienttest.StartPTY(t, "ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", port,
		"-U", "admin", "-P", "pw-12345", "sol", "activate")
	sol.Expect("[SOL Session operational.  Use ~? for help]")
	sol.Expect("worker-2 login: ") // the kept output, replayed
	sol.Type("core\r")
	c.host.WaitKeys("core\r")
	c.host.Print("core\r\nPassword: ")
	sol.Expect("Password: ") // live output
	sol.Type("\r~.")
	if status := sol.Exit(); status != 0 {
		t.Fatalf("ipmitool after ~.: status %d\n%s", status, sol.Output())
	}
}
