package console

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// waitConsole waits for the console of uuid to be connected.
func waitConsole(t testing.TB, tc *testConc, uuid string) *Console {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c := tc.Lookup(uuid); c != nil && c.Connected() {
			return c
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no connected console for %s", uuid)
	return nil
}

func TestIdentification(t *testing.T) {
	tests := []struct {
		name     string
		vm       fakeVM
		timeout  time.Duration
		lookup   []string
		want     Identity
		dontFind string
	}{
		{
			name:   "host answers every question",
			vm:     vmA,
			lookup: []string{vmAInstance, vmABIOS, strings.ToUpper(vmABIOS), "421a2b3c4d5e6f708192a3b4c5d6e7f8"},
			want:   Identity{InstanceUUID: vmAInstance, BIOSUUID: vmABIOS, Name: "vm-a", LocationUUID: "564d0000-0000-0000-0000-000000000001"},
		},
		{
			name:     "host that knows no BIOS or location UUID says so",
			vm:       fakeVM{instance: vmA.instance, name: "old", silent: []byte{getVMBIOSUUID, getVMLocationUUID}},
			lookup:   []string{vmAInstance},
			want:     Identity{InstanceUUID: vmAInstance, Name: "old"},
			dontFind: vmABIOS,
		},
		{
			name:    "host that answers nothing but volunteers its UUID is kept at the deadline",
			vm:      fakeVM{mute: true},
			timeout: 200 * time.Millisecond,
			lookup:  []string{vmABIOS},
			want:    Identity{BIOSUUID: vmABIOS},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, Config{IdentifyTimeout: tt.timeout})
			h := dialHost(t, tc.addr, tt.vm)
			if tt.vm.mute {
				h.send(vmBIOSUUID, []byte(vmA.bios))
			}
			ev := tc.waitEvent(t, EventConnected)
			if ev.Identity != tt.want {
				t.Errorf("event identity %+v, want %+v", ev.Identity, tt.want)
			}
			if ev.Conn.Direction != 'S' || ev.Conn.ServiceURI != "vSPC.py" {
				t.Errorf("event conn %+v, want direction S and URI vSPC.py", ev.Conn)
			}
			checkLookups(t, tc, ev.Console, tt.lookup, tt.dontFind)
			// Answers come in the order of the host's requests.
			known := h.waitExt(knownSuboptions2)
			if !slices.Equal(known, ourSuboptions) {
				t.Errorf("KNOWN-SUBOPTIONS-2 %v, want %v", known, ourSuboptions)
			}
			h.waitExt(willProxy)
		})
	}
}

func checkLookups(t *testing.T, tc *testConc, c *Console, find []string, dontFind string) {
	t.Helper()
	for _, u := range find {
		if got := tc.Lookup(u); got != c {
			t.Errorf("Lookup(%q) = %p, want the console %p", u, got, c)
		}
	}
	if dontFind != "" && tc.Lookup(dontFind) != nil {
		t.Errorf("Lookup(%q) found a console", dontFind)
	}
}

func TestDataFlow(t *testing.T) {
	tests := []struct {
		name      string
		printed   string // by the VM
		seen      string // by a reader
		typed     string // at the console
		delivered string // to the VM
	}{
		{"text", "login: ", "login: ", "root\r", "root\r"},
		{"IAC both ways", "a\xffb\xff\xff", "a\xffb\xff\xff", "\xff\xfe\xfd", "\xff\xfe\xfd"},
		{"CR alone and binary bytes", "x\r\x00y\x00", "x\r\x00y\x00", "\r\x00\x01", "\r\x00\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, Config{})
			h := dialHost(t, tc.addr, vmA)
			c := waitConsole(t, tc, vmAInstance)
			sub := c.Subscribe(true)
			defer sub.Close()
			h.print(tt.printed)
			if got := readUntil(t, sub, tt.seen); got != tt.seen {
				t.Errorf("reader got %q, want %q", got, tt.seen)
			}
			if _, err := c.Write([]byte(tt.typed)); err != nil {
				t.Fatal(err)
			}
			if got := h.waitKeys(tt.delivered); got != tt.delivered {
				t.Errorf("host got %q, want %q", got, tt.delivered)
			}
			st := c.Stats()
			if st.BytesIn != uint64(len(tt.seen)) || st.BytesOut != uint64(len(tt.typed)) || st.Connections != 1 {
				t.Errorf("stats %+v, want %d in, %d out, 1 connection", st, len(tt.seen), len(tt.typed))
			}
		})
	}
}

