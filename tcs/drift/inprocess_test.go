package drift_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/drift"
)

// TestRepairInProcess runs the whole loop a reconciler runs, in process on
// the embedded backends: verify a catalog.Store (StoreTruth) against two
// replicas, one of which missed the last changes; plan the repair; send its
// batches to the store's Resync; deliver the outbox to the regions as the
// appliers would (each event only to the regions it is for); verify clean.
func TestRepairInProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := bolt.Open(filepath.Join(dir, "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	replicas := map[string]*boltreplica.Replica{}
	for _, name := range []string{"r1", "r2"} {
		r, err := boltreplica.Open(filepath.Join(dir, name+".db"), boltreplica.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		replicas[name] = r
	}
	// deliver applies the outbox after seq to the regions named (each event
	// only where it is for) and returns the last sequence read.
	deliver := func(after uint64, regions ...string) uint64 {
		t.Helper()
		entries, err := store.ReadOutbox(ctx, 0, after, 1000) // bbolt: one shard
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			for _, name := range regions {
				if !e.Event.ForRegion(name) {
					continue
				}
				if _, err := replicas[name].Apply(ctx, &e.Event); err != nil {
					t.Fatal(err)
				}
			}
			after = e.Seq
		}
		return after
	}

	for _, id := range []string{"aaa", "bbb", "ccc"} {
		d := &tenant.Tenant{ID: id, Hostnames: []string{id + ".example.com"}}
		if err := tenant.Prepare(d); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Create(ctx, d, "test"); err != nil {
			t.Fatal(err)
		}
	}
	seq := deliver(0, "r1", "r2")
	// r2 misses what follows: bbb moves to another hostname, ccc is deleted.
	b, err := store.Get(ctx, "bbb")
	if err != nil {
		t.Fatal(err)
	}
	b.Hostnames = []string{"new-bbb.example.com"}
	if err := tenant.Prepare(b); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, b, 1, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Delete(ctx, "ccc", 1, "test"); err != nil {
		t.Fatal(err)
	}
	seq = deliver(seq, "r1")

	v := &drift.Verifier{Truth: drift.StoreTruth(store),
		Regions: []drift.Region{{Name: "r1", Scanner: replicas["r1"]}, {Name: "r2", Scanner: replicas["r2"]}}}
	rep, err := v.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, fmt.Sprintf("%s %s %s %s", f.Region, f.Kind, f.TenantID, f.Hostname))
	}
	want := []string{ // sorted by region, tenant (none for an orphan), kind, hostname
		"r2 orphaned_hostname  bbb.example.com",
		"r2 orphaned_hostname  ccc.example.com",
		"r2 stale_version bbb ",
		"r2 unmapped_hostname bbb new-bbb.example.com",
		"r2 stale_version ccc ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("findings (-want +got):\n%s", diff)
	}

	actions, unrepairable := drift.PlanRepair(rep.Findings)
	if len(unrepairable) != 0 {
		t.Fatalf("unrepairable: %+v", unrepairable)
	}
	for _, batch := range drift.Batches(actions) {
		if err := catalog.CheckResync(batch.Tenants, batch.Regions); err != nil {
			t.Fatalf("batch %+v: %v", batch, err)
		}
		if _, err := store.Resync(ctx, batch.Tenants, batch.Regions); err != nil {
			t.Fatal(err)
		}
	}
	deliver(seq, "r1", "r2")
	if rep, err = v.Verify(ctx); err != nil || !rep.Clean {
		t.Fatalf("after repair: %v, findings %+v", err, rep.Findings)
	}
}
