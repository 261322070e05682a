package clienttest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clienttest"
)

func newTenant(id string, hostnames ...string) *tenant.Tenant {
	return &tenant.Tenant{ID: id, Hostnames: hostnames, Products: map[string]tenant.Product{"jira": {Users: 10}}}
}

func start(t *testing.T, tenants ...*tenant.Tenant) (*clienttest.Server, *client.Client) {
	t.Helper()
	s, err := clienttest.NewServer(tenants...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	c, err := s.NewClient(testwait.Context(t), client.WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

func TestServer(t *testing.T) {
	t.Parallel()
	s, c := start(t, newTenant("acme", "acme.example.com", "WWW.Acme.Example.com"))
	ctx := testwait.Context(t)
	if !c.Watching() {
		t.Error("NewClient returned a client whose Watch stream is not up")
	}

	got, meta, err := c.LookupMeta(ctx, "www.acme.example.com")
	if err != nil || got.ID != "acme" || got.Version != 1 || meta.Region != clienttest.Region || meta.Cached {
		t.Fatalf("lookup: %+v %+v %v; want acme v1 from %s", got, meta, err, clienttest.Region)
	}
	if _, err := c.Lookup(ctx, "www.acme.example.com"); err != nil || s.Lookups() != 1 {
		t.Errorf("second lookup: %v, %d lookups reached the server; want a cache hit (1)", err, s.Lookups())
	}
	if _, err := c.Lookup(ctx, "nobody.example.com"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("unknown hostname: %v, want ErrNotFound", err)
	}

	// A Put reaches the client's cache through an invalidation.
	acme := newTenant("acme", "acme.example.com", "shop.acme.example.com")
	acme.Labels = map[string]string{"tier": "gold"}
	stored, err := s.Put(acme)
	if err != nil || stored.Version != 2 {
		t.Fatalf("Put: %+v, %v; want version 2", stored, err)
	}
	testwait.For(t, "the client to see version 2", func() bool {
		got, err := c.Lookup(ctx, "acme.example.com")
		return err == nil && got.Version == 2 && got.Labels["tier"] == "gold"
	})
	// The hostname it released is owned by no one.
	testwait.For(t, "the released hostname to be not found", func() bool {
		_, err := c.Lookup(ctx, "www.acme.example.com")
		return errors.Is(err, client.ErrNotFound)
	})
	if got, err := c.LookupAtLeast(ctx, "shop.acme.example.com", 2); err != nil || got.Version != 2 {
		t.Errorf("LookupAtLeast(2) of the new hostname: %+v, %v", got, err)
	}

	if err := s.Delete("acme"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the deletion to reach the client", func() bool {
		_, err := c.Lookup(ctx, "acme.example.com")
		return errors.Is(err, client.ErrNotFound)
	})
	// Deleted, its hostnames are free.
	if _, err := s.Put(newTenant("globex", "acme.example.com")); err != nil {
		t.Errorf("Put of a deleted tenant's hostname: %v", err)
	}
}

func TestPauseInvalidations(t *testing.T) {
	t.Parallel()
	s, c := start(t, newTenant("acme", "acme.example.com"))
	ctx := testwait.Context(t)
	if got, err := c.Lookup(ctx, "acme.example.com"); err != nil || got.Version != 1 {
		t.Fatalf("lookup: %+v, %v", got, err)
	}
	s.PauseInvalidations(true)
	if _, err := s.Put(newTenant("acme", "acme.example.com")); err != nil { // version 2, not sent
		t.Fatal(err)
	}
	// Nothing tells the client: it keeps its cached answer (the TTL is an
	// hour) and does not ask the server.
	before := s.Lookups()
	for range 3 {
		if got, err := c.Lookup(ctx, "acme.example.com"); err != nil || got.Version != 1 {
			t.Fatalf("lookup while paused: %+v, %v; want the cached version 1", got, err)
		}
	}
	if n := s.Lookups() - before; n != 0 {
		t.Errorf("%d lookups reached the server while the answer was cached", n)
	}
	if err := s.Invalidate("acme"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the invalidation to bring version 2", func() bool {
		got, err := c.Lookup(ctx, "acme.example.com")
		return err == nil && got.Version == 2
	})
	// Still paused: read-your-writes does not need the invalidation.
	if _, err := s.Put(newTenant("acme", "acme.example.com")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.LookupAtLeast(ctx, "acme.example.com", 3); err != nil || got.Version != 3 {
		t.Fatalf("LookupAtLeast(3) while paused: %+v, %v", got, err)
	}
	s.PauseInvalidations(false)
	if _, err := s.Put(newTenant("acme", "acme.example.com")); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "version 4, resumed", func() bool {
		got, err := c.Lookup(ctx, "acme.example.com")
		return err == nil && got.Version == 4
	})
	if err := s.Invalidate("nobody"); tenant.ErrorCode(err) != tenant.NotFound {
		t.Errorf("Invalidate of an unknown tenant: %v, want NotFound", err)
	}
}

func TestPutErrors(t *testing.T) {
	t.Parallel()
	s, err := clienttest.NewServer(newTenant("acme", "acme.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cases := []struct {
		name string
		t    *tenant.Tenant
		code tenant.Code
	}{
		{"bad id", newTenant("Not An ID", "x.example.com"), tenant.Invalid},
		{"bad hostname", newTenant("globex", "exa mple.com"), tenant.Invalid},
		{"no hostnames", newTenant("globex"), tenant.Invalid},
		{"hostname taken", newTenant("globex", "ACME.example.com"), tenant.HostnameTaken},
	}
	for _, tc := range cases {
		if _, err := s.Put(tc.t); tenant.ErrorCode(err) != tc.code {
			t.Errorf("%s: Put: %v, want code %s", tc.name, err, tc.code)
		}
	}
	if _, err := s.Put(nil); err == nil {
		t.Error("Put(nil): no error")
	}
	if err := s.Delete("globex"); tenant.ErrorCode(err) != tenant.NotFound {
		t.Errorf("Delete of an unknown tenant: %v, want NotFound", err)
	}
	if _, err := clienttest.NewServer(newTenant("aaa", "x.example.com"), newTenant("bbb", "x.example.com")); tenant.ErrorCode(err) != tenant.HostnameTaken {
		t.Errorf("NewServer with two owners of a hostname: %v, want HostnameTaken", err)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	s, err := clienttest.NewServer(newTenant("acme", "acme.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.NewClient(context.Background(), client.WithMaxStale(0), client.WithLookupTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Lookup(testwait.Context(t), "acme.example.com"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("lookup after the server closed: %v, want ErrUnavailable", err)
	}
}

// TestReadOnlyDuringMove: a tenant being moved (tcsctl move) reaches the
// client with its migration: ReadOnly while its data is copied, and the
// new database, writable, once switched — through the cache's
// invalidation, as compute nodes see it.
func TestReadOnlyDuringMove(t *testing.T) {
	t.Parallel()
	from := tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: "acme"}
	to := tenant.Database{Engine: "postgres", Host: "db-2.internal", Port: 5432, Name: "acme"}
	doc := newTenant("acme", "acme.example.com")
	doc.Database = &from
	s, c := start(t, doc)
	ctx := testwait.Context(t)
	if got, err := c.Lookup(ctx, "acme.example.com"); err != nil || got.ReadOnly() || got.Moving() {
		t.Fatalf("before the move: %+v, %v", got, err)
	}
	for _, step := range []struct {
		step     tenant.MoveStep
		db       tenant.Database
		readOnly bool
	}{{tenant.MovePrepared, from, true}, {tenant.MoveCopied, from, true}, {tenant.MoveSwitched, to, false}, {tenant.MoveComplete, to, false}} {
		next := doc.Clone()
		next.Database = &step.db
		next.Migration = &tenant.Migration{Step: step.step, From: from, To: to}
		put, err := s.Put(next)
		if err != nil {
			t.Fatal(err)
		}
		testwait.For(t, "the client to see step "+string(step.step), func() bool {
			got, err := c.Lookup(ctx, "acme.example.com")
			return err == nil && got.Version == put.Version
		})
		got, _ := c.Lookup(ctx, "acme.example.com")
		if got.ReadOnly() != step.readOnly || *got.Database != step.db || got.Migration.Step != step.step || got.Status != tenant.StatusActive {
			t.Errorf("at %s the client sees read-only %v on %s (%+v); want read-only %v on %s", step.step, got.ReadOnly(), got.Database.Host, got.Migration, step.readOnly, step.db.Host)
		}
	}
}
