package streamer_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

func openReplica(t *testing.T) *boltreplica.Replica {
	t.Helper()
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	return rep
}

func messages(t *testing.T, evs ...*tenant.ChangeEvent) []streamer.Message {
	t.Helper()
	out := make([]streamer.Message, len(evs))
	for i, ev := range evs {
		data, err := streamer.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = streamer.Message{PartitionKey: ev.TenantID, Data: data, Shard: "0", Sequence: "1"}
	}
	return out
}

// countingReplica records how the applier calls it; it is a
// tcs.BatchApplier when batch is set.
type countingReplica struct {
	tcs.Replica
	mu       sync.Mutex
	applies  int
	batches  []int
	batchErr error // returned by ApplyBatch, which then applies nothing
	// batchFailures, if positive, is how many more ApplyBatch calls
	// return batchErr; later ones succeed.
	batchFailures int
	invalidApply  string
}

func (c *countingReplica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	c.mu.Lock()
	c.applies++
	c.mu.Unlock()
	if ev.TenantID == c.invalidApply {
		return tcs.ApplyResult{}, tenant.Errorf(tenant.Invalid, "rejected by the replica")
	}
	return c.Replica.Apply(ctx, ev)
}

type batchingReplica struct{ *countingReplica }

func (b batchingReplica) ApplyBatch(ctx context.Context, evs []*tenant.ChangeEvent) ([]tcs.ApplyResult, error) {
	b.mu.Lock()
	b.batches = append(b.batches, len(evs))
	err := b.batchErr
	if b.batchFailures > 0 {
		b.batchFailures--
		if b.batchFailures == 0 {
			b.batchErr = nil
		}
	}
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return b.Replica.(tcs.BatchApplier).ApplyBatch(ctx, evs)
}

func metric(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if outcome == "" || (l.GetName() == "outcome" && l.GetValue() == outcome) {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return 0
}

func TestApplierSkipsOtherRegions(t *testing.T) {
	t.Parallel()
	a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
	fix := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
	fix.Tenant.Labels["rev"] = "repaired"
	fix.Resync, fix.Regions = true, []string{"eu-west-1", "ap-southeast-2"}
	b1 := replicatest.Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil)
	b1.Regions = []string{"us-east-1"}

	for _, tc := range []struct {
		region      string
		wantAcme    *tenant.Tenant
		wantBeta    bool
		otherRegion float64
	}{
		{"us-east-1", a1.Tenant, true, 1},
		{"eu-west-1", fix.Tenant, false, 1},
		{"ap-southeast-2", fix.Tenant, false, 1},
	} {
		t.Run(tc.region, func(t *testing.T) {
			t.Parallel()
			for _, batch := range []bool{false, true} {
				rep := openReplica(t)
				var r tcs.Replica = &countingReplica{Replica: rep}
				if batch {
					r = batchingReplica{&countingReplica{Replica: rep}}
				}
				reg := prometheus.NewRegistry()
				a := streamer.NewApplier(streamer.ApplierConfig{Region: tc.region, Replica: r, Registerer: reg})
				if err := a.HandleBatch(t.Context(), messages(t, a1, fix, b1)); err != nil {
					t.Fatalf("HandleBatch: %v", err)
				}
				got, err := rep.GetTenant(t.Context(), "acme")
				if err != nil || got.Labels["rev"] != tc.wantAcme.Labels["rev"] {
					t.Fatalf("batch=%v: acme = %+v, %v; want label rev=%s", batch, got, err, tc.wantAcme.Labels["rev"])
				}
				if _, err := rep.GetTenant(t.Context(), "beta"); (err == nil) != tc.wantBeta {
					t.Fatalf("batch=%v: beta applied = %v, want %v", batch, err == nil, tc.wantBeta)
				}
				if n := metric(t, reg, "tcs_apply_events_total", "other_region"); n != tc.otherRegion {
					t.Fatalf("batch=%v: other_region = %v, want %v", batch, n, tc.otherRegion)
				}
				if n := metric(t, reg, "tcs_apply_events_total", "applied"); n != 2 {
					t.Fatalf("batch=%v: applied = %v, want 2", batch, n)
				}
			}
		})
	}
}

