package console

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
)

func TestRotatingWriter(t *testing.T) {
	tests := []struct {
		name   string
		max    int64
		keep   int
		writes []string
		want   map[string]string // file suffix → content
	}{
		{"fits", 10, 2, []string{"abc", "def"}, map[string]string{"": "abcdef"}},
		{"rotates", 5, 2, []string{"abc", "def", "gh"}, map[string]string{"": "defgh", ".1": "abc"}},
		{"drops the oldest", 3, 2, []string{"aaa", "bbb", "ccc", "ddd"}, map[string]string{"": "ddd", ".1": "ccc", ".2": "bbb", ".3": ""}},
		{"oversized write gets its own file", 4, 1, []string{"ab", "cdefgh", "i"}, map[string]string{"": "i", ".1": "cdefgh", ".2": ""}},
		{"keep 0 truncates", 3, 0, []string{"aaa", "bbb"}, map[string]string{"": "bbb", ".1": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vm.log")
			w, err := OpenRotating(path, tt.max, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			for suffix, want := range tt.want {
				got, err := os.ReadFile(path + suffix)
				if want == "" {
					if !os.IsNotExist(err) {
						t.Errorf("%s exists (%q), want none", suffix, got)
					}
					continue
				}
				if string(got) != want {
					t.Errorf("file%s = %q (%v), want %q", suffix, got, err, want)
				}
			}
		})
	}
}

func TestRotatingWriterAppendsAndIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.log")
	for _, s := range []string{"one ", "two"} {
		w, err := OpenRotating(path, 100, 1)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(s))
		w.Close()
	}
	got, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(got) != "one two" || st.Mode().Perm() != 0o600 {
		t.Errorf("file %q mode %v, want both writes, 0600", got, st.Mode().Perm())
	}
	if _, err := OpenRotating(path, 0, 1); err == nil {
		t.Error("OpenRotating accepted a zero size")
	}
}

// closingBuffer is a Persist writer the test can read while the
// concentrator writes, and that records being closed.
type closingBuffer struct {
	clienttest.Buffer
	closed atomic.Bool
}

func (l *closingBuffer) Close() error {
	l.closed.Store(true)
	return nil
}

func TestPersist(t *testing.T) {
	logs := map[string]*closingBuffer{}
	var mu sync.Mutex
	tc := startConc(t, Config{Persist: func(id Identity) (io.Writer, error) {
		mu.Lock()
		defer mu.Unlock()
		logs[id.InstanceUUID] = &closingBuffer{}
		return logs[id.InstanceUUID], nil
	}})
	h := dialHost(t, tc.addr, vmA, appendEscaped(nil, []byte("early "), true))
	waitConsole(t, tc, vmAInstance)
	h.print("late")
	mu.Lock()
	l := logs[vmAInstance]
	mu.Unlock()
	if !l.Await("early late") || l.String() != "early late" {
		t.Errorf("log file got %q, want %q", l.String(), "early late")
	}
	if tc.Remove(vmABIOS) != true || tc.Lookup(vmAInstance) != nil {
		t.Fatal("Remove kept the console")
	}
	clienttest.Eventually(t, "the log writer closed with the console", l.closed.Load)
	if !h.closed() {
		t.Error("the removed VM's host connection left open")
	}
}

// A log that cannot be reopened after a rotation drops output, without
// blocking, and is reopened once it can be, tried at most once a second.
func TestRotatingWriterRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vm.log")
	w, err := OpenRotating(path, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Unix(1000, 0)
	w.now = func() time.Time { return now }
	write := func(s string, ok bool) {
		t.Helper()
		n, err := w.Write([]byte(s))
		if (err == nil) != ok || ok && n != len(s) {
			t.Fatalf("Write(%q) = %d, %v; want success %v", s, n, err, ok)
		}
	}
	write("abc", true)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	write("def", false) // the rotation it needs cannot reopen the log
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now = now.Add(500 * time.Millisecond)
	write("ghi", false) // dropped: too soon to try again
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the log was reopened within a second of failing: %v", err)
	}
	now = now.Add(600 * time.Millisecond)
	write("jkl", true)
	write("mn", true)
	if got, err := os.ReadFile(path); string(got) != "jklmn" {
		t.Errorf("log %q (%v), want the output written once it could be", got, err)
	}
	w.Close()
	now = now.Add(time.Hour)
	if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
}
