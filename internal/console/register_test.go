package console

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// A Console is the machine.SerialConsole the bridge hands its BMCs.
var _ machine.SerialConsole = (*Console)(nil)

// readOutput reads a machine.ConsoleReader until the output holds want.
func readOutput(t *testing.T, r machine.ConsoleReader, want string) {
	t.Helper()
	var got []byte
	timeout := time.After(5 * time.Second)
	for !strings.Contains(string(got), want) {
		select {
		case chunk, ok := <-r.Output():
			if !ok {
				t.Fatalf("reader closed with %q, want %q", got, want)
			}
			got = append(got, chunk...)
		case <-timeout:
			t.Fatalf("reader got %q, want %q", got, want)
		}
	}
}

// A reader attached to a registered console before the VM's host ever
// connected sees the host's output once it does, keystrokes reach the
// host, and the log is asked for with the UUIDs the host reported.
func TestRegisterBeforeHostConnects(t *testing.T) {
	persisted := make(chan Identity, 4)
	tc := startConc(t, Config{Persist: func(id Identity) (io.Writer, error) {
		persisted <- id
		return io.Discard, nil
	}})
	c := tc.Register(Identity{BIOSUUID: strings.ToUpper(vmABIOS), Name: "vm-a"})
	if again := tc.Register(Identity{BIOSUUID: vmABIOS}); again != c || tc.Lookup(vmABIOS) != c {
		t.Fatal("Register made a second console for one VM")
	}
	var sc machine.SerialConsole = c
	r := sc.Attach(true)
	defer r.Close()
	if _, err := sc.Write([]byte("x")); !errors.Is(err, machine.ErrConsoleNotConnected) || !errors.Is(err, ErrNotConnected) || sc.Connected() {
		t.Fatalf("Write before the host connected: %v (connected %v)", err, sc.Connected())
	}
	select {
	case id := <-persisted:
		t.Fatalf("the log was asked for before the host connected, as %+v", id)
	default:
	}
	h := dialHost(t, tc.addr, vmA)
	h.print("login: ")
	readOutput(t, r, "login: ")
	if !sc.Connected() || tc.Lookup(vmAInstance) != c {
		t.Fatal("the host's connection did not attach to the registered console")
	}
	if _, err := sc.Write([]byte("root\r")); err != nil {
		t.Fatal(err)
	}
	h.waitKeys("root\r")
	if id := <-persisted; id.InstanceUUID != vmAInstance || id.BIOSUUID != vmABIOS {
		t.Errorf("Persist got %+v, want the host's UUIDs", id)
	}
	r.Close()
	r.Close()
}

// Register's edge cases: a console for an identity without UUID, for a
// stopped concentrator, and past the console limit.
func TestRegisterEdges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T) *Concentrator
		id     Identity
		closed bool
	}{
		{"no UUID: closed", func(t *testing.T) *Concentrator { return New(Config{}) }, Identity{Name: "x"}, true},
		{"stopped concentrator: closed", stoppedConc, Identity{BIOSUUID: vmABIOS}, true},
		{"past the limit, all connected: made all the same", func(t *testing.T) *Concentrator {
			tc := startConc(t, Config{MaxConsoles: 1})
			dialHost(t, tc.addr, vmB)
			waitConsole(t, tc, "50000000-0000-0000-0000-00000000000b")
			return tc.Concentrator
		}, Identity{BIOSUUID: vmABIOS}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := tc.setup(t)
			c := cc.Register(tc.id)
			open := true
			select {
			case _, open = <-c.Attach(false).Output():
			default: // open, and nothing printed yet
			}
			_, err := c.Write([]byte("x"))
			if tc.closed {
				if open || !errors.Is(err, ErrClosed) {
					t.Fatalf("reader open %v, Write %v; want a closed console", open, err)
				}
				return
			}
			if cc.Lookup(tc.id.BIOSUUID) != c || cc.Stats().Consoles != 2 {
				t.Fatalf("console not kept: %+v", cc.Stats())
			}
		})
	}
}

// stoppedConc is a concentrator whose Serve has returned.
func stoppedConc(t *testing.T) *Concentrator {
	cc := New(Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = cc.Serve(ctx, ln) })
	cancel()
	wg.Wait()
	return cc
}

// Find returns the console kept for an identity, matching as a host's
// connection is matched, and never creates one.
func TestFind(t *testing.T) {
	tc := startConc(t, Config{})
	if c := tc.Find(Identity{BIOSUUID: vmABIOS}); c != nil || tc.Stats().Consoles != 0 {
		t.Fatalf("Find on an empty concentrator: %p, %d consoles; want nil and none made", c, tc.Stats().Consoles)
	}
	reg := tc.Register(Identity{BIOSUUID: vmABIOS})
	dialHost(t, tc.addr, vmA)
	c := waitConsole(t, tc, vmAInstance)
	if c != reg {
		t.Fatal("the host's connection did not attach to the registered console")
	}
	clone := Identity{InstanceUUID: "50ff0000-0000-0000-0000-00000000000c", BIOSUUID: vmABIOS}
	for _, tt := range []struct {
		name string
		id   Identity
		want *Console
	}{
		{"by BIOS UUID, another form", Identity{BIOSUUID: strings.ToUpper(strings.ReplaceAll(vmABIOS, "-", ""))}, c},
		{"by instance UUID", Identity{InstanceUUID: vmAInstance}, c},
		{"by both", Identity{InstanceUUID: vmAInstance, BIOSUUID: vmABIOS}, c},
		{"a clone's", clone, nil},
		{"another VM's", Identity{BIOSUUID: NormalizeUUID(vmB.bios)}, nil},
		{"no UUID", Identity{Name: "vm-a"}, nil},
		{"not a UUID", Identity{BIOSUUID: "vm-a"}, nil},
	} {
		if got := tc.Find(tt.id); got != tt.want {
			t.Errorf("Find %s = %p, want %p", tt.name, got, tt.want)
		}
	}
	if n := tc.Stats().Consoles; n != 1 {
		t.Errorf("%d consoles after the finds, want 1", n)
	}
	if c := stoppedConc(t).Find(Identity{BIOSUUID: vmABIOS}); c != nil {
		t.Errorf("Find on a stopped concentrator: %p", c)
	}
}