// TestApplierBatches: a tcs.BatchApplier gets each stream batch in one call
// (never Apply), and malformed records in the batch are skipped one by one.
func TestApplierBatches(t *testing.T) {
	t.Parallel()
	rep := openReplica(t)
	c := &countingReplica{Replica: rep}
	reg := prometheus.NewRegistry()
	a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: batchingReplica{c}, Registerer: reg})

	a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
	bad := replicatest.Event("bad", 2, map[string]int64{"bad.example.com": 1}, nil)
	bad.Tenant.Version = 3 // event and document versions differ
	b1 := replicatest.Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil)
	batch := messages(t, a1, bad, b1)
	batch = append(batch[:1], append([]streamer.Message{{Data: []byte{0xff, 0xff}, Shard: "0", Sequence: "2"}}, batch[1:]...)...)

	if err := a.HandleBatch(t.Context(), batch); err != nil {
		t.Fatalf("HandleBatch: %v", err)
	}
	if c.applies != 0 || len(c.batches) != 1 || c.batches[0] != 2 {
		t.Fatalf("Apply called %d times, ApplyBatch with %v; want one ApplyBatch of the 2 good events", c.applies, c.batches)
	}
	for _, id := range []string{"acme", "beta"} {
		if _, err := rep.GetTenant(t.Context(), id); err != nil {
			t.Fatalf("GetTenant(%s): %v", id, err)
		}
	}
	if n := metric(t, reg, "tcs_apply_undecodable_total", ""); n != 2 {
		t.Fatalf("undecodable/malformed = %v, want 2", n)
	}
	// A batch of only malformed or foreign events applies nothing at all.
	if err := a.HandleBatch(t.Context(), messages(t, bad)); err != nil || len(c.batches) != 1 {
		t.Fatalf("HandleBatch of a malformed event = %v, batches %v", err, c.batches)
	}
}

// TestApplierBatchRejected: if the replica rejects a batch as Invalid, the
// applier applies its events one by one and skips only the one rejected.
func TestApplierBatchRejected(t *testing.T) {
	t.Parallel()
	rep := openReplica(t)
	c := &countingReplica{Replica: rep, batchErr: tenant.Errorf(tenant.Invalid, "too big"), invalidApply: "beta"}
	reg := prometheus.NewRegistry()
	a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: batchingReplica{c}, Registerer: reg})
	evs := []*tenant.ChangeEvent{
		replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil),
		replicatest.Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil),
		replicatest.Event("gamma", 1, map[string]int64{"gamma.example.com": 1}, nil),
	}
	if err := a.HandleBatch(t.Context(), messages(t, evs...)); err != nil {
		t.Fatalf("HandleBatch: %v", err)
	}
	for id, want := range map[string]bool{"acme": true, "beta": false, "gamma": true} {
		if _, err := rep.GetTenant(t.Context(), id); (err == nil) != want {
			t.Errorf("%s applied = %v, want %v", id, err == nil, want)
		}
	}
	if n := metric(t, reg, "tcs_apply_undecodable_total", ""); n != 1 {
		t.Fatalf("malformed = %v, want 1", n)
	}

	// Any other error is retried until the batch is applied or the
	// applier stops; a stopping applier's handler returns the context's
	// error, so that the batch is not checkpointed.
	c.batchErr = errCrash
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := a.HandleBatch(ctx, messages(t, evs...)); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errCrash) {
		t.Fatalf("HandleBatch with a failing replica, stopped = %v, want the context's error and the crash", err)
	}
	if n := metric(t, reg, "tcs_apply_retries_total", ""); n < 1 {
		t.Errorf("retries = %v, want at least 1", n)
	}
}

// TestApplierBatchRetried: on the embedded stream, a batch apply that fails
// a few times is retried by the running applier, which converges and
// checkpoints everything, never calling Apply.
func TestApplierBatchRetried(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ids, hostnames := history(t, r.src)
	if _, err := r.src.Resync(t.Context(), []catalog.ResyncRequest{{ID: "alpha"}, {ID: "gamma"}}, []string{"us-east-1"}); err != nil {
		t.Fatal(err)
	}
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: r.src, Stream: r.stream})
	if _, err := p.PublishOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep := r.replica(t, "us-east-1")
	c := &countingReplica{Replica: rep, batchErr: errCrash, batchFailures: 3}
	reg := prometheus.NewRegistry()
	a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: r.stream, Replica: batchingReplica{c}, Registerer: reg})
	runUntilConverged(t, a, rep, r.src, ids, hostnames)
	if c.applies != 0 {
		t.Fatalf("Apply called %d times; want only ApplyBatch", c.applies)
	}
	if n := metric(t, reg, "tcs_apply_retries_total", ""); n != 3 {
		t.Errorf("retries = %v, want 3", n)
	}
	if lag, err := r.stream.Lag(a.Group()); err != nil || lag != 0 {
		t.Errorf("stream lag %d, %v after converging; want everything checkpointed", lag, err)
	}
}

// recordingBroadcaster records the invalidations it is given.
type recordingBroadcaster struct {
	mu   sync.Mutex
	invs []tcs.Invalidation
}

