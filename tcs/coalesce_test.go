package tcs_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// applyBoth applies one tenant's events to seq one by one and to merged run
// by run (tcs.CoalesceEvents), and checks that the states are the same after
// every run, that the merged apply is Applied exactly when one of the
// events is, and that the hostnames it reports (with
// tcs.CoalescedHostnames when it changed something) cover every hostname
// the events one by one report. It returns how many events were folded.
func applyBoth(t interface {
	Helper()
	Fatalf(string, ...any)
}, seq, merged *memTxn, evs []*tenant.ChangeEvent) int {
	t.Helper()
	folded := 0
	for _, run := range tcs.Runs(evs) {
		applied := false
		var want []string
		for _, ev := range run {
			res, err := tcs.ApplyEvent(seq, ev)
			if err != nil {
				t.Fatalf("ApplyEvent(%s): %v", describe(ev), err)
			}
			applied = applied || res.Applied
			want = append(want, res.Hostnames...)
		}
		ev, err := tcs.CoalesceEvents(run)
		if err != nil {
			t.Fatalf("CoalesceEvents(%s): %v", describeRun(run), err)
		}
		res, err := tcs.ApplyEvent(merged, ev)
		if err != nil {
			t.Fatalf("ApplyEvent(merged %s): %v", describeRun(run), err)
		}
		if res.Applied != applied {
			t.Fatalf("merged %s: Applied = %v, one by one %v", describeRun(run), res.Applied, applied)
		}
		got := map[string]bool{}
		for _, h := range res.Hostnames {
			got[h] = true
		}
		if res.Applied || len(res.Hostnames) > 0 {
			for _, h := range tcs.CoalescedHostnames(run) {
				got[h] = true
			}
		}
		for _, h := range want {
			if !got[h] {
				t.Fatalf("merged %s: hostname %s reported one by one, not by the merged apply (%v)", describeRun(run), h, slices.Sorted(maps.Keys(got)))
			}
		}
		if diff := cmp.Diff(seq.docs, merged.docs); diff != "" {
			t.Fatalf("after %s: documents differ (-one by one +merged):\n%s", describeRun(run), diff)
		}
		if diff := cmp.Diff(seq.hosts, merged.hosts); diff != "" {
			t.Fatalf("after %s: host records differ (-one by one +merged):\n%s", describeRun(run), diff)
		}
		folded += len(run) - 1
	}
	return folded
}

func describe(ev *tenant.ChangeEvent) string {
	s := fmt.Sprintf("%s@%d claims %v released %v", ev.TenantID, ev.Version, ev.Claims, ev.Released)
	if ev.Resync {
		s += " resync"
	}
	if ev.Tombstone() {
		s += " tombstone"
	}
	return s
}

func describeRun(run []*tenant.ChangeEvent) string {
	var s []string
	for _, ev := range run {
		s = append(s, describe(ev))
	}
	return fmt.Sprint(s)
}

// drawStreamDelivery delivers events as a stream with checkpoints does:
// segments of the outbox order, each starting anywhere (a redelivery from an
// older checkpoint, or a skip ahead, as another shard's order may show a
// replica), or, sometimes, any order with duplicates
// (replicatest.DrawDelivery).
func drawStreamDelivery(t *rapid.T, events []*tenant.ChangeEvent) []*tenant.ChangeEvent {
	if len(events) == 0 {
		return nil
	}
	if rapid.IntRange(0, 4).Draw(t, "shuffled") == 0 {
		return replicatest.DrawDelivery(t, events)
	}
	var out []*tenant.ChangeEvent
	for range rapid.IntRange(1, 4).Draw(t, "segments") {
		from := rapid.IntRange(0, len(events)-1).Draw(t, "segment start")
		to := rapid.IntRange(from+1, len(events)).Draw(t, "segment end")
		out = append(out, events[from:to]...)
	}
	return out
}

