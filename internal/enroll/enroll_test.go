package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/bridge"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// source is a vCenter in memory: VMs by folder, tags by VM name; err
// makes it unreachable.
type source struct {
	mu    sync.Mutex
	vms   map[string][]VM // by folder
	tags  map[string]config.Tag
	err   error
	calls int
}

func (s *source) Matching(_ context.Context, f vsphere.Filter) ([]VM, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	if _, ok := s.vms[f.Folder]; !ok && f.Folder != "" {
		return nil, fmt.Errorf("folder %s not found: %w", f.Folder, machine.ErrInvalidArgument)
	}
	var out []VM
	for folder, vms := range s.vms {
		if f.Folder != "" && folder != f.Folder {
			continue
		}
		for _, vm := range vms {
			ok, _ := filepathMatch(f.Name, vm.Name)
			if (f.Name == "" || ok) && (f.Tag == config.Tag{} || s.tags[vm.Name] == f.Tag) {
				out = append(out, vm)
			}
		}
	}
	return out, nil
}

func filepathMatch(p, n string) (bool, error) { return filepath.Match(p, n) }

func (s *source) set(folder string, vms ...VM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vms[folder] = vms
}

// fleet records what is enrolled; taken are other BMCs' endpoints.
type fleet struct {
	mu       sync.Mutex
	enrolled map[string]bridge.Spec
	taken    map[int][]string
	bridged  map[string]bool
}

func newFleet() *fleet {
	return &fleet{enrolled: map[string]bridge.Spec{}, taken: map[int][]string{}, bridged: map[string]bool{}}
}

func (f *fleet) Enroll(s bridge.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.enrolled[s.Key()]; dup {
		return bridge.ErrInUse
	}
	f.enrolled[s.Key()] = s
	return nil
}

func (f *fleet) Unenroll(key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.enrolled[key]; !ok {
		return bridge.ErrUnknownBMC
	}
	delete(f.enrolled, key)
	return nil
}

func (f *fleet) Taken() map[int][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int][]string{}
	for p, h := range f.taken {
		out[p] = slices.Clone(h)
	}
	for _, s := range f.enrolled {
		if i := strings.LastIndexByte(s.Address, ':'); i > 0 {
			var p int
			fmt.Sscan(s.Address[i+1:], &p)
			out[p] = append(out[p], s.Address[:i])
		}
	}
	return out
}

func (f *fleet) Bridged(string) map[string]bool { return f.bridged }

// byVM is the enrolled specs by VM UUID.
func (f *fleet) byVM() map[string]bridge.Spec {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bridge.Spec{}
	for _, s := range f.enrolled {
		out[s.VM] = s
	}
	return out
}

// counter is an Observer.
type counter struct {
	mu                  sync.Mutex
	exhausted, enrolled int
}

func (c *counter) PoolExhausted(_ string, n int) { c.mu.Lock(); c.exhausted += n; c.mu.Unlock() }
func (c *counter) Enrolled(n int)                { c.mu.Lock(); c.enrolled = n; c.mu.Unlock() }

func rule(folder string, ports [2]int, addrs ...string) Rule {
	r := Rule{EnrollRule: config.EnrollRule{Where: "f.yaml:1", Folder: folder, Ports: ports, Username: "admin", Password: "pw", Grace: time.Minute}}
	for _, a := range addrs {
		r.Addresses = append(r.Addresses, netip.MustParseAddr(a))
	}
	return r
}

func vm(n int) VM {
	return VM{Name: fmt.Sprintf("vm-%d", n), UUID: fmt.Sprintf("4200000%d-0000-0000-0000-000000000000", n)}
}

type env struct {
	src   *source
	fleet *fleet
	store *state.Store
	clock *clienttest.Clock
	obs   *counter
	rules []Rule
}

func newEnv(t *testing.T, rules ...Rule) *env {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{src: &source{vms: map[string][]VM{}}, fleet: newFleet(), store: st, clock: clienttest.NewClock(), obs: &counter{}, rules: rules}
}

func (e *env) enroller() *Enroller {
	return New(Config{Rules: e.rules, Sources: map[string]Source{"": e.src}, Fleet: e.fleet, Store: e.store,
		Observer: e.obs, Log: slog.New(slog.DiscardHandler), Now: e.clock.Now})
}

