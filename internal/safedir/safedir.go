// Package safedir owns the rule for the directories that hold the bridge's
// secrets and its control socket (the state directory, the management
// socket's directory): the daemon creates them 0700, and one that already
// exists must be a real directory owned by the daemon's user that nobody
// else can write to. Otherwise a local user who created it first (under
// /tmp, say) could replace the socket and receive the password of the next
// `bmc add`, or swap the state file.
package safedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Ensure creates dir (and its parents) with mode 0700 if it does not
// exist, and otherwise checks that it is safe. what names the directory's
// role in errors, e.g. "management socket directory".
func Ensure(dir, what string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("%s %s: %w", what, dir, err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	return check(dir, what, fi)
}

func check(dir, what string, fi fs.FileInfo) error {
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory (a symbolic link or a file is refused); remove it or choose another path", what, dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s %s belongs to uid %d, not to this process (uid %d): another user could replace what is in it; remove it or choose another path", what, dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s %s is writable by group or others (mode %04o): another user could replace what is in it; chmod go-w %s, or choose another path", what, dir, fi.Mode().Perm(), dir)
	}
	return nil
}
