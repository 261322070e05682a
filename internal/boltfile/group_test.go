package boltfile

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"go.etcd.io/bbolt"
)

// TestGroupCommit: many concurrent writers, some of which fail. Each
// successful writer's effect is committed when it returns; each failing
// writer gets its own error and leaves nothing behind; the others are not
// disturbed by it; and the commits are shared.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	commits := 0
	g := NewGroupCommit(db)
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%02d-%03d", w, i)
				fail := (w+i)%7 == 0
				runs := 0
				err := g.Update(func(tx *bbolt.Tx) error {
					runs++
					if err := tx.Bucket([]byte("b")).Put([]byte(key), []byte("v")); err != nil {
						return err
					}
					if fail {
						return errors.New("refused " + key)
					}
					tx.OnCommit(func() { commits++ }) // commits run one at a time
					return nil
				})
				switch {
				case fail && (err == nil || err.Error() != "refused "+key):
					t.Errorf("%s: got %v, want its own error", key, err)
				case !fail && err != nil:
					t.Errorf("%s: %v", key, err)
				}
				// Durable (committed) when update returns: visible to a new
				// read transaction.
				var got []byte
				db.View(func(tx *bbolt.Tx) error {
					got = tx.Bucket([]byte("b")).Get([]byte(key))
					return nil
				})
				if fail != (got == nil) {
					t.Errorf("%s: stored %q after update returned %v", key, got, err)
				}
				if runs < 1 {
					t.Errorf("%s: fn never ran", key)
				}
			}
		})
	}
	wg.Wait()
	ok := 0
	db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket([]byte("b")).Stats().KeyN
		return nil
	})
	want := 0
	for w := range writers {
		for i := range each {
			if (w+i)%7 != 0 {
				want++
			}
		}
	}
	if ok != want {
		t.Errorf("%d keys stored, want %d", ok, want)
	}
	// OnCommit hooks run once per successful fn per committed transaction.
	if commits != want {
		t.Errorf("%d successful fns committed, want %d", commits, want)
	}
}