func (b *recordingBroadcaster) Broadcast(_ context.Context, inv tcs.Invalidation) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.invs = append(b.invs, inv)
	return nil
}

func (b *recordingBroadcaster) take() []tcs.Invalidation {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.invs
	b.invs = nil
	return out
}

// startFeed runs a's broadcast senders (as Run would) until the test ends.
func startFeed(t *testing.T, a *streamer.Applier) {
	t.Helper()
	stop := streamer.StartFeed(t.Context(), a)
	t.Cleanup(stop)
}

// waitBroadcast waits until a has broadcast everything queued.
func waitBroadcast(t *testing.T, a *streamer.Applier) {
	t.Helper()
	testwait.For(t, "the invalidations queued or in flight to be broadcast", func() bool { return streamer.FeedIdle(a) })
}

// TestApplierBroadcastsOnlyChanges: an update is broadcast with its
// hostnames; a resync of what the region already holds is applied but
// broadcasts nothing, so resyncing every tenant leaves caches alone; a
// resync that repairs content is broadcast.
func TestApplierBroadcastsOnlyChanges(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		rep := openReplica(t)
		var r tcs.Replica = rep
		if batch {
			r = batchingReplica{&countingReplica{Replica: rep}}
		}
		b := &recordingBroadcaster{}
		reg := prometheus.NewRegistry()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: r, Broadcaster: b, Registerer: reg,
			Feed: streamer.FeedConfig{HeartbeatInterval: -1}})
		startFeed(t, a)
		handle := func(evs ...*tenant.ChangeEvent) []tcs.Invalidation {
			t.Helper()
			if err := a.HandleBatch(t.Context(), messages(t, evs...)); err != nil {
				t.Fatalf("batch=%v: HandleBatch: %v", batch, err)
			}
			waitBroadcast(t, a)
			return b.take()
		}
		a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}, nil)
		if got := handle(a1); len(got) != 1 || len(got[0].Hostnames) != 2 {
			t.Fatalf("batch=%v: the create broadcast %+v, want one invalidation of both hostnames", batch, got)
		}
		same := *a1
		same.Tenant, same.Resync = a1.Tenant.Clone(), true
		if got := handle(&same, &same); len(got) != 0 {
			t.Fatalf("batch=%v: resyncs of the stored document broadcast %+v, want nothing", batch, got)
		}
		if n := metric(t, reg, "tcs_apply_events_total", "applied"); n != 3 {
			t.Fatalf("batch=%v: applied = %v, want 3 (the resyncs count as applied)", batch, n)
		}
		fixed := same
		fixed.Tenant = a1.Tenant.Clone()
		fixed.Tenant.Labels = map[string]string{"rev": "repaired"}
		if got := handle(&fixed); len(got) != 1 || len(got[0].Hostnames) != 2 {
			t.Fatalf("batch=%v: a repairing resync broadcast %+v, want one invalidation of both hostnames", batch, got)
		}
	}
}

// slowReplica records the order and overlap of Apply calls; each takes a
// moment, so that concurrent ones overlap. Its Apply fails for failOn.
type slowReplica struct {
	tcs.Replica
	mu             sync.Mutex
	inFlight, most int
	seen           map[string][]int64
	failOn         string
}

var errApply = errors.New("injected apply failure")

func (s *slowReplica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	s.mu.Lock()
	s.inFlight++
	s.most = max(s.most, s.inFlight)
	s.seen[ev.TenantID] = append(s.seen[ev.TenantID], ev.Version)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	time.Sleep(20 * time.Millisecond)
	if ev.TenantID == s.failOn {
		return tcs.ApplyResult{}, errApply
	}
	return s.Replica.Apply(ctx, ev)
}

