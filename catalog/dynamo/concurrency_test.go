package dynamo_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// outboxOf reads every shard of s's outbox: the events of each tenant in
// the order its shard holds them, checking that every shard's sequence
// runs 1, 2, 3… with no gaps.
func outboxOf(t *testing.T, s *dynamo.Store) map[string][]int64 {
	t.Helper()
	heads, err := s.OutboxHeads(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	events := map[string][]int64{}
	for shard := range s.OutboxShards() {
		var after uint64
		for {
			page, err := s.ReadOutbox(t.Context(), shard, after, 500)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				if e.Seq != after+1 {
					t.Fatalf("shard %d: seq %d after %d", shard, e.Seq, after)
				}
				after = e.Seq
				events[e.Event.TenantID] = append(events[e.Event.TenantID], e.Event.Version)
			}
		}
		if after != heads[shard] {
			t.Fatalf("shard %d ends at %d, its head is %d", shard, after, heads[shard])
		}
	}
	return events
}

// TestConcurrentWritersDistinctTenants: 32 writers, each creating and
// updating its own tenant, all succeed (writes in different shards do not
// cancel each other, and writers meeting in one shard retry until they
// commit), and the outbox holds every change once, each tenant's in order.
func TestConcurrentWritersDistinctTenants(t *testing.T) {
	t.Parallel()
	s := open(t)
	const writers, updates = 32, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("writer-%02d", w)
			cur, err := s.Create(context.Background(), storetest.NewTenant(id), "writer")
			if err != nil {
				errs <- fmt.Errorf("create %s: %w", id, err)
				return
			}
			for range updates {
				next := cur.Clone()
				next.Labels = map[string]string{"n": fmt.Sprint(cur.Version)}
				if cur, err = s.Update(context.Background(), next, cur.Version, "writer"); err != nil {
					errs <- fmt.Errorf("update %s: %w", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("%v (code %s)", err, tenant.ErrorCode(err))
	}
	events := outboxOf(t, s)
	want := []int64{1, 2, 3, 4, 5}
	for w := range writers {
		id := fmt.Sprintf("writer-%02d", w)
		if got := events[id]; !slices.Equal(got, want) {
			t.Errorf("outbox holds versions %v of %s, want %v", got, id, want)
		}
	}
}

// TestConcurrentWritersOneTenant: 32 writers updating one tenant with
// If-Match either commit or get VersionMismatch (never Unavailable), and
// what committed is one linear history: versions 1…n with no gaps, in the
// audit chain and in the outbox alike.
func TestConcurrentWritersOneTenant(t *testing.T) {
	t.Parallel()
	s := open(t)
	if _, err := s.Create(t.Context(), storetest.NewTenant("acme"), "writer"); err != nil {
		t.Fatal(err)
	}
	const writers, tries = 32, 3
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed []int64
		conflicts int
	)
	for w := range writers {
		wg.Go(func() {
			for range tries {
				cur, err := s.Get(context.Background(), "acme")
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				next := cur.Clone()
				next.Labels = map[string]string{"writer": fmt.Sprint(w)}
				out, err := s.Update(context.Background(), next, cur.Version, "writer")
				mu.Lock()
				switch {
				case err == nil:
					committed = append(committed, out.Version)
				case tenant.ErrorCode(err) == tenant.VersionMismatch:
					conflicts++
				default:
					t.Errorf("Update at version %d: %v (code %s); want success or VersionMismatch", cur.Version, err, tenant.ErrorCode(err))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(committed)
	n := int64(len(committed)) + 1
	for i, v := range committed {
		if v != int64(i)+2 {
			t.Fatalf("committed versions %v: not 2…%d, each once", committed, n)
		}
	}
	t.Logf("%d updates committed, %d refused with VersionMismatch", len(committed), conflicts)
	if len(committed) == 0 {
		t.Fatal("no update committed")
	}
	cur, err := s.Get(t.Context(), "acme")
	if err != nil || cur.Version != n {
		t.Fatalf("Get = version %v, %v; want %d", cur, err, n)
	}
	recs, err := s.History(t.Context(), "acme", catalog.HistoryOptions{Limit: catalog.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	oldest := slices.Clone(recs)
	slices.Reverse(oldest)
	if rep := catalog.VerifyChain("acme", oldest, n); len(rep.Problems) > 0 || rep.Unchained > 0 {
		t.Fatalf("audit chain: %+v", rep)
	}
	var versions []int64
	for _, r := range oldest {
		versions = append(versions, r.Version)
	}
	var want []int64
	for v := int64(1); v <= n; v++ {
		want = append(want, v)
	}
	if !slices.Equal(versions, want) {
		t.Fatalf("audit versions %v, want %v", versions, want)
	}
	if got := outboxOf(t, s)["acme"]; !slices.Equal(got, want) {
		t.Fatalf("outbox versions %v, want %v", got, want)
	}
}