// TestCoalesceMatchesOneByOne is the proof that coalescing a tenant's events
// of a batch keeps invariant 3: for random histories committed to a real
// source of truth, with resyncs, delivered in stream order with redeliveries
// and skips (or in any order), cut into random batches, applying each
// batch's tenants' runs merged (tcs.CoalesceEvents) leaves the replica in
// exactly the state, documents and hostname records, that applying the
// events one by one leaves, after every run; and at the end both equal the
// source when every event was delivered.
func TestCoalesceMatchesOneByOne(t *testing.T) {
	t.Parallel()
	folded := 0
	rapid.Check(t, func(t *rapid.T) {
		src := replicatest.OpenSource(t)
		h := replicatest.DrawHistory(t, src)
		events := append(slices.Clone(h.Events), replicatest.DrawResyncs(t, src, h)...)
		for d := range 5 {
			seq, merged := newMemTxn(), newMemTxn()
			delivery := drawStreamDelivery(t, events)
			if d == 0 {
				// Every event at least once, so that the end state must be
				// the source's.
				delivery = append(delivery, events...)
			}
			for len(delivery) > 0 {
				n := rapid.IntRange(1, len(delivery)).Draw(t, "batch size")
				batch := delivery[:n]
				delivery = delivery[n:]
				var order []string
				byTenant := map[string][]*tenant.ChangeEvent{}
				for _, ev := range batch {
					if _, ok := byTenant[ev.TenantID]; !ok {
						order = append(order, ev.TenantID)
					}
					byTenant[ev.TenantID] = append(byTenant[ev.TenantID], ev)
				}
				for _, id := range order {
					folded += applyBoth(t, seq, merged, byTenant[id])
				}
			}
			if d == 0 {
				truth := replicatest.ReadTruth(t, src, h)
				r := newMemReplica()
				r.state = merged
				replicatest.CheckConverged(t, r, truth)
			}
		}
	})
	if folded == 0 {
		t.Fatalf("no event was ever coalesced: the property tested nothing")
	}
	t.Logf("%d events folded into others", folded)
}

