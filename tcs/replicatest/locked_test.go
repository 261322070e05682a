package replicatest

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
)

func openLocked(t *testing.T) *LockedReplica {
	t.Helper()
	path := filepath.Join(TempDir(t), "replica.db")
	r, err := boltreplica.Open(path, boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := NewLockedReplica(path, r)
	t.Cleanup(func() { l.Close() })
	return l
}

// TestLockedReplicaConforms: the wrapper passes every call through, so it
// passes the suites its replica does.
func TestLockedReplicaConforms(t *testing.T) {
	t.Parallel()
	open := func(t *testing.T) tcs.Replica { return openLocked(t) }
	t.Run("Run", func(t *testing.T) { t.Parallel(); Run(t, open) })
	t.Run("RunScanner", func(t *testing.T) { t.Parallel(); RunScanner(t, open) })
}

func isNotFound(err error) bool {
	var e *tenant.Error
	return errors.As(err, &e) && e.Code == tenant.NotFound
}

// TestLockedReplicaEdit: an edit changes the file under calls that go on
// meanwhile, none of which finds the replica closed.
func TestLockedReplicaEdit(t *testing.T) {
	t.Parallel()
	l := openLocked(t)
	ctx := testwait.Context(t)
	if _, err := l.Apply(ctx, Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads sync.Map // reader → calls made so far
	for i := range 4 {
		wg.Go(func() {
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := l.LookupHostname(ctx, "acme.example.com"); err != nil && !isNotFound(err) {
					t.Errorf("lookup during edits: %v", err)
					return
				}
				if _, _, err := l.ScanDocs(ctx, "", 10); err != nil {
					t.Errorf("scan during edits: %v", err)
					return
				}
				reads.Store(i, n)
			}
		})
	}
	testwait.For(t, "every reader to be reading", func() bool {
		n := 0
		reads.Range(func(_, _ any) bool { n++; return true })
		return n == 4
	})
	for range 5 {
		l.Edit(t, func(docs, hosts *bbolt.Bucket) error { return nil })
	}
	l.Edit(t, func(docs, _ *bbolt.Bucket) error { return docs.Delete([]byte("acme")) })
	close(stop)
	wg.Wait()

	if _, err := l.GetTenant(ctx, "acme"); !isNotFound(err) {
		t.Errorf("GetTenant after the edit deleted it = %v, want NotFound", err)
	}
	if _, err := l.LookupHostname(ctx, "acme.example.com"); !isNotFound(err) {
		t.Errorf("LookupHostname of a hostname whose tenant the edit deleted = %v, want NotFound", err)
	}
	if err := l.Ping(ctx); err != nil {
		t.Errorf("Ping after the edits: %v", err)
	}
}

func TestLockedReplicaEditFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	err = editFile(path, func(_, _ *bbolt.Bucket) error { t.Error("f ran on a file without the buckets"); return nil })
	if err == nil || !strings.Contains(err.Error(), "not the layout of package boltreplica") {
		t.Errorf("editing a file without the buckets = %v, want an error naming the layout", err)
	}

	boom := errors.New("boom")
	l := openLocked(t)
	l.Close()
	if err := editFile(l.path, func(_, _ *bbolt.Bucket) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("editFile = %v, want f's error", err)
	}
}

// TestLockedReplicaStallApplies: a stalled replica holds applies back and
// serves reads; resumed, the held apply lands.
func TestLockedReplicaStallApplies(t *testing.T) {
	t.Parallel()
	l := openLocked(t)
	ctx := testwait.Context(t)
	resume := l.StallApplies()
	applied := make(chan error, 1)
	go func() {
		_, err := l.ApplyBatch(ctx, []*tenant.ChangeEvent{Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)})
		applied <- err
	}()
	if _, err := l.GetTenant(ctx, "acme"); !isNotFound(err) {
		t.Fatalf("GetTenant while stalled = %v, want NotFound", err)
	}
	// Nothing to wait for: an apply that is held back does nothing.
	select {
	case err := <-applied:
		t.Fatalf("ApplyBatch returned (%v) while applies were stalled", err)
	case <-time.After(100 * time.Millisecond):
	}
	resume()
	resume() // a second resume does nothing
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if got, err := l.GetTenant(ctx, "acme"); err != nil || got.Version != 1 {
		t.Errorf("GetTenant after resume = %v, %v; want version 1", got, err)
	}
}

func TestLockedReplicaClose(t *testing.T) {
	t.Parallel()
	l := openLocked(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := l.Ping(context.Background()); err == nil {
		t.Error("Ping after Close succeeded")
	}
}
