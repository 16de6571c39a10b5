// Package state owns the bridge's state file: what must outlive a restart
// (boot overrides, BMCs added at runtime), kept as one JSON document of
// named entries. Every change rewrites the file atomically (a temporary
// file, fsync, rename, fsync of the directory), so a crash at any moment
// leaves either the previous or the new file, never a broken one; a failed
// write leaves the previous state in force, on disk and in memory.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/safedir"
)

// Store is a state file. It is safe for concurrent use.
type Store struct {
	path string
	mu   sync.Mutex
	data map[string]json.RawMessage
	// Damaged, when Open found the file unreadable as state, says where
	// it was moved and why; the store then starts empty.
	Damaged error
}

// Open reads the state file at path; a missing file is an empty state. A
// file that is not a state document (truncated by a full disk, edited by
// hand) is moved aside to path.damaged-TIMESTAMP and the store starts
// empty, with Damaged saying so: the daemon must still serve the BMCs of
// its configuration. Temporary files a crash left behind (they hold
// passwords) are removed. The directory must be safe (see safedir).
func Open(path string) (*Store, error) {
	if err := safedir.Ensure(filepath.Dir(path), "state directory"); err != nil {
		return nil, err
	}
	removeTemporaries(path)
	s := &Store{path: path, data: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(b, &s.data); err != nil {
		s.data = map[string]json.RawMessage{}
		aside := path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
		if mvErr := os.Rename(path, aside); mvErr != nil {
			return nil, fmt.Errorf("state file %s is damaged (%v) and cannot be moved aside: %w", path, err, mvErr)
		}
		s.Damaged = fmt.Errorf("state file %s was damaged (%v): moved to %s; runtime BMCs and boot overrides it held are lost, the configuration's BMCs serve", path, err, aside)
	}
	return s, nil
}

// removeTemporaries deletes what writeAtomic leaves when the process dies
// between creating its temporary file and renaming it.
func removeTemporaries(path string) {
	olds, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".*"))
	for _, f := range olds {
		_ = os.Remove(f)
	}
}

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// Get decodes the entry key into v and reports whether it exists.
func (s *Store) Get(key string, v any) (bool, error) {
	s.mu.Lock()
	raw, ok := s.data[key]
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("state %s: entry %q: %w", s.path, key, err)
	}
	return true, nil
}

// Keys lists the entries whose key starts with prefix, sorted.
func (s *Store) Keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return KeysWithPrefix(s.data, prefix)
}

// KeysWithPrefix lists the keys of m that start with prefix, sorted: what
// Keys answers. It is exported so that the stores tests put in a Store's
// place (in memory) answer Keys by the same rule.
func KeysWithPrefix[V any](m map[string]V, prefix string) []string {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Put sets the entry key to v and writes the file.
func (s *Store) Put(key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: entry %q: %w", key, err)
	}
	return s.update(func(d map[string]json.RawMessage) { d[key] = raw })
}

// Apply sets the entries of puts and removes those of deletes, writing
// the file once: a caller changing thousands of entries (enrolment at
// estate size) would otherwise rewrite the whole file for each.
func (s *Store) Apply(puts map[string]any, deletes []string) error {
	raws := make(map[string]json.RawMessage, len(puts))
	for k, v := range puts {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("state: entry %q: %w", k, err)
		}
		raws[k] = raw
	}
	return s.update(func(d map[string]json.RawMessage) {
		maps.Copy(d, raws)
		for _, k := range deletes {
			delete(d, k)
		}
	})
}

// Delete removes the entry key and writes the file.
func (s *Store) Delete(key string) error {
	return s.update(func(d map[string]json.RawMessage) { delete(d, key) })
}

// update applies change to a copy of the state, writes the copy, and only
// then makes it the state in memory.
func (s *Store) update(change func(map[string]json.RawMessage)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(s.data)
	change(next)
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	renamed, err := writeAtomic(s.path, append(b, '\n'))
	if renamed {
		// The new file is in place: it is the state now, even if making
		// the rename itself durable failed (some filesystems refuse to
		// fsync a directory).
		s.data = next
	}
	if err != nil && !renamed {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// writeAtomic replaces path with data so that readers, and a machine that
// crashes midway, see the old file or the new one.
// It reports whether the new file took the old one's place, which it has
// even when the final directory fsync fails.
func writeAtomic(path string, data []byte) (renamed bool, err error) {
	dir := filepath.Dir(path)
	if err := safedir.Ensure(dir, "state directory"); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer func() {
		if !renamed {
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return false, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	defer d.Close()
	return true, d.Sync()
}