// TestApplierAppliesTenantsConcurrently: a replica without ApplyBatch gets
// up to Concurrency tenants at once, each tenant's events in order; the
// first failure fails the batch.
func TestApplierAppliesTenantsConcurrently(t *testing.T) {
	t.Parallel()
	// Versions with gaps, so that no two events of a tenant are merged
	// (tcs.Coalescible): each is its own Apply.
	var evs []*tenant.ChangeEvent
	for v := int64(1); v <= 7; v += 2 {
		for _, id := range []string{"alpha", "beta", "gamma", "delta", "eps"} {
			evs = append(evs, replicatest.Event(id, v, map[string]int64{id + ".example.com": 1}, nil))
		}
	}
	for _, tc := range []struct {
		concurrency, wantMost int
	}{{1, 1}, {3, 3}, {0, 5}} {
		rep := openReplica(t)
		s := &slowReplica{Replica: rep, seen: map[string][]int64{}}
		b := &recordingBroadcaster{}
		reg := prometheus.NewRegistry()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: s, Broadcaster: b, Concurrency: tc.concurrency, Registerer: reg,
			Feed: streamer.FeedConfig{HeartbeatInterval: -1}})
		startFeed(t, a)
		if err := a.HandleBatch(t.Context(), messages(t, evs...)); err != nil {
			t.Fatalf("Concurrency %d: HandleBatch: %v", tc.concurrency, err)
		}
		waitBroadcast(t, a)
		if s.most > max(tc.wantMost, 1) || (tc.wantMost > 1 && s.most < 2) {
			t.Errorf("Concurrency %d: up to %d applies at once, want at most %d (and more than one)", tc.concurrency, s.most, tc.wantMost)
		}
		for id, versions := range s.seen {
			if !slices.Equal(versions, []int64{1, 3, 5, 7}) {
				t.Errorf("Concurrency %d: %s applied in the order %v, want 1 3 5 7", tc.concurrency, id, versions)
			}
			if got, err := rep.GetTenant(t.Context(), id); err != nil || got.Version != 7 {
				t.Errorf("Concurrency %d: %s = %+v, %v; want version 7", tc.concurrency, id, got, err)
			}
		}
		// One invalidation per event, but those of a tenant still queued
		// together go out as one: every tenant's last is its version 7.
		newest := map[string]int64{}
		for _, inv := range b.take() {
			newest[inv.TenantID] = max(newest[inv.TenantID], inv.Version)
		}
		sent, coalesced := metric(t, reg, "tcs_apply_broadcasts_total", "sent"), metric(t, reg, "tcs_apply_broadcasts_total", "coalesced")
		if len(s.seen) != 5 || len(newest) != 5 || sent+coalesced != float64(len(evs)) {
			t.Errorf("Concurrency %d: applied tenants %v, broadcast %v, %v sent + %v coalesced; want all 5 tenants at version 7, %d in all", tc.concurrency, s.seen, newest, sent, coalesced, len(evs))
		}
		for id, v := range newest {
			if v != 7 {
				t.Errorf("Concurrency %d: %s broadcast up to version %d, want 7", tc.concurrency, id, v)
			}
		}
	}

	s := &slowReplica{Replica: openReplica(t), seen: map[string][]int64{}, failOn: "gamma"}
	a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: s, Concurrency: 4})
	// The batch is retried until the context ends; no retry goes past
	// gamma's failing first version.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := a.HandleBatch(ctx, messages(t, evs...)); !errors.Is(err, errApply) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("HandleBatch with a failing apply, stopped = %v, want the failure and the deadline", err)
	}
	if got := s.seen["gamma"]; len(got) < 2 || slices.ContainsFunc(got, func(v int64) bool { return v != 1 }) {
		t.Errorf("gamma applied %v, want version 1 tried several times and no later one", got)
	}
}

// TestRedeliveryResendsInvalidations: an applier that applied an event and
// stopped before broadcasting it (the batch is not checkpointed) is
// redelivered the batch; the apply is then a no-op, but the invalidation
// goes out.
func TestRedeliveryResendsInvalidations(t *testing.T) {
	t.Parallel()
	rep := openReplica(t)
	a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}, nil)
	if _, err := rep.Apply(t.Context(), a1); err != nil { // applied, never broadcast
		t.Fatal(err)
	}
	b := &recordingBroadcaster{}
	reg := prometheus.NewRegistry()
	a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: rep, Broadcaster: b, Registerer: reg,
		Feed: streamer.FeedConfig{HeartbeatInterval: -1}})
	startFeed(t, a)
	if err := a.HandleBatch(t.Context(), messages(t, a1)); err != nil {
		t.Fatal(err)
	}
	waitBroadcast(t, a)
	got := b.take()
	if len(got) != 1 || got[0].Version != 1 || !slices.Equal(got[0].Hostnames, []string{"acme.example.com", "www.acme.example.com"}) {
		t.Fatalf("redelivery broadcast %+v, want acme@1's hostnames", got)
	}
	if n := metric(t, reg, "tcs_apply_events_total", "noop"); n != 1 {
		t.Errorf("noop = %v, want 1 (the redelivery applies nothing)", n)
	}
}

