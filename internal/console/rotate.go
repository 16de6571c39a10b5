package console

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// RotatingWriter appends to a file and, when the next write would take it
// past a size, renames it to file.1 (file.1 to file.2, and so on, the
// oldest beyond keep removed) and starts a new one: a VM printing in a
// loop fills a bounded amount of disk. It suits Config.Persist.
type RotatingWriter struct {
	mu   sync.Mutex
	path string
	max  int64
	keep int
	f    *os.File
	size int64
}

// OpenRotating opens path for appending. maxBytes bounds each file, keep
// the rotated files kept beside it. Files are created 0600: a console
// shows what is typed at it, passwords at a prompt that echoes included.
func OpenRotating(path string, maxBytes int64, keep int) (*RotatingWriter, error) {
	if maxBytes <= 0 || keep < 0 {
		return nil, fmt.Errorf("console: log rotation needs a positive size and a non-negative count, got %d and %d", maxBytes, keep)
	}
	w := &RotatingWriter{path: path, max: maxBytes, keep: keep}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *RotatingWriter) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would not fit. A p larger than
// the size limit is written whole to a fresh file.
func (w *RotatingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, os.ErrClosed
	}
	if w.size > 0 && w.size+int64(len(p)) > w.max {
		if err := w.rotate(); w.f == nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

// rotate shifts the files; it reopens the log even if a rename failed,
// so a log never stops for a rotation that went wrong once.
func (w *RotatingWriter) rotate() error {
	closeErr := w.f.Close()
	w.f = nil
	name := func(i int) string {
		if i == 0 {
			return w.path
		}
		return fmt.Sprintf("%s.%d", w.path, i)
	}
	errs := []error{closeErr}
	if err := os.Remove(name(w.keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for i := w.keep - 1; i >= 0; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := w.open(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	return errors.Join(errs...)
}

// Close closes the current file.
func (w *RotatingWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
