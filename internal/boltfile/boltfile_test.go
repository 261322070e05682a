package boltfile

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "x.db")
	spec := Spec{Kind: "stream", Schema: "1", Buckets: [][]byte{[]byte("a")}, Timeout: 50 * time.Millisecond}
	db, err := Open(path, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, spec); err == nil || !strings.Contains(err.Error(), "stream data file "+path+" is locked by another process") {
		t.Errorf("second open = %v, want a lock error naming the file", err)
	}
	db.Close()

	spec.Schema = "2"
	if _, err := Open(path, spec); err == nil || !strings.Contains(err.Error(), `schema version "1", this build reads "2"`) {
		t.Errorf("open with another schema = %v", err)
	}
	spec.Schema = "1"
	db, err = Open(path, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("a")) == nil || tx.Bucket(MetaBucket) == nil {
			t.Error("buckets missing")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
