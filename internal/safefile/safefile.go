// Package safefile creates the files tools write for their users (exports,
// checkpoints) so that another local user can neither read them nor
// redirect them: new files are created 0600 with O_EXCL and O_NOFOLLOW (a
// file or symbolic link already at the path is an error naming it, never
// followed or truncated), existing ones are reopened only if they are
// regular files, and a finished file takes its final name by a rename that
// replaces an existing file only when asked to.
//
// Unix only (O_NOFOLLOW).
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Create creates path, which must not exist, for writing, mode 0600.
func Create(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s exists already (a file or a symbolic link): remove it or choose another name", path)
	}
	return f, err
}

// OpenExisting opens path, which must be a regular file (not a symbolic
// link), for writing, and makes it mode 0600.
func OpenExisting(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: refusing to follow it", path)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads path, which must be a regular file, not a symbolic link.
func ReadFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: refusing to follow it", path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	return io.ReadAll(f)
}

// Rename gives the finished file from its final name to. Without replace,
// an existing to is an error naming it (hard link then unlink: no window in
// which another file at to is overwritten); with replace, to is replaced
// atomically (a symbolic link at to is replaced, not followed).
func Rename(from, to string, replace bool) error {
	if replace {
		return os.Rename(from, to)
	}
	if err := os.Link(from, to); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists already: pass --force to replace it", to)
		}
		return err
	}
	return os.Remove(from)
}

// WriteAtomic replaces path by data: written to a new temporary file (0600,
// O_EXCL) beside it, synced, then renamed over path. The directory is made
// 0700 if missing.
func WriteAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