// Matched VMs get endpoints in pool order, skipping taken ones (a BMC
// on every address takes the port for all), and keep them across a
// restart and a rename; a VM another BMC serves gets none.
func TestAssignAndKeep(t *testing.T) {
	e := newEnv(t, rule("/DC0/vm/ocp", [2]int{6230, 6232}, "127.0.0.1", "127.0.0.2"))
	e.fleet.taken[6231] = []string{"0.0.0.0"}
	e.fleet.bridged[strings.ToLower(vm(9).UUID)] = true
	e.src.set("/DC0/vm/ocp", vm(1), vm(2), vm(3), vm(9))
	e.enroller().Round(context.Background())
	got := e.fleet.byVM()
	want := map[string]string{vm(1).UUID: "127.0.0.1:6230", vm(2).UUID: "127.0.0.1:6232", vm(3).UUID: "127.0.0.2:6230"}
	if len(got) != 3 {
		t.Fatalf("enrolled %v", got)
	}
	for uuid, addr := range want {
		if s := got[strings.ToLower(uuid)]; s.Address != addr || s.Password != "pw" {
			t.Errorf("%s: %+v, want %s", uuid, s, addr)
		}
	}
	// A restart, vm-2 renamed: the same endpoints.
	e.fleet = newFleet()
	e.fleet.taken[6231] = []string{"0.0.0.0"}
	renamed := vm(2)
	renamed.Name = "renamed"
	e.src.set("/DC0/vm/ocp", vm(3), renamed, vm(1))
	e.enroller().Round(context.Background())
	for uuid, addr := range want {
		if s := e.fleet.byVM()[strings.ToLower(uuid)]; s.Address != addr {
			t.Errorf("after a restart %s: %s, want %s", uuid, s.Address, addr)
		}
	}
}

// A VM that stops matching keeps its BMC for the grace period, then loses
// it and its endpoint, which the next VM gets; one that comes back within
// the grace keeps its endpoint.
func TestGrace(t *testing.T) {
	e := newEnv(t, rule("/DC0/vm/ocp", [2]int{6230, 6230}, "127.0.0.1"))
	en := e.enroller()
	e.src.set("/DC0/vm/ocp", vm(1))
	en.Round(context.Background())
	e.src.set("/DC0/vm/ocp")
	en.Round(context.Background())
	e.clock.Advance(30 * time.Second)
	e.src.set("/DC0/vm/ocp", vm(1))
	en.Round(context.Background())
	e.src.set("/DC0/vm/ocp", vm(2))
	en.Round(context.Background())
	e.clock.Advance(59 * time.Second)
	en.Round(context.Background())
	if s, ok := e.fleet.byVM()[strings.ToLower(vm(1).UUID)]; !ok || s.Address != "127.0.0.1:6230" {
		t.Fatalf("within the grace: %v", e.fleet.byVM())
	}
	if e.obs.exhausted == 0 {
		t.Error("vm-2 found the one-port pool full, uncounted")
	}
	e.clock.Advance(2 * time.Second)
	en.Round(context.Background()) // vm-1 expires
	en.Round(context.Background()) // vm-2 gets the port
	if s, ok := e.fleet.byVM()[strings.ToLower(vm(2).UUID)]; !ok || s.Address != "127.0.0.1:6230" || len(e.fleet.byVM()) != 1 {
		t.Fatalf("after the grace: %v", e.fleet.byVM())
	}
}

// A vCenter that cannot be listed takes nobody's BMC however long it is
// away; a folder that is gone is no outage: its VMs expire.
func TestOutageKeepsBMCs(t *testing.T) {
	e := newEnv(t, rule("/DC0/vm/ocp", [2]int{6230, 6239}, "127.0.0.1"))
	en := e.enroller()
	e.src.set("/DC0/vm/ocp", vm(1))
	en.Round(context.Background())
	e.src.err = fmt.Errorf("vcenter: connection refused: %w", machine.ErrUnavailable)
	for range 3 {
		e.clock.Advance(time.Hour)
		en.Round(context.Background())
	}
	if len(e.fleet.byVM()) != 1 {
		t.Fatalf("an outage removed BMCs: %v", e.fleet.byVM())
	}
	e.src.err = nil
	delete(e.src.vms, "/DC0/vm/ocp")
	en.Round(context.Background())
	e.clock.Advance(2 * time.Minute)
	en.Round(context.Background())
	if len(e.fleet.byVM()) != 0 || e.obs.enrolled != 0 {
		t.Fatalf("the folder's VM kept its BMC: %v", e.fleet.byVM())
	}
	if keys := e.store.Keys(storePrefix); len(keys) != 0 {
		t.Fatalf("assignments left in the state: %v", keys)
	}
}

