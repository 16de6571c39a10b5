package consoletest_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/console/consoletest"
)

// The fake host is identified by the concentrator from what it answers,
// its output (IAC included) reaches the console and keystrokes reach it.
func TestHost(t *testing.T) {
	for _, vm := range []consoletest.VM{
		{InstanceUUID: "502a3c4d-5e6f-7081-92a3-b4c5d6e7f809", BIOSUUID: "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8", Name: "vm-a"},
		{BIOSUUID: "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f9", Name: "no instance UUID"},
	} {
		t.Run(vm.Name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cc := console.New(console.Config{})
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- cc.Serve(ctx, ln) }()
			defer func() { cancel(); <-served }()
			c := cc.Register(console.Identity{BIOSUUID: vm.BIOSUUID})
			h := consoletest.Dial(t, ln.Addr().String(), vm)
			h.Print("boot \xff done")
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(string(c.Snapshot()), "boot \xff done") && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := string(c.Snapshot()); got != "boot \xff done" || c.Identity().Name != vm.Name || c.Identity().InstanceUUID != vm.InstanceUUID {
				t.Fatalf("console %q, identity %+v", got, c.Identity())
			}
			if _, err := c.Write([]byte("root\r\xff")); err != nil {
				t.Fatal(err)
			}
			h.WaitKeys("root\r\xff")
			h.Close()
		})
	}
}
