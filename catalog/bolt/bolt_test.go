package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

func open(tb testing.TB, path string, opts bolt.Options) *bolt.Store {
	tb.Helper()
	s, err := bolt.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) catalog.Store {
		s := open(t, filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
		bolt.SkipSync(s)
		return s
	})
}

func TestReopenKeepsDataAndOutboxSequence(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "data", "catalog.db") // Open makes the directory
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	created, err := s.Create(ctx, storetest.NewTenant("acme", "acme.example.com"), "alice")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Create(ctx, storetest.NewTenant("beta"), "alice"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	entries, err := s.ReadOutbox(ctx, 0, 0, 10)
	if err != nil || len(entries) != 2 {
		t.Fatalf("ReadOutbox = %d entries, %v", len(entries), err)
	}
	last := entries[1].Seq
	// Acknowledge everything: the next sequence must still go up, not restart.
	if err := s.AckOutbox(ctx, 0, last); err != nil {
		t.Fatalf("AckOutbox: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, path, bolt.Options{})
	got, err := s.Get(ctx, "acme")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if !got.UpdatedAt.Equal(created.UpdatedAt) || got.Version != created.Version || got.Hostnames[0] != "acme.example.com" {
		t.Fatalf("Get after reopen = %+v, want %+v", got, created)
	}
	if owner, err := s.LookupHostname(ctx, "acme.example.com"); err != nil || owner.ID != "acme" {
		t.Fatalf("LookupHostname after reopen = %v, %v", owner, err)
	}
	if _, err := s.Update(ctx, got, got.Version, "bob"); err != nil {
		t.Fatalf("Update after reopen: %v", err)
	}
	entries, err = s.ReadOutbox(ctx, 0, 0, 10)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ReadOutbox after reopen = %+v, %v; want one entry", entries, err)
	}
	if entries[0].Seq <= last {
		t.Fatalf("sequence restarted: %d after %d", entries[0].Seq, last)
	}
}

func TestSecondOpenFailsOnLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "catalog.db")
	open(t, path, bolt.Options{})

	start := time.Now()
	s, err := bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatalf("second Open succeeded")
	}
	if !strings.Contains(err.Error(), "catalog data file "+path+" is locked by another process") || !errors.Is(err, berrors.ErrTimeout) {
		t.Fatalf("second Open: %v", err)
	}
	if took > 2*time.Second {
		t.Fatalf("second Open took %v with a 100ms timeout", took)
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	s := open(t, filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{Now: func() time.Time { return at }})
	ctx := t.Context()
	got, err := s.Create(ctx, storetest.NewTenant("acme"), "alice")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := time.Date(2026, 3, 1, 11, 0, 0, 123456000, time.UTC)
	if got.UpdatedAt != want {
		t.Fatalf("UpdatedAt = %v, want %v (UTC, microseconds)", got.UpdatedAt, want)
	}
	entries, err := s.ReadOutbox(ctx, 0, 0, 1)
	if err != nil {
		t.Fatalf("ReadOutbox: %v", err)
	}
	if !entries[0].Event.CommittedAt.Equal(want) {
		t.Fatalf("CommittedAt = %v, want %v", entries[0].Event.CommittedAt, want)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for name, in := range map[string]*tenant.Tenant{
		"nil":       nil,
		"no id":     storetest.NewTenant(""),
		"tombstone": {ID: "acme", Status: tenant.StatusDeleted},
	} {
		if _, err := s.Create(ctx, in, "alice"); tenant.ErrorCode(err) != tenant.Invalid {
			t.Errorf("Create(%s) = %v, want Invalid", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = s.Get(ctx, "acme")
	if tenant.ErrorCode(err) != tenant.Internal || !strings.Contains(err.Error(), "bolt get tenant acme") {
		t.Fatalf("Get after Close = %v, want an internal error naming the operation", err)
	}
}

// A stored document that no longer decodes is an internal error, even when
// package tenant's strict decoding rejects it with an Invalid *tenant.Error:
// the caller did nothing wrong.
func TestUndecodableDocumentIsInternal(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.Create(ctx, storetest.NewTenant("acme"), "alice"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("bbolt.Open: %v", err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("tenants"))
		if err := b.Put([]byte("acme"), []byte(`{"id":"acme","status":"ACTIVE","version":1,"database":{"engine":"postgres","password":"x"}}`)); err != nil {
			return err
		}
		return b.Put([]byte("beta"), []byte(`{not json`))
	})
	if err != nil {
		t.Fatalf("corrupting: %v", err)
	}
	db.Close()

	s = open(t, path, bolt.Options{})
	// A key this version does not know (say, written by a newer one) does
	// not make a stored document unreadable: only client input is strict.
	if got, err := s.Get(ctx, "acme"); err != nil || got.Database == nil || got.Database.Engine != "postgres" {
		t.Errorf("Get(acme) = %+v, %v; want the document, unknown key ignored", got, err)
	}
	if _, err := s.Get(ctx, "beta"); tenant.ErrorCode(err) != tenant.Internal || !strings.Contains(err.Error(), "bolt get tenant beta") {
		t.Errorf("Get(beta) = %v, want an internal error naming the operation", err)
	}
	if _, err := s.List(ctx, catalog.ListOptions{}); tenant.ErrorCode(err) != tenant.Internal {
		t.Errorf("List = %v, want an internal error", err)
	}
}

// TestOutboxChanged: the channel closes on a commit, not on a rejected write.
func TestOutboxChanged(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
	ch := s.OutboxChanged()
	if _, err := s.Update(ctx, storetest.NewTenant("nobody"), 1, "test"); err == nil {
		t.Fatal("update of an unknown tenant succeeded")
	}
	select {
	case <-ch:
		t.Fatal("a rejected write closed the channel")
	default:
	}
	if _, err := s.Create(ctx, storetest.NewTenant("acme"), "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("a commit did not close the channel")
	}
	if next := s.OutboxChanged(); next == ch {
		t.Error("OutboxChanged returned the closed channel again")
	}
}

// TestConcurrentWritesShareCommits: 32 writers at once, half of them
// claiming a hostname another also claims, with fsync on. Every write
// either commits or is refused with HostnameTaken, a refused one in a
// commit it shared does not fail the others, and after reopening the file
// every acknowledged write is there, once in the outbox, with gap-free
// sequences.
func TestConcurrentWritesShareCommits(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const writers = 32
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed []string
		taken     int
	)
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("t-%02d", w)
			host := fmt.Sprintf("h-%02d.example.com", w/2) // t-00 and t-01 want the same
			if w >= writers/2 {
				host = id + ".example.com" // no competition
			}
			_, err := s.Create(context.Background(), storetest.NewTenant(id, host), "writer")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				committed = append(committed, id)
			case tenant.ErrorCode(err) == tenant.HostnameTaken:
				taken++
			default:
				t.Errorf("Create(%s): %v", id, err)
			}
		})
	}
	wg.Wait()
	if len(committed) != writers*3/4 || taken != writers/4 {
		t.Fatalf("%d committed, %d refused; want %d and %d", len(committed), taken, writers*3/4, writers/4)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, bolt.Options{})
	entries, err := s.ReadOutbox(t.Context(), 0, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var inOutbox []string
	for i, e := range entries {
		if e.Seq != uint64(i)+1 {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		inOutbox = append(inOutbox, e.Event.TenantID)
	}
	slices.Sort(committed)
	slices.Sort(inOutbox)
	if !slices.Equal(committed, inOutbox) {
		t.Fatalf("outbox after reopening holds %v, want the committed %v", inOutbox, committed)
	}
	for _, id := range committed {
		if _, err := s.Get(t.Context(), id); err != nil {
			t.Errorf("Get(%s) after reopening: %v", id, err)
		}
	}
}