// The first matching rule wins; a Redfish-only rule takes no port; a
// derived password is per VM, stable and at most 20 bytes.
func TestRulesAndPasswords(t *testing.T) {
	redfish := rule("", [2]int{})
	redfish.Name, redfish.NoIPMI = "vm-*", true
	redfish.Password, redfish.PasswordSecret = "", []byte("0123456789abcdef-secret")
	e := newEnv(t, rule("/DC0/vm/ocp", [2]int{6230, 6239}, "127.0.0.1"), redfish)
	e.src.set("/DC0/vm/ocp", vm(1))
	e.src.set("/DC0/vm/other", vm(2))
	e.enroller().Round(context.Background())
	got := e.fleet.byVM()
	if got[strings.ToLower(vm(1).UUID)].Address != "127.0.0.1:6230" {
		t.Errorf("vm-1 (both rules match): %+v", got[strings.ToLower(vm(1).UUID)])
	}
	s := got[strings.ToLower(vm(2).UUID)]
	if !s.NoIPMI || s.Address != "" || len(s.Password) != 20 || s.Password != Password(redfish.PasswordSecret, strings.ToUpper(vm(2).UUID)) {
		t.Errorf("vm-2 (Redfish-only, derived password): %+v", s)
	}
	if Password(redfish.PasswordSecret, vm(1).UUID) == s.Password {
		t.Error("two VMs derived the same password")
	}
}

// A thousand new VMs are assigned in one round, each a distinct port.
func TestManyAtOnce(t *testing.T) {
	e := newEnv(t, rule("", [2]int{20000, 20999}, "127.0.0.1"))
	e.rules[0].Name = "*"
	var vms []VM
	for i := range 1000 {
		vms = append(vms, VM{Name: fmt.Sprintf("vm-%04d", i), UUID: fmt.Sprintf("42000000-0000-0000-0000-%012d", i)})
	}
	e.src.set("", vms...)
	e.enroller().Round(context.Background())
	seen := map[string]bool{}
	for _, s := range e.fleet.byVM() {
		if seen[s.Address] {
			t.Fatalf("%s given twice", s.Address)
		}
		seen[s.Address] = true
	}
	if len(seen) != 1000 {
		t.Fatalf("%d enrolled", len(seen))
	}
}

// fullDisk is a store whose writes fail while full, as on a full disk.
type fullDisk struct {
	*state.Store
	full bool
}

func (d *fullDisk) Apply(puts map[string]any, deletes []string) error {
	if d.full {
		return errors.New("write state.json: no space left on device")
	}
	return d.Store.Apply(puts, deletes)
}

// A state file that cannot be written (a full disk) costs no VM its BMC:
// the round enrols from memory, logs the failure once, and writes the
// assignment at a later round once the disk has room, with nothing else
// changing meanwhile.
func TestFullDiskStillEnrols(t *testing.T) {
	e := newEnv(t, rule("/DC0/vm/ocp", [2]int{6230, 6239}, "127.0.0.1"))
	e.src.set("/DC0/vm/ocp", vm(1))
	disk := &fullDisk{Store: e.store, full: true}
	var logs clienttest.Buffer
	en := New(Config{Rules: e.rules, Sources: map[string]Source{"": e.src}, Fleet: e.fleet, Store: disk,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: e.clock.Now})
	en.Round(context.Background())
	en.Round(context.Background())
	if s, ok := e.fleet.byVM()[strings.ToLower(vm(1).UUID)]; !ok || s.Address != "127.0.0.1:6230" {
		t.Fatalf("with the state unwritable: %v", e.fleet.byVM())
	}
	if n := strings.Count(logs.String(), "assignments not saved"); n != 1 {
		t.Errorf("the failure logged %d times:\n%s", n, logs.String())
	}
	disk.full = false
	en.Round(context.Background())
	if keys := e.store.Keys(storePrefix); len(keys) != 1 {
		t.Fatalf("after the disk has room: saved %v", keys)
	}
}

