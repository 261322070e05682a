package boltfile

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var bucketView = []byte("v")

// openView opens a file with bucketView holding k=old. Its initial mmap is
// large enough that a commit never waits to remap behind a read
// transaction the test holds open.
func openView(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "view.db"), 0o600, &bbolt.Options{InitialMmapSize: 1 << 22})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket(bucketView)
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("old"))
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

func getK(tx *bbolt.Tx) (string, error) {
	return string(tx.Bucket(bucketView).Get([]byte("k"))), nil
}

func TestViewReturnsWhatFnReturns(t *testing.T) {
	t.Parallel()
	db := openView(t)
	got, err := View(context.Background(), db, func(tx *bbolt.Tx) (string, error) {
		if tx.Writable() {
			t.Error("fn ran in a writable transaction")
		}
		return getK(tx)
	})
	if err != nil || got != "old" {
		t.Errorf("View = %q, %v; want \"old\", nil", got, err)
	}
}

func TestViewPassesErrorsThrough(t *testing.T) {
	t.Parallel()
	db := openView(t)
	boom := errors.New("boom")
	got, err := View(context.Background(), db, func(tx *bbolt.Tx) (string, error) {
		return "partial", boom
	})
	if err != boom {
		t.Errorf("View error = %v, want fn's error itself", err)
	}
	if got != "" {
		t.Errorf("View value = %q with an error, want the zero value", got)
	}

	// A closed file: bbolt's error, and fn never runs.
	closed := openView(t)
	closed.Close()
	_, err = View(context.Background(), closed, func(tx *bbolt.Tx) (int, error) {
		t.Error("fn ran on a closed file")
		return 1, nil
	})
	if !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Errorf("View on a closed file = %v, want %v", err, berrors.ErrDatabaseNotOpen)
	}
}

func TestViewDoneContext(t *testing.T) {
	t.Parallel()
	db := openView(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline", expired, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := View(tc.ctx, db, func(tx *bbolt.Tx) (int, error) {
				t.Error("fn ran with a done ctx")
				return 1, nil
			})
			if err != tc.want || got != 0 {
				t.Errorf("View = %d, %v; want 0, %v", got, err, tc.want)
			}
		})
	}
	// A transaction was never started: none is left open either.
	if n := db.Stats().TxN; n != 0 {
		t.Errorf("%d read transactions started, want 0", n)
	}
}

// TestViewSnapshot: a commit made while fn runs is invisible to fn, which
// reads one snapshot from start to end; the next View sees it.
func TestViewSnapshot(t *testing.T) {
	t.Parallel()
	db := openView(t)
	type reads struct{ before, after string }
	got, err := View(context.Background(), db, func(tx *bbolt.Tx) (reads, error) {
		var r reads
		r.before, _ = getK(tx)
		committed := make(chan error)
		go func() {
			committed <- db.Update(func(w *bbolt.Tx) error { return w.Bucket(bucketView).Put([]byte("k"), []byte("new")) })
		}()
		if err := <-committed; err != nil {
			return r, err
		}
		r.after, _ = getK(tx)
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != (reads{"old", "old"}) {
		t.Errorf("fn read %+v around a commit, want old both times", got)
	}
	now, err := View(context.Background(), db, getK)
	if err != nil || now != "new" {
		t.Errorf("View after the commit = %q, %v; want \"new\"", now, err)
	}
}
