// Package boltfile opens the bbolt files of the embedded backends (the
// catalog, the stream and the regional replicas) in one way: the parent
// directory is created, a file locked by another process fails after a
// timeout with an error naming it, the buckets are created, and the layout's
// schema version is stored on first open and checked on every later one.
// Their read paths run through View, and their concurrent writers share
// commits through GroupCommit.
package boltfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultTimeout is how long Open waits for another process's lock.
const DefaultTimeout = time.Second

// MetaBucket holds the schema version, and whatever else a backend keeps
// about the file itself.
var MetaBucket = []byte("meta")

var keySchema = []byte("schema_version")

// Spec says what a file must hold.
type Spec struct {
	// Kind names the file in errors: "catalog", "stream", "replica".
	Kind string
	// Timeout is the lock wait; zero means DefaultTimeout.
	Timeout time.Duration
	// Buckets are created if missing (MetaBucket always is).
	Buckets [][]byte
	// Schema is the version of the backend's layout.
	Schema string
}

// Open opens (creating if needed) the bbolt file at path for spec.
func Open(path string, spec Spec) (*bbolt.DB, error) {
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open %s data file %s: %w", spec.Kind, path, err)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout, FreelistType: bbolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%s data file %s is locked by another process (waited %s): %w", spec.Kind, path, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s data file %s: %w", spec.Kind, path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range append([][]byte{MetaBucket}, spec.Buckets...) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(MetaBucket)
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte(spec.Schema))
		case string(v) != spec.Schema:
			return fmt.Errorf("schema version %q, this build reads %q", v, spec.Schema)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s data file %s: %w", spec.Kind, path, err)
	}
	return db, nil
}