// A tag rule matches the VMs carrying the tag; templates make each BMC's
// user and password from the VM's name at its first enrolment (a rename,
// and a restart after it, change neither) and its UUID; a VM whose
// template fails keeps its endpoint unenrolled and is logged once.
func TestTagsAndTemplates(t *testing.T) {
	r := rule("", [2]int{6230, 6239}, "127.0.0.1")
	r.Tag, r.Password = config.Tag{Category: "cluster", Name: "skinner"}, ""
	r.UsernameTemplate = template.Must(template.New("u").Parse(`{{.Name}}`))
	r.PasswordTemplate = template.Must(template.New("p").Parse(`pw-{{slice .UUID 0 8}}-{{.Name}}`))
	e := newEnv(t, r)
	long := VM{Name: "a-name-too-long-for-a-password", UUID: "42000009-0000-0000-0000-000000000000"}
	e.src.set("", vm(1), vm(2), long)
	e.src.tags = map[string]config.Tag{"vm-1": r.Tag, long.Name: r.Tag}
	var logs clienttest.Buffer
	en := New(Config{Rules: e.rules, Sources: map[string]Source{"": e.src}, Fleet: e.fleet, Store: e.store,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: e.clock.Now})
	en.Round(context.Background())
	en.Round(context.Background())
	got := e.fleet.byVM()
	s, ok := got[strings.ToLower(vm(1).UUID)]
	if len(got) != 1 || !ok || s.Username != "vm-1" || s.Password != "pw-42000001-vm-1" {
		t.Fatalf("enrolled %+v, want vm-1 alone, user vm-1", got)
	}
	if n := strings.Count(logs.String(), "u gives 30 bytes for VM "+long.Name); n != 1 {
		t.Errorf("the failing template logged %d times:\n%s", n, logs.String())
	}
	renamed := vm(1)
	renamed.Name = "renamed"
	e.src.set("", renamed)
	e.src.tags = map[string]config.Tag{"renamed": r.Tag}
	e.fleet = newFleet()
	e.enroller().Round(context.Background()) // a restart
	if s := e.fleet.byVM()[strings.ToLower(vm(1).UUID)]; s.Username != "vm-1" || s.Password != "pw-42000001-vm-1" {
		t.Errorf("after a rename and a restart: %+v", s)
	}
}

// BenchmarkRound is a round over 10,000 enrolled VMs where nothing
// changed: the estate's idle cost of enrolment, beside the fleet's and
// the source's own (here in memory).
func BenchmarkRound(b *testing.B) {
	st, err := state.Open(filepath.Join(b.TempDir(), "state.json"))
	if err != nil {
		b.Fatal(err)
	}
	r := rule("", [2]int{20000, 29999}, "127.0.0.1")
	r.Name = "*"
	src := &source{vms: map[string][]VM{}}
	var vms []VM
	for i := range 10000 {
		vms = append(vms, VM{Name: fmt.Sprintf("vm-%05d", i), UUID: fmt.Sprintf("42000000-0000-0000-0000-%012d", i)})
	}
	src.set("", vms...)
	en := New(Config{Rules: []Rule{r}, Sources: map[string]Source{"": src}, Fleet: newFleet(), Store: st, Log: slog.New(slog.DiscardHandler)})
	en.Round(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		en.Round(context.Background())
	}
}

// Why a rule lists nothing (a folder gone, vCenter away) is logged once
// however many rounds it lasts, and its end once.
func TestReasonsLoggedOnce(t *testing.T) {
	e := newEnv(t, rule("/DC0/vm/ocp", [2]int{6230, 6239}, "127.0.0.1"))
	var logs clienttest.Buffer
	en := New(Config{Rules: e.rules, Sources: map[string]Source{"": e.src}, Fleet: e.fleet, Store: e.store,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: e.clock.Now})
	for range 3 {
		en.Round(context.Background())
	}
	e.src.err = fmt.Errorf("vcenter: connection refused: %w", machine.ErrUnavailable)
	for range 3 {
		en.Round(context.Background())
	}
	e.src.err = nil
	e.src.set("/DC0/vm/ocp", vm(1))
	for range 3 {
		en.Round(context.Background())
	}
	for msg, want := range map[string]int{"matches nothing": 1, "VMs not listed": 1, "lists VMs again": 1, "level=INFO msg=enrolled": 1} {
		if n := strings.Count(logs.String(), msg); n != want {
			t.Errorf("%q logged %d times, want %d:\n%s", msg, n, want, logs.String())
		}
	}
}

// A VM moved from a Redfish-only rule's folder to an IPMI rule's (and
// back) loses the BMC of the old kind and gets one of the new.
func TestKindChange(t *testing.T) {
	redfish := rule("/DC0/vm/lab", [2]int{})
	redfish.NoIPMI = true
	e := newEnv(t, redfish, rule("/DC0/vm/ocp", [2]int{6230, 6239}, "127.0.0.1"))
	en := e.enroller()
	for _, folder := range []string{"/DC0/vm/lab", "/DC0/vm/ocp", "/DC0/vm/lab"} {
		e.src.vms = map[string][]VM{"/DC0/vm/lab": nil, "/DC0/vm/ocp": nil}
		e.src.set(folder, vm(1))
		en.Round(context.Background())
		got := e.fleet.byVM()
		ipmi := folder == "/DC0/vm/ocp"
		if s := got[strings.ToLower(vm(1).UUID)]; len(e.fleet.enrolled) != 1 || s.NoIPMI == ipmi || (s.Address != "") != ipmi {
			t.Fatalf("in %s: %v", folder, e.fleet.enrolled)
		}
	}
}
