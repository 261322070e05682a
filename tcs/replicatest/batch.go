package replicatest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// runBatch tests tcs.BatchApplier; Run calls it for replicas that implement
// it.
func runBatch(t *testing.T, open func(t *testing.T) tcs.Replica) {
	batcher := func(t *testing.T) (tcs.Replica, tcs.BatchApplier) {
		r := open(t)
		b, ok := r.(tcs.BatchApplier)
		if !ok {
			t.Fatalf("%T is not a tcs.BatchApplier", r)
		}
		return r, b
	}
	const h = "shared.example.com"
	history := []*tenant.ChangeEvent{
		Event("a", 1, map[string]int64{"a.example.com": 1, h: 1}, nil),
		Event("b", 1, map[string]int64{"b.example.com": 1}, nil),
		Event("a", 2, map[string]int64{"a.example.com": 1}, map[string]int64{h: 2}),
		Event("b", 2, map[string]int64{"b.example.com": 1, h: 3}, nil),
		Tombstone("a", 3, map[string]int64{"a.example.com": 2}),
		Event("c", 1, map[string]int64{"a.example.com": 3}, nil),
	}
	// Every event twice, the second half newest first, and resyncs.
	delivery := slices.Concat(history, history[3:], []*tenant.ChangeEvent{history[2], history[0]})
	delivery = append(delivery, resync(history[3]), resync(history[5]), resync(history[3]))
	hostnames := []string{"a.example.com", "b.example.com", h}

	t.Run("EqualsOneByOne", func(t *testing.T) {
		t.Parallel()
		for _, size := range []int{1, 2, 3, len(delivery)} {
			one := open(t)
			r, b := batcher(t)
			var want, got []tcs.ApplyResult
			for _, ev := range delivery {
				want = append(want, apply(t, one, ev))
			}
			for batch := range slices.Chunk(delivery, size) {
				res, err := b.ApplyBatch(context.Background(), batch)
				if err != nil {
					t.Fatalf("ApplyBatch of %d: %v", len(batch), err)
				}
				got = append(got, res...)
			}
			compareResults(t, fmt.Sprintf("batches of %d", size), want, got)
			sameState(t, fmt.Sprintf("batches of %d", size), one, r, []string{"a", "b", "c"}, hostnames)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		_, b := batcher(t)
		res, err := b.ApplyBatch(context.Background(), nil)
		if err != nil || len(res) != 0 {
			t.Fatalf("ApplyBatch(nil) = %v, %v; want no results", res, err)
		}
	})

	t.Run("MalformedAppliesNothing", func(t *testing.T) {
		t.Parallel()
		r, b := batcher(t)
		bad := Event("x", 2, map[string]int64{"x.example.com": 1}, nil)
		bad.Version = 3
		for _, batch := range [][]*tenant.ChangeEvent{
			{history[0], bad},
			{history[0], nil, history[1]},
		} {
			res, err := b.ApplyBatch(context.Background(), batch)
			if tenant.ErrorCode(err) != tenant.Invalid {
				t.Fatalf("ApplyBatch with a malformed event = %v, %v; want an Invalid error", res, err)
			}
		}
		wantDoc(t, r, "a", nil)
		wantDoc(t, r, "b", nil)
		wantLookup(t, r, h, nil)
	})

	t.Run("CanceledContext", func(t *testing.T) {
		t.Parallel()
		r, b := batcher(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.ApplyBatch(ctx, history); !errors.Is(err, context.Canceled) {
			t.Fatalf("ApplyBatch with a canceled context: %v, want context.Canceled", err)
		}
		wantDoc(t, r, "a", nil)
	})
}

// compareResults checks results of a batch apply against those of one by
// one, hostnames compared as sets.
func compareResults(t tb, what string, want, got []tcs.ApplyResult) {
	t.Helper()
	norm := func(rs []tcs.ApplyResult) []tcs.ApplyResult {
		out := make([]tcs.ApplyResult, len(rs))
		for i, r := range rs {
			out[i] = tcs.ApplyResult{Applied: r.Applied, Hostnames: slices.Sorted(slices.Values(r.Hostnames))}
		}
		return out
	}
	if diff := cmp.Diff(norm(want), norm(got), equateEmpty); diff != "" {
		t.Fatalf("%s: ApplyBatch results differ from Apply's one by one (-one by one +batch):\n%s", what, diff)
	}
}

// sameState checks that two replicas answer alike for ids and hostnames.
func sameState(t tb, what string, want, got tcs.Replica, ids, hostnames []string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		w, werr := want.GetTenant(ctx, id)
		g, gerr := got.GetTenant(ctx, id)
		if tenant.ErrorCode(werr) != tenant.ErrorCode(gerr) || !tenant.Equal(w, g) {
			t.Fatalf("%s: GetTenant(%s) = %s, %v; one by one %s, %v", what, id, describe(g), gerr, describe(w), werr)
		}
	}
	for _, h := range hostnames {
		w, werr := want.LookupHostname(ctx, h)
		g, gerr := got.LookupHostname(ctx, h)
		if tenant.ErrorCode(werr) != tenant.ErrorCode(gerr) || !tenant.Equal(w, g) {
			t.Fatalf("%s: LookupHostname(%s) = %s, %v; one by one %s, %v", what, h, describe(g), gerr, describe(w), werr)
		}
	}
}

// BatchConvergence checks tcs.BatchApplier against the replicas open
// returns (which must implement it): for random histories, with resyncs of
// every tenant, delivered in random orders with duplicates and cut into
// random batches, ApplyBatch returns exactly what Apply returns one event at
// a time, and the replica converges to the source of truth. Checks is as
// in ConvergenceOptions.
func BatchConvergence(t *testing.T, open func(t *rapid.T) tcs.Replica, checks int) {
	prop := func(t *rapid.T) {
		src := OpenSource(t)
		h := DrawHistory(t, src)
		evs := append(slices.Clone(h.Events), DrawResyncs(t, src, h)...)
		want := ReadTruth(t, src, h)
		delivery := DrawDelivery(t, evs)

		one, batched := open(t), open(t)
		b, ok := batched.(tcs.BatchApplier)
		if !ok {
			t.Fatalf("%T is not a tcs.BatchApplier", batched)
		}
		var oneRes, batchRes []tcs.ApplyResult
		for _, ev := range delivery {
			res, err := one.Apply(context.Background(), ev)
			if err != nil {
				t.Fatalf("Apply(%s): %v", describeEvent(ev), err)
			}
			oneRes = append(oneRes, res)
		}
		for rest := delivery; len(rest) > 0; {
			n := rapid.IntRange(1, len(rest)).Draw(t, "batch size")
			res, err := b.ApplyBatch(context.Background(), rest[:n])
			if err != nil {
				t.Fatalf("ApplyBatch of %d: %v", n, err)
			}
			if len(res) != n {
				t.Fatalf("ApplyBatch of %d returned %d results", n, len(res))
			}
			batchRes = append(batchRes, res...)
			rest = rest[n:]
		}
		compareResults(t, "delivery", oneRes, batchRes)
		CheckConverged(t, batched, want)
	}
	per := rapidChecks()
	if checks <= per || per <= 0 || rapidChecksSet() {
		rapid.Check(t, prop)
		return
	}
	for i := range (checks + per - 1) / per {
		t.Run(fmt.Sprintf("batch-%d", i), func(t *testing.T) {
			t.Parallel()
			rapid.Check(t, prop)
		})
	}
}

// DrawResyncs resyncs, in src, a random subset of the tenants of h, with
// every hostname of h as an extra to settle, and returns the events the
// resync appended, in outbox order. Delivered in any order among the
// history's events, they must leave a replica converged all the same.
func DrawResyncs(t *rapid.T, src catalog.Store, h History) []*tenant.ChangeEvent {
	t.Helper()
	ctx := context.Background()
	ids := rapid.SliceOfDistinct(rapid.SampledFrom(h.IDs), rapid.ID[string]).Draw(t, "resynced tenants")
	if len(ids) == 0 {
		return nil
	}
	pos := make([]uint64, src.OutboxShards())
	readOutbox(t, src, pos)
	reqs := make([]catalog.ResyncRequest, len(ids))
	for i, id := range ids {
		reqs[i] = catalog.ResyncRequest{ID: id, Hostnames: h.Hostnames}
	}
	if _, err := src.Resync(ctx, reqs, nil); err != nil {
		t.Fatalf("Resync(%v): %v", ids, err)
	}
	var out []*tenant.ChangeEvent
	for _, e := range readOutbox(t, src, pos) {
		out = append(out, &e.Event)
	}
	return out
}

// readOutbox returns src's outbox entries after the positions pos (one per
// shard; it moves them to the last entry read), merged in commit order: by
// commit time, in shard order between entries of one time (a write that
// depends on another is stamped after the other committed).
func readOutbox(t *rapid.T, src catalog.Store, pos []uint64) []catalog.OutboxEntry {
	t.Helper()
	var all []catalog.OutboxEntry
	for shard := range pos {
		for {
			page, err := src.ReadOutbox(context.Background(), shard, pos[shard], catalog.MaxPageSize)
			if err != nil {
				t.Fatalf("ReadOutbox(%d, %d): %v", shard, pos[shard], err)
			}
			if len(page) == 0 {
				break
			}
			all = append(all, page...)
			pos[shard] = page[len(page)-1].Seq
		}
	}
	slices.SortStableFunc(all, func(a, b catalog.OutboxEntry) int {
		return a.Event.CommittedAt.Compare(b.Event.CommittedAt)
	})
	return all
}
