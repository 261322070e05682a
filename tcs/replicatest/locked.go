package replicatest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
)

var (
	_ tcs.Replica      = (*LockedReplica)(nil)
	_ tcs.BatchApplier = (*LockedReplica)(nil)
	_ tcs.Scanner      = (*LockedReplica)(nil)
)

// LockedReplica is a bbolt replica (tcs/boltreplica) that a test can change
// behind the back of the appliers, lookup servers and scanners using it, as
// a bad restore or a lost write would: Edit closes the replica, edits its
// file directly and opens it again, while every call waits. StallApplies
// holds applies back (a stalled applier) while reads go on. It is safe for
// concurrent use.
type LockedReplica struct {
	path string

	mu     sync.RWMutex // held for writing by Edit and Close
	r      *boltreplica.Replica
	closed bool

	gate sync.RWMutex // held for writing while applies are stalled
}

// NewLockedReplica wraps r, which must be open on the file at path. The
// LockedReplica owns r from then on: Edit replaces it, and Close closes
// whichever replica it holds.
func NewLockedReplica(path string, r *boltreplica.Replica) *LockedReplica {
	return &LockedReplica{path: path, r: r}
}

// Edit runs f in one write transaction on the replica's file, with the
// replica closed meanwhile, and opens it again; f gets the buckets of
// package boltreplica ("docs": tenant id → JSON tenant.Tenant, "hosts":
// hostname → JSON tcs.HostRecord). Calls made meanwhile wait for it. Any
// failure, f's error included, fails tb.
func (l *LockedReplica) Edit(tb testing.TB, f func(docs, hosts *bbolt.Bucket) error) {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		tb.Fatalf("edit replica %s: it is closed", l.path)
	}
	if err := l.r.Close(); err != nil {
		tb.Fatalf("edit replica %s: %v", l.path, err)
	}
	if err := editFile(l.path, f); err != nil {
		tb.Fatalf("edit replica %s: %v", l.path, err)
	}
	r, err := boltreplica.Open(l.path, boltreplica.Options{})
	if err != nil {
		tb.Fatalf("edit replica %s: open again: %v", l.path, err)
	}
	l.r = r
}

func editFile(path string, f func(docs, hosts *bbolt.Bucket) error) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		docs, hosts := tx.Bucket([]byte("docs")), tx.Bucket([]byte("hosts"))
		if docs == nil || hosts == nil {
			return errors.New(`no "docs" or no "hosts" bucket: not the layout of package boltreplica`)
		}
		return f(docs, hosts)
	})
	return errors.Join(err, db.Close())
}

// StallApplies holds Apply and ApplyBatch back, as a stalled applier would,
// until resume is called; reads go on meanwhile.
func (l *LockedReplica) StallApplies() (resume func()) {
	l.gate.Lock()
	return sync.OnceFunc(l.gate.Unlock)
}

// Apply implements tcs.Replica.
func (l *LockedReplica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	l.gate.RLock()
	defer l.gate.RUnlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.r.Apply(ctx, ev)
}

// ApplyBatch implements tcs.BatchApplier.
func (l *LockedReplica) ApplyBatch(ctx context.Context, evs []*tenant.ChangeEvent) ([]tcs.ApplyResult, error) {
	l.gate.RLock()
	defer l.gate.RUnlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.r.ApplyBatch(ctx, evs)
}

// LookupHostname implements tcs.Replica.
func (l *LockedReplica) LookupHostname(ctx context.Context, h string) (*tenant.Tenant, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.r.LookupHostname(ctx, h)
}

// GetTenant implements tcs.Replica.
func (l *LockedReplica) GetTenant(ctx context.Context, id string) (*tenant.Tenant, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.r.GetTenant(ctx, id)
}

// ScanDocs implements tcs.Scanner.
func (l *LockedReplica) ScanDocs(ctx context.Context, cursor string, limit int) ([]*tenant.Tenant, string, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.r.ScanDocs(ctx, cursor, limit)
}

// ScanHosts implements tcs.Scanner.
func (l *LockedReplica) ScanHosts(ctx context.Context, cursor string, limit int) ([]tcs.HostEntry, string, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.r.ScanHosts(ctx, cursor, limit)
}

// Ping implements tcs.Replica.
func (l *LockedReplica) Ping(ctx context.Context) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.r.Ping(ctx)
}

// Close closes the replica it holds; a second Close does nothing.
func (l *LockedReplica) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if err := l.r.Close(); err != nil {
		return fmt.Errorf("close replica %s: %w", l.path, err)
	}
	return nil
}
