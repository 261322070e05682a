package boltreplica_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	berrors "go.etcd.io/bbolt/errors"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// cleanupTB is what open needs from *testing.T, *testing.B and *rapid.T.
type cleanupTB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

func open(t cleanupTB, path string, opts boltreplica.Options) *boltreplica.Replica {
	t.Helper()
	r, err := boltreplica.Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// openFresh opens a new replica in a tmpfs directory where there is one:
// the suite opens hundreds, the property test thousands.
func openFresh(t cleanupTB) *boltreplica.Replica {
	t.Helper()
	return open(t, filepath.Join(replicatest.TempDir(t), "replica.db"), boltreplica.Options{})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	replicatest.Run(t, func(t *testing.T) tcs.Replica { return openFresh(t) })
}

// TestConvergence runs the convergence property: 500 random histories, each
// delivered in 4 random orders to new replica files, 2000 deliveries in all
// (a fifth with -short; -rapid.checks=N checks N histories). A history costs
// more than a delivery (commits to the source of truth against applies to the
// replica), and the bare rules' test (tcs.TestApplyRulesConverge) covers the
// rules with many more deliveries.
func TestConvergence(t *testing.T) {
	t.Parallel()
	replicatest.Convergence(t, func(t *rapid.T) tcs.Replica { return openFresh(t) },
		replicatest.ConvergenceOptions{Checks: 500, Orders: 4})
}

func TestReopenKeepsState(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "region", "replica.db") // Open makes the directory
	r, err := boltreplica.Open(path, boltreplica.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "old.example.com": 1}, nil)
	a2 := replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 1}, map[string]int64{"old.example.com": 2})
	gone := replicatest.Tombstone("gone", 4, nil)
	for _, ev := range []*tenant.ChangeEvent{a1, a2, gone} {
		if _, err := r.Apply(ctx, ev); err != nil {
			t.Fatalf("Apply(%s@%d): %v", ev.TenantID, ev.Version, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	r = open(t, path, boltreplica.Options{})
	got, err := r.LookupHostname(ctx, "acme.example.com")
	if err != nil {
		t.Fatalf("LookupHostname after reopen: %v", err)
	}
	if diff := cmp.Diff(a2.Tenant, got); diff != "" {
		t.Fatalf("LookupHostname after reopen (-want +got):\n%s", diff)
	}
	if tomb, err := r.GetTenant(ctx, "gone"); err != nil || !tomb.Deleted() || tomb.Version != 4 {
		t.Fatalf("GetTenant(gone) after reopen = %+v, %v; want the tombstone at version 4", tomb, err)
	}
	// The released hostname's claim version survived: a late, older claim
	// of it is refused.
	if res, err := r.Apply(ctx, a1); err != nil || res.Applied || len(res.Hostnames) > 0 {
		t.Fatalf("replayed Apply(acme@1) after reopen = %+v, %v; want a no-op", res, err)
	}
	if _, err := r.LookupHostname(ctx, "old.example.com"); tenant.ErrorCode(err) != tenant.NotFound {
		t.Fatalf("LookupHostname(old.example.com) after reopen: %v, want NotFound", err)
	}
	hosts, _, err := r.ScanHosts(ctx, "", 0)
	if err != nil {
		t.Fatalf("ScanHosts: %v", err)
	}
	want := []boltreplica.HostEntry{
		{Hostname: "acme.example.com", HostRecord: tcs.HostRecord{TenantID: "acme", ClaimVersion: 1}},
		{Hostname: "old.example.com", HostRecord: tcs.HostRecord{ClaimVersion: 2}},
	}
	if diff := cmp.Diff(want, hosts); diff != "" {
		t.Fatalf("ScanHosts after reopen (-want +got):\n%s", diff)
	}
}

func TestSecondOpenFailsOnLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "replica.db")
	open(t, path, boltreplica.Options{})

	start := time.Now()
	r, err := boltreplica.Open(path, boltreplica.Options{Timeout: 100 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		r.Close()
		t.Fatalf("second Open succeeded")
	}
	if !strings.Contains(err.Error(), "replica data file "+path+" is locked by another process") || !errors.Is(err, berrors.ErrTimeout) {
		t.Fatalf("second Open: %v", err)
	}
	if took > 2*time.Second {
		t.Fatalf("second Open took %v with a 100ms timeout", took)
	}
}

func TestScan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := openFresh(t)
	var wantIDs, wantHosts []string
	for _, id := range []string{"t-1", "t-2", "t-3", "t-4", "t-5"} {
		h := id + ".example.com"
		if _, err := r.Apply(ctx, replicatest.Event(id, 1, map[string]int64{h: 1}, nil)); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		wantIDs, wantHosts = append(wantIDs, id), append(wantHosts, h)
	}
	if _, err := r.Apply(ctx, replicatest.Tombstone("t-3", 2, map[string]int64{"t-3.example.com": 2})); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	var gotIDs []string
	for cursor, pages := "", 0; ; pages++ {
		docs, next, err := r.ScanDocs(ctx, cursor, 2)
		if err != nil {
			t.Fatalf("ScanDocs(%q): %v", cursor, err)
		}
		for _, d := range docs {
			gotIDs = append(gotIDs, d.ID)
			if d.ID == "t-3" && !d.Deleted() {
				t.Errorf("ScanDocs returned t-3 live, want its tombstone")
			}
		}
		if next == "" {
			if pages != 2 {
				t.Errorf("ScanDocs took %d pages of 2 for 5 docs, want 3", pages+1)
			}
			break
		}
		cursor = next
	}
	if diff := cmp.Diff(wantIDs, gotIDs); diff != "" {
		t.Errorf("ScanDocs ids (-want +got):\n%s", diff)
	}

	var gotHosts []string
	for cursor := ""; ; {
		page, next, err := r.ScanHosts(ctx, cursor, 3)
		if err != nil {
			t.Fatalf("ScanHosts(%q): %v", cursor, err)
		}
		for _, e := range page {
			gotHosts = append(gotHosts, e.Hostname)
			if released := e.TenantID == ""; released != (e.Hostname == "t-3.example.com") {
				t.Errorf("ScanHosts: %+v", e)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff(wantHosts, gotHosts); diff != "" {
		t.Errorf("ScanHosts hostnames (-want +got):\n%s", diff)
	}
	// Starting between keys works too.
	if docs, next, err := r.ScanDocs(ctx, "t-2x", 0); err != nil || len(docs) != 3 || docs[0].ID != "t-3" || next != "" {
		t.Errorf("ScanDocs(t-2x) = %d docs, %v; want t-3, t-4, t-5", len(docs), err)
	}
}

func TestErrorsAfterClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Ping(ctx); err == nil {
		t.Errorf("Ping after Close succeeded")
	}
	_, err = r.GetTenant(ctx, "acme")
	if tenant.ErrorCode(err) != tenant.Internal || !strings.Contains(err.Error(), "boltreplica get tenant acme") {
		t.Errorf("GetTenant after Close = %v, want an internal error naming the operation", err)
	}
	_, err = r.Apply(ctx, replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil))
	if tenant.ErrorCode(err) != tenant.Internal || !strings.Contains(err.Error(), `boltreplica apply tenant "acme" version 1`) {
		t.Errorf("Apply after Close = %v, want an internal error naming the operation", err)
	}
}

// TestBatchConvergence: ApplyBatch answers as Apply one event at a time,
// and converges, for 100 random histories with resyncs cut into random
// batches.
func TestBatchConvergence(t *testing.T) {
	t.Parallel()
	replicatest.BatchConvergence(t, func(t *rapid.T) tcs.Replica { return openFresh(t) }, 100)
}

// TestResyncOfIdenticalContent: a resync event that finds its document and
// claims stored byte for byte (which writes nothing) and one that repairs a
// corrupt document both leave the replica equal to the event.
func TestResyncOfIdenticalContent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := open(t, filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}, nil)
	if _, err := r.Apply(ctx, a1); err != nil {
		t.Fatal(err)
	}
	resync := func(ev *tenant.ChangeEvent) *tenant.ChangeEvent {
		c := *ev
		c.Tenant = ev.Tenant.Clone()
		c.Resync = true
		return &c
	}
	same := resync(a1)
	corrupt := resync(a1)
	corrupt.Tenant.Labels = map[string]string{"corrupt": "yes"}
	for _, step := range []struct {
		name string
		evs  []*tenant.ChangeEvent
		want *tenant.Tenant
	}{
		{"identical resync", []*tenant.ChangeEvent{same}, a1.Tenant},
		{"identical resyncs in a batch", []*tenant.ChangeEvent{same, same}, a1.Tenant},
		{"corrupting resync", []*tenant.ChangeEvent{corrupt}, corrupt.Tenant},
		{"repairing resync", []*tenant.ChangeEvent{same}, a1.Tenant},
	} {
		results, err := r.ApplyBatch(ctx, step.evs)
		if err != nil || len(results) != len(step.evs) || !results[0].Applied {
			t.Fatalf("%s: ApplyBatch = %+v, %v; want applied", step.name, results, err)
		}
		got, err := r.GetTenant(ctx, "acme")
		if err != nil || !cmp.Equal(got, step.want) {
			t.Fatalf("%s: stored %+v, %v; want %+v", step.name, got, err, step.want)
		}
		for _, h := range []string{"acme.example.com", "www.acme.example.com"} {
			if got, err := r.LookupHostname(ctx, h); err != nil || got.ID != "acme" {
				t.Fatalf("%s: LookupHostname(%s) = %v, %v", step.name, h, got, err)
			}
		}
	}
}
