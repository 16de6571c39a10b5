package console

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// reopenInterval spaces the tries to reopen a log that could not be: a
// full disk or a missing directory is not hammered with a try per chunk
// of output, and output is dropped meanwhile rather than held.
const reopenInterval = time.Second

// RotatingWriter appends to a file and, when the next write would take it
// past a size, renames it to file.1 (file.1 to file.2, and so on, the
// oldest beyond keep removed) and starts a new one: a VM printing in a
// loop fills a bounded amount of disk. It suits Config.Persist. A log
// that cannot be reopened after a rotation (its directory removed, the
// disk full) drops output, with an error, and is tried again later, so a
// log stops only for as long as its cause lasts.
type RotatingWriter struct {
	mu   sync.Mutex
	path string
	max  int64
	keep int
	f    *os.File
	size int64
	// closed: Close was called; no write reopens the file.
	closed bool
	// openErr is why the file is not open (f nil, not closed), and
	// retryAt when it is tried again.
	openErr error
	retryAt time.Time
	now     func() time.Time
}

// OpenRotating opens path for appending. maxBytes bounds each file, keep
// the rotated files kept beside it. Files are created 0600: a console
// shows what is typed at it, passwords at a prompt that echoes included.
func OpenRotating(path string, maxBytes int64, keep int) (*RotatingWriter, error) {
	if maxBytes <= 0 || keep < 0 {
		return nil, fmt.Errorf("console: log rotation needs a positive size and a non-negative count, got %d and %d", maxBytes, keep)
	}
	w := &RotatingWriter{path: path, max: maxBytes, keep: keep, now: time.Now}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// open opens the file; a failure is remembered, for Write to say why it
// drops output and when it tries again.
func (w *RotatingWriter) open() error {
	f, size, err := openAppend(w.path)
	if err != nil {
		w.openErr, w.retryAt = err, w.now().Add(reopenInterval)
		return err
	}
	w.f, w.size, w.openErr = f, size, nil
	return nil
}

// openAppend opens path for appending, creating it, and returns its size.
func openAppend(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// reopen opens the file again after it could not be, unless the last try
// was under reopenInterval ago.
func (w *RotatingWriter) reopen() error {
	if !w.now().Before(w.retryAt) && w.open() == nil {
		return nil
	}
	return fmt.Errorf("console: log output dropped: %w", w.openErr)
}

// Write appends p, rotating first if p would not fit. A p larger than
// the size limit is written whole to a fresh file. While the file cannot
// be opened, p is dropped and Write fails at once.
func (w *RotatingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, os.ErrClosed
	}
	if w.f == nil {
		if err := w.reopen(); err != nil {
			return 0, err
		}
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

// Close closes the current file; later writes fail with os.ErrClosed.
func (w *RotatingWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