func TestOutputBeforeIdentificationIsKept(t *testing.T) {
	tc := startConc(t, Config{})
	// The host prints before it is asked anything: BIOS output at power-on.
	h := dialHost(t, tc.addr, vmA, appendEscaped(nil, []byte("SeaBIOS\r\n"), true))
	c := waitConsole(t, tc, vmAInstance)
	h.print("kernel\r\n")
	sub := c.Subscribe(true)
	defer sub.Close()
	if got := readUntil(t, sub, "kernel"); got != "SeaBIOS\r\nkernel\r\n" {
		t.Errorf("log %q, want the early output first", got)
	}
}

func TestReconnectKeepsLog(t *testing.T) {
	tc := startConc(t, Config{})
	h1 := dialHost(t, tc.addr, vmA)
	c := waitConsole(t, tc, vmAInstance)
	h1.print("first boot\r\n")
	readUntil(t, c.Subscribe(true), "first boot")
	h1.conn.Close()
	tc.waitEvent(t, EventDisconnected)
	if c.Connected() {
		t.Error("Connected() after the host closed")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Write while disconnected: %v, want ErrNotConnected", err)
	}
	h2 := dialHost(t, tc.addr, vmA)
	if got := waitConsole(t, tc, vmAInstance); got != c {
		t.Fatal("the reconnected VM got a new console")
	}
	h2.print("second boot\r\n")
	got := readUntil(t, c.Subscribe(true), "second boot")
	if got != "first boot\r\nsecond boot\r\n" {
		t.Errorf("log %q, want both boots", got)
	}
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	h2.waitKeys("y")
	want := []EventKind{EventConnected, EventDisconnected, EventConnected}
	if k := tc.kinds(); !slices.Equal(k, want) {
		t.Errorf("events %v, want %v", k, want)
	}
}

func TestTwoVMsStayApart(t *testing.T) {
	tc := startConc(t, Config{})
	ha, hb := dialHost(t, tc.addr, vmA), dialHost(t, tc.addr, vmB)
	ca, cb := waitConsole(t, tc, vmAInstance), waitConsole(t, tc, NormalizeUUID(vmB.instance))
	if ca == cb {
		t.Fatal("two VMs share a console")
	}
	subA, subB := ca.Subscribe(true), cb.Subscribe(true)
	ha.print("from a")
	hb.print("from b")
	readUntil(t, subA, "from a")
	readUntil(t, subB, "from b")
	cb.Write([]byte("to b"))
	hb.waitKeys("to b")
	ha.noKeys(50 * time.Millisecond)
	if n := len(tc.Consoles()); n != 2 {
		t.Errorf("%d consoles, want 2", n)
	}
}

func TestMatchingByUUIDs(t *testing.T) {
	clone := fakeVM{instance: "50 ff 00 00 00 00 00 00-00 00 00 00 00 00 00 0c", bios: vmA.bios, name: "clone"}
	// A host that gives only the BIOS UUID of a VM whose console knows
	// its instance UUID is refused: see TestIdentityTakeover.
	tests := []struct {
		name     string
		second   fakeVM
		same     bool
		biosFind string // the instance UUID of the console Lookup(BIOS) finds
	}{
		{"a clone sharing the BIOS UUID gets its own console", clone, false, NormalizeUUID(clone.instance)},
		{"a second connection of the VM joins its console", vmA, true, vmAInstance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConc(t, Config{})
			dialHost(t, tc.addr, vmA)
			first := tc.waitEvent(t, EventConnected).Console
			dialHost(t, tc.addr, tt.second)
			var second *Console
			if tt.same {
				deadline := time.Now().Add(5 * time.Second)
				for first.Stats().Connections != 2 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				second = first
			} else {
				second = tc.waitEvent(t, EventConnected).Console
			}
			if (first == second) != tt.same || first.Stats().Connections != map[bool]uint64{true: 2, false: 1}[tt.same] {
				t.Fatalf("same console %v (connections %d), want %v", first == second, first.Stats().Connections, tt.same)
			}
			if got := tc.Lookup(vmABIOS).Identity().InstanceUUID; got != tt.biosFind {
				t.Errorf("Lookup(BIOS UUID) found %s, want %s", got, tt.biosFind)
			}
			if info, ok := second.Conn(); !ok || info.Direction != 'S' {
				t.Errorf("Conn() = %+v, %v", info, ok)
			}
		})
	}
}

func TestEventKindString(t *testing.T) {
	tests := []struct {
		kind EventKind
		want string
	}{
		{EventConnected, "connected"},
		{EventDisconnected, "disconnected"},
		{EventMigrated, "migrated"},
		{EventMigrationAborted, "migration aborted"},
		{EventKind(9), "EventKind(9)"},
	}
	for _, tt := range tests {
		if got := tt.kind.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", int(tt.kind), got, tt.want)
		}
	}
}
