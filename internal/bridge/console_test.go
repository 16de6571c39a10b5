package bridge

import (
	"sync"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// stubConsole is the serial console Options.Console gives, naming the
// VM it was asked for.
type stubConsole struct {
	machine.SerialConsole
	uuid string
}

// instrumented stands for the metrics' Wrap: it embeds the machine, as
// metrics.Instrument does.
type instrumented struct{ machine.Machine }

// consoleCase is one bridge TestConsole runs: whether the spec asks for
// a console, the bridge has consoles, Wrap is set, the BMC is added at
// runtime, and whether the BMC should then offer its VM's console.
type consoleCase struct {
	name                    string
	spec, options, wrap, rt bool
	want                    bool
}

// A BMC whose spec asks for a console, on a bridge that has consoles,
// serves a machine whose SerialConsole is its VM's, through Wrap too, and
// its VM's serial port is pointed at the concentrator; the others serve
// none. A runtime BMC's console is saved with it.
func TestConsole(t *testing.T) {
	for _, tc := range []consoleCase{
		{"asked for, offered", true, true, false, false, true},
		{"asked for, offered, wrapped", true, true, true, false, true},
		{"asked for at runtime", true, true, false, true, true},
		{"asked for, no concentrator", true, false, false, false, false},
		{"not asked for", false, true, false, false, false},
	} {
		t.Run(tc.name, tc.run)
	}
}

func (tc consoleCase) run(t *testing.T) {
	inv := newInventory("vm0")
	var mu sync.Mutex
	var asked []machine.Identity
	opts := Options{ConsoleURI: "telnet://127.0.0.1:13370", State: openState(t)}
	if tc.options {
		opts.Console = func(id machine.Identity) machine.SerialConsole {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, id)
			return stubConsole{uuid: id.UUID}
		}
	}
	if tc.wrap {
		opts.Wrap = func(m machine.Machine) machine.Machine { return instrumented{m} }
	}
	s := spec("vm0", 2)
	s.Console = tc.spec
	bm := tc.start(t, inv, s, opts)
	inv.mu.Lock()
	uri := inv.opts["vm0"].ConsoleURI
	inv.mu.Unlock()
	if want := map[bool]string{true: opts.ConsoleURI}[tc.want]; uri != want {
		t.Fatalf("the VM's serial port pointed at %q, want %q", uri, want)
	}
	sc, id := bm.Machine().SerialConsole(), bm.Info()
	mu.Lock()
	defer mu.Unlock()
	if !tc.want {
		if sc != nil || len(asked) != 0 {
			t.Fatalf("SerialConsole %v (asked for %v), want none", sc, asked)
		}
		return
	}
	if got, ok := sc.(stubConsole); !ok || got.uuid != id.UUID || id.UUID == "" || asked[0].Name != "vm0" {
		t.Fatalf("SerialConsole %#v, want vm0's (%s)", sc, id.UUID)
	}
}

// start runs a bridge with the BMC s, configured or (tc.rt) added at
// runtime and then saved with its console, and returns the BMC running.
func (tc consoleCase) start(t *testing.T, inv *fakeInventory, s Spec, opts Options) *BMC {
	t.Helper()
	if !tc.rt {
		bm := startFake(t, inv, []Spec{s}, opts).BMCs()[0]
		running(t, bm)
		return bm
	}
	bm, err := startFake(t, inv, nil, opts).Add(s)
	if err != nil {
		t.Fatal(err)
	}
	var sv saved
	if _, err := opts.State.Get(bmcPrefix+s.Address, &sv); err != nil || !sv.Spec.Console {
		t.Fatalf("saved %+v (%v): the console not kept", sv, err)
	}
	running(t, bm)
	return bm
}