// TestCoalesceCases checks the tricky runs by hand: each is applied merged
// and one by one (applyBoth), after the stored events, and the host records
// are checked against what the source of truth says.
func TestCoalesceCases(t *testing.T) {
	t.Parallel()
	ev, tomb := replicatest.Event, replicatest.Tombstone
	type hosts = map[string]tcs.HostRecord
	for _, tc := range []struct {
		name   string
		stored []*tenant.ChangeEvent
		batch  []*tenant.ChangeEvent
		folded int
		want   hosts
	}{{
		// a gives h to b, b gives it back: a's two versions merge, and b's.
		name:   "move away and back",
		stored: []*tenant.ChangeEvent{ev("a", 1, map[string]int64{"h": 1, "x": 1}, nil)},
		batch: []*tenant.ChangeEvent{
			ev("a", 2, map[string]int64{"x": 1}, map[string]int64{"h": 2}),
			ev("b", 1, map[string]int64{"h": 3}, nil),
			ev("b", 2, map[string]int64{"y": 1}, map[string]int64{"h": 4}),
			ev("a", 3, map[string]int64{"h": 5, "x": 1}, nil),
		},
		folded: 2,
		want:   hosts{"h": {TenantID: "a", ClaimVersion: 5}, "x": {TenantID: "a", ClaimVersion: 1}, "y": {TenantID: "b", ClaimVersion: 1}},
	}, {
		name:   "delete then re-create",
		stored: []*tenant.ChangeEvent{ev("a", 1, map[string]int64{"h": 1}, nil)},
		batch: []*tenant.ChangeEvent{
			tomb("a", 2, map[string]int64{"h": 2}),
			ev("a", 3, map[string]int64{"z": 1}, nil),
		},
		folded: 1,
		want:   hosts{"h": {ClaimVersion: 2}, "z": {TenantID: "a", ClaimVersion: 1}},
	}, {
		name:   "update then delete",
		stored: []*tenant.ChangeEvent{ev("a", 1, map[string]int64{"h": 1}, nil)},
		batch: []*tenant.ChangeEvent{
			ev("a", 2, map[string]int64{"h": 1, "i": 1}, nil),
			tomb("a", 3, map[string]int64{"h": 2, "i": 2}),
		},
		folded: 1,
		want:   hosts{"h": {ClaimVersion: 2}, "i": {ClaimVersion: 2}},
	}, {
		// The claim back wins at its higher claim version; the release is
		// kept in the merged event and is then a no-op.
		name:   "release then re-claim",
		stored: []*tenant.ChangeEvent{ev("a", 1, map[string]int64{"h": 1, "x": 1}, nil)},
		batch: []*tenant.ChangeEvent{
			ev("a", 2, map[string]int64{"x": 1}, map[string]int64{"h": 2}),
			ev("a", 3, map[string]int64{"h": 3, "x": 1}, nil),
		},
		folded: 1,
		want:   hosts{"h": {TenantID: "a", ClaimVersion: 3}, "x": {TenantID: "a", ClaimVersion: 1}},
	}, {
		// The replica has a@5 (h not held, its release at 11 not
		// delivered): a stale run still applies its release of h, even
		// though the run's newest event claims h back.
		name:   "stale release then re-claim",
		stored: []*tenant.ChangeEvent{ev("a", 5, map[string]int64{"x": 1}, nil)},
		batch: []*tenant.ChangeEvent{
			ev("a", 2, map[string]int64{"x": 1}, map[string]int64{"h": 9}),
			ev("a", 3, map[string]int64{"h": 10, "x": 1}, nil),
		},
		folded: 1,
		want:   hosts{"h": {ClaimVersion: 9}, "x": {TenantID: "a", ClaimVersion: 1}},
	}, {
		// A redelivered older version starts the run: it is folded too.
		name:   "redelivered older events in the batch",
		stored: []*tenant.ChangeEvent{ev("a", 1, map[string]int64{"h": 1}, nil), ev("a", 2, map[string]int64{"i": 1}, map[string]int64{"h": 2})},
		batch: []*tenant.ChangeEvent{
			ev("a", 1, map[string]int64{"h": 1}, nil),
			ev("a", 2, map[string]int64{"i": 1}, map[string]int64{"h": 2}),
			ev("a", 3, map[string]int64{"i": 1, "j": 1}, nil),
			// A duplicate breaks the run.
			ev("a", 3, map[string]int64{"i": 1, "j": 1}, nil),
		},
		folded: 2,
		want:   hosts{"h": {ClaimVersion: 2}, "i": {TenantID: "a", ClaimVersion: 1}, "j": {TenantID: "a", ClaimVersion: 1}},
	}, {
		// A gap (a@3 missing) breaks the run: merged across it, h claimed
		// at a@2 would never be recorded and dropped.
		name:   "gap",
		stored: []*tenant.ChangeEvent{ev("a", 1, map[string]int64{"x": 1}, nil), ev("b", 1, map[string]int64{"h": 1}, nil)},
		batch: []*tenant.ChangeEvent{
			ev("a", 2, map[string]int64{"h": 3, "x": 1}, nil),
			ev("a", 4, map[string]int64{"x": 1}, nil),
		},
		folded: 0,
		want:   hosts{"h": {ClaimVersion: 3}, "x": {TenantID: "a", ClaimVersion: 1}},
	}, {
		name:   "resync breaks the run",
		stored: []*tenant.ChangeEvent{ev("a", 1, map[string]int64{"h": 1}, nil)},
		batch: func() []*tenant.ChangeEvent {
			rs := ev("a", 2, map[string]int64{"h": 1}, nil)
			rs.Resync = true
			return []*tenant.ChangeEvent{ev("a", 2, map[string]int64{"h": 1}, nil), rs, ev("a", 3, map[string]int64{"h": 1}, nil)}
		}(),
		folded: 0,
		want:   hosts{"h": {TenantID: "a", ClaimVersion: 1}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			seq, merged := newMemTxn(), newMemTxn()
			for _, ev := range tc.stored {
				for _, tx := range []*memTxn{seq, merged} {
					if _, err := tcs.ApplyEvent(tx, ev); err != nil {
						t.Fatalf("ApplyEvent(%s): %v", describe(ev), err)
					}
				}
			}
			var order []string
			byTenant := map[string][]*tenant.ChangeEvent{}
			for _, ev := range tc.batch {
				if _, ok := byTenant[ev.TenantID]; !ok {
					order = append(order, ev.TenantID)
				}
				byTenant[ev.TenantID] = append(byTenant[ev.TenantID], ev)
			}
			folded := 0
			for _, id := range order {
				folded += applyBoth(t, seq, merged, byTenant[id])
			}
			if folded != tc.folded {
				t.Errorf("%d events folded, want %d", folded, tc.folded)
			}
			if diff := cmp.Diff(tc.want, merged.hosts); diff != "" {
				t.Errorf("host records (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCoalesceEventsRejects checks that only runs are merged.
func TestCoalesceEventsRejects(t *testing.T) {
	t.Parallel()
	ev := replicatest.Event
	rs := ev("a", 2, nil, nil)
	rs.Resync = true
	for name, evs := range map[string][]*tenant.ChangeEvent{
		"no events":    nil,
		"gap":          {ev("a", 1, nil, nil), ev("a", 3, nil, nil)},
		"other tenant": {ev("a", 1, nil, nil), ev("b", 2, nil, nil)},
		"out of order": {ev("a", 2, nil, nil), ev("a", 1, nil, nil)},
		"resync":       {ev("a", 1, nil, nil), rs},
		"malformed":    {ev("a", 1, nil, nil), {TenantID: "a", Version: 2}},
		"duplicate":    {ev("a", 1, nil, nil), ev("a", 1, nil, nil)},
	} {
		if got, err := tcs.CoalesceEvents(evs); tenant.ErrorCode(err) != tenant.Invalid {
			t.Errorf("%s: CoalesceEvents = %v, %v; want an Invalid error", name, got, err)
		}
	}
	merged, err := tcs.CoalesceEvents([]*tenant.ChangeEvent{
		ev("a", 1, map[string]int64{"h": 1, "i": 1}, nil),
		ev("a", 2, map[string]int64{"h": 1}, map[string]int64{"i": 2}),
		ev("a", 3, map[string]int64{"h": 1, "i": 4}, map[string]int64{"j": 7}),
	})
	if err != nil {
		t.Fatalf("CoalesceEvents: %v", err)
	}
	want := ev("a", 3, map[string]int64{"h": 1, "i": 4}, map[string]int64{"i": 2, "j": 7})
	if diff := cmp.Diff(want, merged); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
}