// TestApplierCoalescesTenantRuns: a batch holding k consecutive versions of
// one tenant costs a replica that is not a tcs.BatchApplier one Apply for
// that tenant (tcs.CoalesceEvents), leaves it as applying the events one by
// one does, counts the k-1 folded events as "coalesced", and invalidates
// every hostname the events held or released, intermediate ones included.
// A redelivery of the batch is one no-op Apply per tenant.
func TestApplierCoalescesTenantRuns(t *testing.T) {
	t.Parallel()
	ev := replicatest.Event
	evs := []*tenant.ChangeEvent{
		ev("acme", 1, map[string]int64{"a.example.com": 1}, nil),
		ev("beta", 1, map[string]int64{"b.example.com": 1}, nil),
		ev("acme", 2, map[string]int64{"a.example.com": 1, "tmp.example.com": 1}, nil),
		ev("acme", 3, map[string]int64{"a.example.com": 1}, map[string]int64{"tmp.example.com": 2}),
		ev("acme", 4, map[string]int64{"a.example.com": 1, "c.example.com": 1}, nil),
		// beta takes tmp, after acme released it.
		ev("beta", 2, map[string]int64{"b.example.com": 1, "tmp.example.com": 3}, nil),
		ev("acme", 5, map[string]int64{"c.example.com": 1}, map[string]int64{"a.example.com": 2}),
	}
	hostnames := []string{"a.example.com", "b.example.com", "c.example.com", "tmp.example.com"}
	want := openReplica(t)
	for _, e := range evs {
		if _, err := want.Apply(t.Context(), e); err != nil {
			t.Fatalf("Apply(%s@%d): %v", e.TenantID, e.Version, err)
		}
	}
	for _, concurrency := range []int{1, 0} {
		rep := openReplica(t)
		c := &countingReplica{Replica: rep}
		b := &recordingBroadcaster{}
		reg := prometheus.NewRegistry()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: c, Broadcaster: b, Registerer: reg,
			Concurrency: concurrency, Feed: streamer.FeedConfig{HeartbeatInterval: -1}})
		startFeed(t, a)
		if err := a.HandleBatch(t.Context(), messages(t, evs...)); err != nil {
			t.Fatalf("concurrency %d: HandleBatch: %v", concurrency, err)
		}
		// Concurrency 1 applies in batch order, merging only adjacent
		// events of a tenant: acme@1, beta@1, acme@2-4, beta@2, acme@5.
		wantApplies := map[int]int{1: 5, 0: 2}[concurrency]
		if c.applies != wantApplies {
			t.Fatalf("concurrency %d: %d Apply calls for %d events of 2 tenants, want %d", concurrency, c.applies, len(evs), wantApplies)
		}
		for _, id := range []string{"acme", "beta"} {
			got, err := rep.GetTenant(t.Context(), id)
			w, _ := want.GetTenant(t.Context(), id)
			if err != nil || !tenant.Equal(got, w) {
				t.Fatalf("concurrency %d: %s = %+v, %v; want %+v", concurrency, id, got, err, w)
			}
		}
		for _, h := range hostnames {
			got, gerr := rep.LookupHostname(t.Context(), h)
			w, werr := want.LookupHostname(t.Context(), h)
			if tenant.ErrorCode(gerr) != tenant.ErrorCode(werr) || (gerr == nil && !tenant.Equal(got, w)) {
				t.Fatalf("concurrency %d: lookup %s = %+v, %v; one by one %+v, %v", concurrency, h, got, gerr, w, werr)
			}
		}
		applied, coalesced := metric(t, reg, "tcs_apply_events_total", "applied"), metric(t, reg, "tcs_apply_events_total", "coalesced")
		if int(applied) != wantApplies || int(applied+coalesced) != len(evs) {
			t.Fatalf("concurrency %d: applied %v, coalesced %v; want %d applied and %d in all", concurrency, applied, coalesced, wantApplies, len(evs))
		}
		waitBroadcast(t, a)
		invalidated := map[string]bool{}
		for _, inv := range b.take() {
			for _, h := range inv.Hostnames {
				invalidated[h] = true
			}
		}
		for _, h := range hostnames {
			if !invalidated[h] {
				t.Errorf("concurrency %d: %s not invalidated (got %v)", concurrency, h, invalidated)
			}
		}

		// A redelivery of the batch changes nothing, in as few Applies.
		c.applies = 0
		if err := a.HandleBatch(t.Context(), messages(t, evs...)); err != nil {
			t.Fatalf("concurrency %d: HandleBatch again: %v", concurrency, err)
		}
		if c.applies != wantApplies {
			t.Fatalf("concurrency %d: redelivery made %d Apply calls, want %d", concurrency, c.applies, wantApplies)
		}
		if n := metric(t, reg, "tcs_apply_events_total", "applied"); n != applied {
			t.Fatalf("concurrency %d: applied = %v after a redelivery, want %v", concurrency, n, applied)
		}
	}
}
