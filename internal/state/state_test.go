package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type rec struct {
	Device string `json:"device"`
	N      int    `json:"n"`
}

func TestPutGetReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Get("boot/a", &rec{}); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	for i, k := range []string{"boot/a", "boot/b", "bmc/x"} {
		if err := s.Put(k, rec{Device: "pxe", N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete("boot/b"); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var r rec
	if ok, err := s2.Get("boot/a", &r); !ok || err != nil || r != (rec{"pxe", 0}) {
		t.Fatalf("reopened: %v %v %+v", ok, err, r)
	}
	if keys := s2.Keys("boot/"); len(keys) != 1 || keys[0] != "boot/a" {
		t.Fatalf("keys %v", keys)
	}
	onlyFile(t, filepath.Dir(path))
}

// A write that fails leaves the previous state, in memory and on disk.
func TestFailedWriteKeepsPrevious(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	s, _ := Open(path)
	if err := s.Put("k", rec{N: 1}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	// Make the rename fail: the target becomes a non-empty directory.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("k", rec{N: 2}); err == nil {
		t.Fatal("write into a directory succeeded")
	}
	var r rec
	if _, err := s.Get("k", &r); err != nil || r.N != 1 {
		t.Fatalf("memory changed by a failed write: %+v %v", r, err)
	}
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, before, 0o600); err != nil {
		t.Fatal(err)
	}
	onlyFile(t, dir)
}

// onlyFile fails the test unless dir holds one file, the state file: a
// write leaves no temporary behind (they hold passwords).
func onlyFile(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

// A damaged file is moved aside, said so, and the store starts empty and
// writable; temporaries left by a crash (they hold passwords) are gone.
func TestDamagedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, []byte("{\"k\": [1,"), 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".state.json.12345")
	if err := os.WriteFile(stale, []byte(`{"bmc/x":{"password":"secret"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Damaged == nil || !strings.Contains(s.Damaged.Error(), path+".damaged-") {
		t.Fatalf("Damaged = %v", s.Damaged)
	}
	if len(s.Keys("")) != 0 {
		t.Fatal("a damaged file's entries were kept")
	}
	aside, _ := filepath.Glob(path + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temporary: %v", err)
	}
	if err := s.Put("k", 1); err != nil {
		t.Fatal(err)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"boot/a":{"device":"pxe"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path)
		if err != nil {
			return
		}
		for _, k := range s.Keys("") {
			var v any
			_, _ = s.Get(k, &v)
		}
	})
}

// Apply writes many entries and removals at once, and a reopened store
// reads them.
func TestApply(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("gone", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(map[string]any{"a/1": "x", "a/2": "y"}, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if keys := again.Keys(""); len(keys) != 2 || keys[0] != "a/1" || keys[1] != "a/2" {
		t.Fatalf("keys after Apply: %v", keys)
	}
	if err := s.Apply(map[string]any{"bad": func() {}}, nil); err == nil {
		t.Fatal("an entry that does not marshal was written")
	}
}
