package kinesis_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

// TestWorkersShareShards runs two workers of one group on a 4-shard stream.
//
// Phase 1: worker a starts alone and takes every shard; records flow; then
// worker b starts and the two split the shards 2/2 by graceful handover
// (b asks, a hands over after its batch in hand), so nothing is delivered
// twice. After the split each shard is delivered by exactly one worker.
//
// Phase 2: worker a crashes (kinesis.WithCrash: it stops writing anything,
// so its leases stay held and its last batches stay un-checkpointed) while
// records are being appended. Once a's leases expire, b takes them. No record
// is lost, and per key the order holds except for replays: a key's record
// may come again after a later one only if b re-delivers it from a's last
// batch of that shard — the one batch a may have accepted but not
// checkpointed.
//
// The takeover is timed on the clock b judges expiry by (Config.Now) and
// measured in leases: from a's crash until b holds all 4 leases it must take
// at most LeaseDuration + the scan interval (an eighth of the lease, at most
// 1 s) + a quarter of a lease for the calls: a's leases expire a lease after
// b first saw their counters unchanged (at most a scan interval after a's
// last write, which came before the crash), and b takes them then, not at
// its next scan.
func TestWorkersShareShards(t *testing.T) {
	t.Parallel()
	const group, lease = "apply-test", 4 * time.Second
	_, cfg := newStream(t, 4)
	cfg.LeaseDuration = lease
	cfg.PollInterval = 50 * time.Millisecond
	cfgA, cfgB := cfg, cfg
	cfgA.Owner, cfgB.Owner = "worker-a", "worker-b"
	clock := time.Now
	cfgB.Now = func() time.Time { return clock() }
	regB := prometheus.NewRegistry()
	cfgB.Registerer = regB
	a, b := open(t, cfgA), open(t, cfgB)

	ks := keys(40)
	log := newLog()
	crashCtx, crash := kinesis.WithCrash(t.Context())
	// In phase 2 (rounds from 8 on), a crashes as its handler accepts a
	// batch holding round 10 or later: accepted, never checkpointed.
	recordA := log.handler("a")
	var crashedAt atomic.Int64
	crashTime := make(chan time.Time, 1)
	handlerA := func(ctx context.Context, batch []streamer.Message) error {
		err := recordA(ctx, batch)
		if crashedAt.Load() == 0 && slices.ContainsFunc(batch, func(m streamer.Message) bool { return roundOf(m) >= 10 }) {
			crashedAt.Store(int64(len(log.snapshot())))
			crash()
			crashTime <- clock()
		}
		return err
	}
	consume(t, crashCtx, a, group, handlerA)
	phase0 := rounds(ks, 0, 3)
	if err := a.Append(t.Context(), phase0); err != nil {
		t.Fatalf("Append: %v", err)
	}
	log.waitFor(t, "worker a alone to deliver every record", covers(phase0))
	waitLeases(t, a, group, "worker a to hold all 4 leases", func(ls []kinesis.Lease) bool {
		return len(ls) == 4 && owners(ls)["worker-a"] == 4
	})

	consume(t, t.Context(), b, group, log.handler("b"))
	ls := waitLeases(t, a, group, "the workers to hold 2 leases each", func(ls []kinesis.Lease) bool {
		o := owners(ls)
		return o["worker-a"] == 2 && o["worker-b"] == 2
	})
	t.Logf("leases after balancing: %+v", ls)
	split := len(log.snapshot())
	phase1 := rounds(ks, 3, 5)
	if err := b.Append(t.Context(), phase1); err != nil {
		t.Fatalf("Append: %v", err)
	}
	log.waitFor(t, "every record of phase 1", covers(phase1))
	ds := log.snapshot()
	if dups := duplicates(ds); len(dups) > 0 {
		t.Errorf("graceful handover delivered records twice: %q", dups)
	}
	checkOrder(t, slices.Concat(phase0, phase1), ds, nil)
	shardsOf := map[string]map[string]bool{"a": {}, "b": {}}
	for _, d := range ds[split:] {
		shardsOf[d.worker][d.msg.Shard] = true
	}
	t.Logf("after balancing, a delivered shards %v and b %v", slices.Sorted(maps.Keys(shardsOf["a"])), slices.Sorted(maps.Keys(shardsOf["b"])))
	if len(shardsOf["a"]) == 0 || len(shardsOf["b"]) == 0 {
		t.Errorf("after balancing, a delivered shards %v and b %v; want each some", shardsOf["a"], shardsOf["b"])
	}
	for sh := range shardsOf["a"] {
		if shardsOf["b"][sh] {
			t.Errorf("after balancing, shard %s was delivered by both workers", sh)
		}
	}

	// Phase 2: append in the background; crash a once it has delivered
	// some of it.
	tookOver := make(chan time.Duration, 1)
	go func() {
		crashed := <-crashTime
		for t.Context().Err() == nil {
			ls, err := b.Leases(t.Context(), group)
			if err == nil && owners(ls)["worker-b"] == 4 {
				tookOver <- clock().Sub(crashed)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	phase2 := rounds(ks, 8, 12)
	appended := make(chan error, 1)
	go func() {
		for i := 0; i < len(phase2); i += len(ks) {
			if err := b.Append(t.Context(), phase2[i:i+len(ks)]); err != nil {
				appended <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		appended <- nil
	}()
	if err := <-appended; err != nil {
		t.Fatalf("Append: %v", err)
	}
	all := slices.Concat(phase0, phase1, phase2)
	log.waitFor(t, "worker b to deliver everything after a's leases expired", covers(all))
	t.Logf("worker a crashed after %d deliveries", crashedAt.Load())
	waitLeases(t, b, group, "worker b to hold all 4 leases", func(ls []kinesis.Lease) bool {
		return owners(ls)["worker-b"] == 4
	})
	took := <-tookOver
	scan := min(lease/8, time.Second)
	t.Logf("b held all of a's leases %.2f leases after a crashed (%v)", float64(took)/float64(lease), took.Round(time.Millisecond))
	if limit := lease + scan + lease/4; took > limit {
		t.Errorf("b took a's leases over %.2f leases after a crashed; want at most %.2f (a lease, a scan interval, a quarter of a lease for the calls)",
			float64(took)/float64(lease), float64(limit)/float64(lease))
	}
	if got := metric(t, regB, "tcs_kinesis_lease_events_total", map[string]string{"event": "expired"}); got < 2 {
		t.Errorf("worker b took %v expired leases, want 2", got)
	}

	// Replays: a's last batch of each shard may come again from b.
	ds = log.snapshot()
	lastBatchOfA := map[string]int{} // shard → a's last batch number there
	for _, d := range ds {
		if d.worker == "a" {
			lastBatchOfA[d.msg.Shard] = d.batch
		}
	}
	inLastBatchOfA := map[string]bool{}
	for _, d := range ds {
		if d.worker == "a" && d.batch == lastBatchOfA[d.msg.Shard] {
			inLastBatchOfA[string(d.msg.Data)] = true
		}
	}
	replayed := 0
	checkOrder(t, all, ds, func(d delivery) error {
		replayed++
		if d.worker != "b" || !inLastBatchOfA[string(d.msg.Data)] {
			return fmt.Errorf("not a replay by b of a's last, un-checkpointed batch of shard %s", d.msg.Shard)
		}
		return nil
	})
	t.Logf("%d deliveries in all, %d replays of a's un-checkpointed batches", len(ds), replayed)
	for _, dup := range duplicates(ds) {
		if !inLastBatchOfA[dup] {
			t.Errorf("%q delivered twice but was not in a's last batch of its shard", dup)
		}
	}
	if replayed == 0 {
		t.Errorf("nothing was replayed; want b to deliver again the batch a accepted as it crashed")
	}
}
