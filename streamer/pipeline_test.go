package streamer_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

var errCrash = errors.New("injected crash")

// history writes a small history with creates, updates, a hostname moving
// between tenants, a delete and a re-create, and returns the tenant ids and
// hostnames it used.
func history(t *testing.T, src catalog.Store) (ids, hostnames []string) {
	t.Helper()
	ctx := context.Background()
	must := func(_ *tenant.Tenant, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(src.Create(ctx, storetest.NewTenant("alpha", "a.example.com", "shared.example.com"), "test"))
	must(src.Create(ctx, storetest.NewTenant("beta", "b.example.com"), "test"))
	must(src.Create(ctx, storetest.NewTenant("gamma", "g.example.com"), "test"))
	a := storetest.NewTenant("alpha", "a.example.com")
	must(src.Update(ctx, a, 1, "test")) // releases shared
	b := storetest.NewTenant("beta", "b.example.com", "shared.example.com")
	must(src.Update(ctx, b, 1, "test")) // claims shared
	must(src.Delete(ctx, "gamma", 0, "test"))
	a.Labels = map[string]string{"tier": "gold"}
	must(src.Update(ctx, a, 2, "test"))
	must(src.Create(ctx, storetest.NewTenant("gamma", "g.example.com", "g2.example.com"), "test"))
	must(src.Create(ctx, storetest.NewTenant("delta", "d.example.com"), "test"))
	return []string{"alpha", "beta", "gamma", "delta"},
		[]string{"a.example.com", "b.example.com", "g.example.com", "g2.example.com", "d.example.com", "shared.example.com"}
}

type rig struct {
	src    *bolt.Store
	stream *boltlog.Log
	dir    string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	src, err := bolt.Open(filepath.Join(dir, "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	log, err := boltlog.Open(filepath.Join(dir, "stream.db"), boltlog.Options{PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return &rig{src: src, stream: log, dir: dir}
}

func (r *rig) replica(t *testing.T, region string) *boltreplica.Replica {
	t.Helper()
	rep, err := boltreplica.Open(filepath.Join(r.dir, "replica-"+region+".db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	return rep
}

// streamed consumes the whole stream with a fresh group and returns the
// (tenant, version) of every event on it.
func streamed(t *testing.T, s streamer.Stream, want int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	total := 0
	group := fmt.Sprintf("check-%d", time.Now().UnixNano())
	err := s.Consume(ctx, group, func(_ context.Context, batch []streamer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			ev, err := streamer.DecodeEvent(m.Data)
			if err != nil {
				return err
			}
			seen[fmt.Sprintf("%s@%d", ev.TenantID, ev.Version)]++
			total++
		}
		if len(seen) >= want {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// faultyStream fails one call, either before or after doing it.
type faultyStream struct {
	streamer.Stream
	failAppend, afterAppend bool
}

func (f *faultyStream) Append(ctx context.Context, recs []streamer.Record) error {
	if f.failAppend {
		f.failAppend = false
		if f.afterAppend {
			if err := f.Stream.Append(ctx, recs); err != nil {
				return err
			}
		}
		return errCrash
	}
	return f.Stream.Append(ctx, recs)
}

type faultyOutbox struct {
	streamer.Outbox
	failRead, failAck, afterAck bool
}

func (f *faultyOutbox) ReadOutbox(ctx context.Context, shard int, after uint64, limit int) ([]catalog.OutboxEntry, error) {
	if f.failRead {
		f.failRead = false
		return nil, errCrash
	}
	return f.Outbox.ReadOutbox(ctx, shard, after, limit)
}

func (f *faultyOutbox) AckOutbox(ctx context.Context, shard int, upTo uint64) error {
	if f.failAck {
		f.failAck = false
		if f.afterAck {
			if err := f.Outbox.AckOutbox(ctx, shard, upTo); err != nil {
				return err
			}
		}
		return errCrash
	}
	return f.Outbox.AckOutbox(ctx, shard, upTo)
}

// TestPublisherCrashes kills the publisher between each pair of its steps
// (read → append → ack) and checks that, after a restart, every committed
// change is on the stream (invariant 1) and the outbox is drained.
func TestPublisherCrashes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		outbox faultyOutbox
		stream faultyStream
	}{
		{"before read", faultyOutbox{failRead: true}, faultyStream{}},
		{"append lost", faultyOutbox{}, faultyStream{failAppend: true}},
		{"after append, before ack", faultyOutbox{}, faultyStream{failAppend: true, afterAppend: true}},
		{"ack lost", faultyOutbox{failAck: true}, faultyStream{}},
		{"after ack", faultyOutbox{failAck: true, afterAck: true}, faultyStream{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			history(t, r.src)
			committed, err := r.src.ReadOutbox(context.Background(), 0, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			outbox, stream := c.outbox, c.stream
			outbox.Outbox, stream.Stream = r.src, r.stream
			crashing := streamer.NewPublisher(streamer.PublisherConfig{Outbox: &outbox, Stream: &stream, BatchSize: 4})
			if _, err := crashing.PublishOnce(context.Background()); !errors.Is(err, errCrash) {
				t.Fatalf("PublishOnce = %v, want the injected crash", err)
			}
			// Restart: a new publisher over the same files drains the outbox.
			p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: r.src, Stream: r.stream, BatchSize: 4})
			for {
				n, err := p.PublishOnce(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
			}
			left, _ := r.src.ReadOutbox(context.Background(), 0, 0, 1000)
			if len(left) != 0 {
				t.Errorf("%d outbox entries left after the restart", len(left))
			}
			want := map[string]bool{}
			for _, e := range committed {
				want[fmt.Sprintf("%s@%d", e.Event.TenantID, e.Event.Version)] = true
			}
			seen := streamed(t, r.stream, len(want))
			for k := range want {
				if seen[k] == 0 {
					t.Errorf("committed change %s never reached the stream", k)
				}
			}
			for k := range seen {
				if !want[k] {
					t.Errorf("stream carries %s, which was never committed", k)
				}
			}
		})
	}
}

// faultyReplica fails on the n-th Apply, before or after applying it: with
// kill set it kills the applier there (cancels its context, as a crash
// would, and returns the context's error), otherwise it returns errCrash.
type faultyReplica struct {
	tcs.Replica
	mu      sync.Mutex
	calls   int
	crashAt int
	after   bool
	kill    context.CancelFunc
}

func (f *faultyReplica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	f.mu.Lock()
	f.calls++
	crash := f.calls == f.crashAt
	f.mu.Unlock()
	fail := func() (tcs.ApplyResult, error) {
		if f.kill != nil {
			f.kill()
			return tcs.ApplyResult{}, ctx.Err()
		}
		return tcs.ApplyResult{}, errCrash
	}
	if crash && !f.after {
		return fail()
	}
	res, err := f.Replica.Apply(ctx, ev)
	if crash && err == nil {
		return fail()
	}
	return res, err
}

// applyCalls returns how many Apply calls an applier with concurrency makes
// to converge a fresh replica from r's stream: the crash points of
// TestApplierCrashes and TestApplierRetriesFailures (a tenant's consecutive
// events in a batch take one Apply, so there are fewer than events).
func applyCalls(t *testing.T, r *rig, concurrency int, ids, hostnames []string) int {
	t.Helper()
	region := fmt.Sprintf("count-%d", concurrency)
	rep := r.replica(t, region)
	counted := &faultyReplica{Replica: rep}
	a := streamer.NewApplier(streamer.ApplierConfig{Region: region, Stream: r.stream, Replica: counted, Concurrency: concurrency})
	runUntil(t, a, func() string {
		if lag, err := r.stream.Lag(a.Group()); err != nil || lag != 0 {
			return fmt.Sprintf("stream lag %d, %v", lag, err)
		}
		return replicaDiff(rep, r.src, ids, hostnames)
	})
	counted.mu.Lock()
	defer counted.mu.Unlock()
	if counted.calls == 0 {
		t.Fatalf("%s: converged without an Apply", region)
	}
	return counted.calls
}

// TestApplierCrashes kills the applier before and after each Apply call of a
// history (before the checkpoint, in both cases) and checks that after a
// restart the replica converges to the source of truth.
func TestApplierCrashes(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ids, hostnames := history(t, r.src)
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: r.src, Stream: r.stream})
	if _, err := p.PublishOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := applyCalls(t, r, 0, ids, hostnames)
	for n := 1; n <= calls; n++ {
		for _, after := range []bool{false, true} {
			region := fmt.Sprintf("crash-%d-%v", n, after)
			rep := r.replica(t, region)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			faulty := &faultyReplica{Replica: rep, crashAt: n, after: after, kill: cancel}
			a := streamer.NewApplier(streamer.ApplierConfig{Region: region, Stream: r.stream, Replica: faulty})
			if err := a.Run(ctx); err != nil || !errors.Is(ctx.Err(), context.Canceled) {
				t.Fatalf("%s: Run = %v (context %v), want nil after the kill", region, err, ctx.Err())
			}
			cancel()
			// Restart with a healthy replica handle over the same file.
			a = streamer.NewApplier(streamer.ApplierConfig{Region: region, Stream: r.stream, Replica: rep})
			runUntilConverged(t, a, rep, r.src, ids, hostnames)
		}
	}
}

// TestApplierRetriesFailures: on the embedded stream, an apply that fails
// (before or after it took effect) at each event of a history in turn is
// retried by the running applier, which converges without a restart and
// checkpoints everything.
func TestApplierRetriesFailures(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ids, hostnames := history(t, r.src)
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: r.src, Stream: r.stream})
	if _, err := p.PublishOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := applyCalls(t, r, 1, ids, hostnames)
	for n := 1; n <= calls; n++ {
		for _, after := range []bool{false, true} {
			region := fmt.Sprintf("fail-%d-%v", n, after)
			rep := r.replica(t, region)
			faulty := &faultyReplica{Replica: rep, crashAt: n, after: after}
			reg := prometheus.NewRegistry()
			a := streamer.NewApplier(streamer.ApplierConfig{Region: region, Stream: r.stream, Replica: faulty, Concurrency: 1, Registerer: reg})
			// Converged and checkpointed: an apply that failed after taking
			// effect leaves the replica converged before its retry ends.
			runUntil(t, a, func() string {
				if lag, err := r.stream.Lag(a.Group()); err != nil || lag != 0 {
					return fmt.Sprintf("stream lag %d, %v", lag, err)
				}
				return replicaDiff(rep, r.src, ids, hostnames)
			})
			if got := metric(t, reg, "tcs_apply_retries_total", ""); got != 1 {
				t.Errorf("%s: %v retries, want 1", region, got)
			}
		}
	}
}

// runUntilConverged runs the applier until the replica matches the source
// of truth, or fails after a deadline.
func runUntilConverged(t *testing.T, a *streamer.Applier, rep tcs.Replica, src catalog.Store, ids, hostnames []string) {
	t.Helper()
	runUntil(t, a, func() string { return replicaDiff(rep, src, ids, hostnames) })
}

// runUntil runs the applier until diff returns "" (within 20 s), then stops
// it; it fails the test if the applier fails.
func runUntil(t *testing.T, a *streamer.Applier, diff func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("applier: %v", err)
		}
	}()
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "the replica to converge", func() (bool, string) {
		d := diff()
		return d == "", d
	})
}

// waitOutboxDrained waits until src's outbox is empty.
func waitOutboxDrained(t *testing.T, src catalog.Store, timeout time.Duration, what string) {
	t.Helper()
	testwait.Until(t, timeout, 5*time.Millisecond, what, func() (bool, string) {
		left, _, err := src.OutboxDepth(t.Context(), 10)
		if err != nil {
			t.Fatal(err)
		}
		return left == 0, fmt.Sprintf("%d+ entries left", left)
	})
}

// replicaDiff compares a replica with the source of truth: every tenant's
// live document (or absence) and every hostname's owner.
func replicaDiff(rep tcs.Replica, src catalog.Store, ids, hostnames []string) string {
	ctx := context.Background()
	type view struct {
		Docs  map[string]*tenant.Tenant
		Hosts map[string]string
	}
	read := func(get func(string) (*tenant.Tenant, error), lookup func(string) (*tenant.Tenant, error)) view {
		v := view{Docs: map[string]*tenant.Tenant{}, Hosts: map[string]string{}}
		for _, id := range ids {
			if d, err := get(id); err == nil && !d.Deleted() {
				v.Docs[id] = d
			}
		}
		for _, h := range hostnames {
			if d, err := lookup(h); err == nil {
				v.Hosts[h] = fmt.Sprintf("%s@%d", d.ID, d.Version)
			}
		}
		return v
	}
	truth := read(func(id string) (*tenant.Tenant, error) { return src.Get(ctx, id) }, func(h string) (*tenant.Tenant, error) { return src.LookupHostname(ctx, h) })
	got := read(func(id string) (*tenant.Tenant, error) { return rep.GetTenant(ctx, id) }, func(h string) (*tenant.Tenant, error) { return rep.LookupHostname(ctx, h) })
	return cmp.Diff(truth, got)
}

// TestPipelineThreeRegions runs publisher and three appliers together while
// the catalog keeps writing, and checks every region converges.
func TestPipelineThreeRegions(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	run(streamer.NewPublisher(streamer.PublisherConfig{Outbox: r.src, Stream: r.stream}).Run)
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	reps := map[string]tcs.Replica{}
	for _, region := range regions {
		rep := r.replica(t, region)
		reps[region] = rep
		run(streamer.NewApplier(streamer.ApplierConfig{Region: region, Stream: r.stream, Replica: rep}).Run)
	}
	ids, hostnames := history(t, r.src)
	for _, region := range regions {
		testwait.Until(t, 20*time.Second, 10*time.Millisecond, region+" to converge", func() (bool, string) {
			diff := replicaDiff(reps[region], r.src, ids, hostnames)
			return diff == "", diff
		})
	}
	cancel()
	wg.Wait()
}

var _ streamer.OutboxNotifier = (*bolt.Store)(nil)

// TestPublisherWakesOnCommit: with a store that notifies, a commit is
// published at once, not at the next poll (here an hour away).
func TestPublisherWakesOnCommit(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: r.src, Stream: r.stream, PollInterval: time.Hour, Registerer: reg})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// The publisher subscribes to commits before it reads: once it has found
	// the outbox empty, it waits for the poll (an hour) or a commit.
	testwait.For(t, "the publisher's first read of the empty outbox", func() bool {
		return gauge(t, reg, "tcs_publish_last_read_timestamp_seconds") > 0
	})
	if _, err := r.src.Create(ctx, storetest.NewTenant("acme", "acme.example.com"), "test"); err != nil {
		t.Fatal(err)
	}
	waitOutboxDrained(t, r.src, 10*time.Second, "the commit to be published (the publisher to wake)")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// flakyStream fails every third Append (half of them after storing the
// records), and records the order in which each tenant's versions landed.
type flakyStream struct {
	streamer.Stream
	mu    sync.Mutex
	calls int
}

func (f *flakyStream) Append(ctx context.Context, recs []streamer.Record) error {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	switch n % 6 {
	case 0:
		return errCrash
	case 3:
		if err := f.Stream.Append(ctx, recs); err != nil {
			return err
		}
		return errCrash
	}
	return f.Stream.Append(ctx, recs)
}

// flakyOutbox fails every other AckOutbox and every fifth ReadOutbox.
type flakyOutbox struct {
	streamer.Outbox
	mu          sync.Mutex
	reads, acks int
}

func (f *flakyOutbox) ReadOutbox(ctx context.Context, shard int, after uint64, limit int) ([]catalog.OutboxEntry, error) {
	f.mu.Lock()
	f.reads++
	fail := f.reads%5 == 0
	f.mu.Unlock()
	if fail {
		return nil, errCrash
	}
	return f.Outbox.ReadOutbox(ctx, shard, after, limit)
}

func (f *flakyOutbox) AckOutbox(ctx context.Context, shard int, upTo uint64) error {
	f.mu.Lock()
	f.acks++
	fail := f.acks%2 == 0
	f.mu.Unlock()
	if fail {
		return errCrash
	}
	return f.Outbox.AckOutbox(ctx, shard, upTo)
}

// TestPublisherRunFaults: Run, which reads ahead of its appends and
// acknowledges behind them, with reads, appends and acknowledgements that
// keep failing, while writes continue. Every committed change reaches the
// stream, each tenant's versions land in commit order (duplicates allowed,
// never a step back), and the outbox ends empty.
func TestPublisherRunFaults(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: &flakyOutbox{Outbox: r.src}, Stream: &flakyStream{Stream: r.stream},
		BatchSize: 3, PollInterval: time.Millisecond, RetryBackoff: time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	const tenants, versions = 6, 8
	for v := 1; v <= versions; v++ {
		for i := range tenants {
			id := fmt.Sprintf("tenant-%d", i)
			doc := storetest.NewTenant(id, id+".example.com")
			doc.Labels = map[string]string{"v": fmt.Sprint(v)}
			var err error
			if v == 1 {
				_, err = r.src.Create(ctx, doc, "test")
			} else {
				_, err = r.src.Update(ctx, doc, int64(v-1), "test")
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	waitOutboxDrained(t, r.src, 20*time.Second, "the outbox to drain")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Read the stream in order: per tenant, versions never go back, and
	// every version is there.
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	var mu sync.Mutex
	last, seen := map[string]int64{}, map[string]bool{}
	err := r.stream.Consume(cctx, "check", func(_ context.Context, batch []streamer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			ev, err := streamer.DecodeEvent(m.Data)
			if err != nil {
				return err
			}
			// A redelivered batch may repeat versions, but within the
			// stream a tenant's versions restart only at a duplicate run.
			if ev.Version < last[ev.TenantID] && !seen[fmt.Sprintf("%s@%d", ev.TenantID, ev.Version)] {
				return fmt.Errorf("%s: version %d after %d, never seen before", ev.TenantID, ev.Version, last[ev.TenantID])
			}
			last[ev.TenantID] = ev.Version
			seen[fmt.Sprintf("%s@%d", ev.TenantID, ev.Version)] = true
		}
		if len(seen) == tenants*versions {
			ccancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != tenants*versions {
		t.Fatalf("stream holds %d of %d (tenant, version) pairs", len(seen), tenants*versions)
	}
}

// pollOutbox is a sharded Outbox without notifications holding what a
// test puts in it; it counts polls (reads of the heads, which come first).
type pollOutbox struct {
	shards  int // 0 means 1
	mu      sync.Mutex
	entries []catalog.OutboxEntry
	reads   int
	acked   map[int]uint64
}

func (o *pollOutbox) OutboxShards() int { return max(o.shards, 1) }

func (o *pollOutbox) OutboxHeads(context.Context) ([]uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reads++
	heads := make([]uint64, o.OutboxShards())
	for _, e := range o.entries {
		heads[e.Shard] = max(heads[e.Shard], e.Seq)
	}
	return heads, nil
}

func (o *pollOutbox) ReadOutbox(_ context.Context, shard int, after uint64, limit int) ([]catalog.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []catalog.OutboxEntry
	for _, e := range o.entries {
		if e.Shard == shard && e.Seq > after && e.Seq > o.acked[shard] && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (o *pollOutbox) AckOutbox(_ context.Context, shard int, upTo uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.acked == nil {
		o.acked = map[int]uint64{}
	}
	o.acked[shard] = max(o.acked[shard], upTo)
	return nil
}

func (o *pollOutbox) OutboxDepth(_ context.Context, limit int) (int, time.Time, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, oldest := 0, time.Time{}
	for _, e := range o.entries {
		if e.Seq > o.acked[e.Shard] && n < limit {
			if oldest.IsZero() || e.Event.CommittedAt.Before(oldest) {
				oldest = e.Event.CommittedAt
			}
			n++
		}
	}
	return n, oldest, nil
}

func (o *pollOutbox) put(e catalog.OutboxEntry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.entries = append(o.entries, e)
}

func (o *pollOutbox) readCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reads
}

// appendCounter is a Stream that counts the records appended to it.
type appendCounter struct {
	streamer.Stream
	n atomic.Int64
}

func (a *appendCounter) Append(_ context.Context, records []streamer.Record) error {
	a.n.Add(int64(len(records)))
	return nil
}

// TestPublisherPollsIdleOutboxLess: an outbox found empty again and again
// is read at most every MaxPollInterval, not every PollInterval; an entry
// that appears is published within MaxPollInterval, and the reads that
// follow it are PollInterval apart again.
func TestPublisherPollsIdleOutboxLess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o, s := &pollOutbox{}, &appendCounter{}
		p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: o, Stream: s})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(10 * time.Second)
		// Waits of 10, 20 and 40 ms, then 50 ms each: about 200 reads, not
		// the 1,000 of polling every 10 ms.
		if n := o.readCount(); n < 195 || n > 205 {
			t.Errorf("%d reads of an idle outbox in 10 s, want about 200", n)
		}
		synctest.Wait() // the reader waits out its poll
		ev := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
		o.put(catalog.OutboxEntry{Seq: 1, Event: *ev})
		put := time.Now()
		for s.n.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		if d := time.Since(put); d > streamer.DefaultMaxPollInterval {
			t.Errorf("an entry was published %v after it appeared, want at most %v", d, streamer.DefaultMaxPollInterval)
		}
		synctest.Wait() // the next read came at once, found nothing, and waits
		reads := o.readCount()
		time.Sleep(35 * time.Millisecond)
		// Found entries reset the wait: reads 10 and 30 ms later.
		if n := o.readCount() - reads; n != 2 {
			t.Errorf("%d reads in the 35 ms after publishing, want 2", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// downStream is a Stream whose Append fails while down is set.
type downStream struct {
	appendCounter
	down  atomic.Bool
	calls atomic.Int64
}

func (d *downStream) Append(ctx context.Context, records []streamer.Record) error {
	d.calls.Add(1)
	if d.down.Load() {
		return errCrash
	}
	return d.appendCounter.Append(ctx, records)
}

// TestPublisherResumesSoonAfterOutage: through a minute of failing appends
// the publisher keeps retrying (backing off to once a second, never
// exiting), and once the stream heals the batch goes out within a second.
func TestPublisherResumesSoonAfterOutage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o, s := &pollOutbox{}, &downStream{}
		s.down.Store(true)
		ev := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
		o.put(catalog.OutboxEntry{Seq: 1, Event: *ev})
		p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: o, Stream: s})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(time.Minute)
		// Waits of 0.1 to 0.8 s, then 1 s: about 64 tries, not 16 as
		// with waits growing to 5 s.
		if n := s.calls.Load(); n < 60 || n > 66 {
			t.Errorf("%d appends tried in a minute of outage, want about 64", n)
		}
		s.down.Store(false)
		healed := time.Now()
		for s.n.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		if d := time.Since(healed); d > time.Second {
			t.Errorf("published %v after the stream healed, want at most 1s", d)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned %v during the outage", err)
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// TestPublisherStallGauges: while appends fail, the entries read wait as
// pending and their age grows (what the pipeline-stalled alert watches),
// while the outbox reads go on; once the stream heals, nothing is pending
// and the last commit published is the entries'.
func TestPublisherStallGauges(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o, s := &pollOutbox{}, &downStream{}
		s.down.Store(true)
		committed := time.Now()
		for i := range 3 {
			ev := replicatest.Event(fmt.Sprintf("t%d", i), 1, map[string]int64{fmt.Sprintf("t%d.example.com", i): 1}, nil)
			ev.CommittedAt = committed
			o.put(catalog.OutboxEntry{Seq: uint64(i + 1), Event: *ev})
		}
		reg := prometheus.NewRegistry()
		p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: o, Stream: s, Registerer: reg})
		if got := gauge(t, reg, "tcs_publish_last_read_timestamp_seconds"); got != 0 {
			t.Errorf("last read before any read = %v, want 0", got)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := gauge(t, reg, "tcs_publish_pending_events"); got != 3 {
			t.Errorf("pending events during the outage = %v, want 3", got)
		}
		if got := gauge(t, reg, "tcs_publish_oldest_pending_seconds"); got < 29 || got > 31 {
			t.Errorf("oldest pending after 30 s of outage = %vs, want about 30", got)
		}
		if got := gauge(t, reg, "tcs_publish_last_read_timestamp_seconds"); time.Since(time.Unix(0, int64(got*1e9))) > time.Second {
			t.Errorf("last read %v ago during an append outage; reads go on", time.Since(time.Unix(0, int64(got*1e9))))
		}
		if got := gauge(t, reg, "tcs_publish_last_commit_timestamp_seconds"); got != 0 {
			t.Errorf("last commit published during the outage = %v, want 0 (nothing published)", got)
		}
		// The outbox is counted every 15 s: its three entries wait, the
		// oldest for 30 s.
		if got := gauge(t, reg, "tcs_publish_outbox_depth"); got != 3 {
			t.Errorf("outbox depth during the outage = %v, want 3", got)
		}
		if got := gauge(t, reg, "tcs_publish_outbox_oldest_seconds"); got < 29 || got > 31 {
			t.Errorf("oldest outbox entry after 30 s of outage = %vs, want about 30", got)
		}
		s.down.Store(false)
		for s.n.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		if got := gauge(t, reg, "tcs_publish_pending_events"); got != 0 {
			t.Errorf("pending events after healing = %v, want 0", got)
		}
		if got := gauge(t, reg, "tcs_publish_oldest_pending_seconds"); got != 0 {
			t.Errorf("oldest pending after healing = %v, want 0", got)
		}
		if got, want := gauge(t, reg, "tcs_publish_last_commit_timestamp_seconds"), float64(committed.UnixNano())/1e9; got != want {
			t.Errorf("last commit published = %v, want %v", got, want)
		}
		time.Sleep(streamer.DefaultDepthInterval) // the next count
		synctest.Wait()
		if got := gauge(t, reg, "tcs_publish_outbox_depth"); got != 0 {
			t.Errorf("outbox depth once acknowledged = %v, want 0", got)
		}
		if got := gauge(t, reg, "tcs_publish_outbox_oldest_seconds"); got != 0 {
			t.Errorf("oldest outbox entry once acknowledged = %vs, want 0", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// recordStream is a Stream that keeps the records appended to it.
type recordStream struct {
	streamer.Stream
	mu      sync.Mutex
	records []streamer.Record
}

func (r *recordStream) Append(_ context.Context, records []streamer.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, records...)
	return nil
}

func (r *recordStream) appended() []streamer.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]streamer.Record(nil), r.records...)
}

// TestPublisherShards: with an outbox of several shards, Run publishes
// every entry of every shard once, each tenant's versions in order (its
// entries are in one shard), acknowledges every shard up to its head, and
// publishes entries committed while it runs.
func TestPublisherShards(t *testing.T) {
	t.Parallel()
	const shards, tenants, versions = 4, 20, 5
	o := &pollOutbox{shards: shards}
	seqs := make([]uint64, shards)
	put := func(id string, v int64) {
		sh := catalog.OutboxShard(id, shards)
		seqs[sh]++
		ev := replicatest.Event(id, v, map[string]int64{id + ".example.com": 1}, nil)
		o.put(catalog.OutboxEntry{Shard: sh, Seq: seqs[sh], Event: *ev})
	}
	for v := int64(1); v <= versions-1; v++ {
		for i := range tenants {
			put(fmt.Sprintf("t-%02d", i), v)
		}
	}
	s := &recordStream{}
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: o, Stream: s, BatchSize: 7, DepthInterval: -1})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testwait.For(t, "the first versions published", func() bool { return len(s.appended()) == tenants*(versions-1) })
	for i := range tenants {
		put(fmt.Sprintf("t-%02d", i), versions)
	}
	testwait.For(t, "every version published", func() bool { return len(s.appended()) >= tenants*versions })
	testwait.For(t, "every shard acknowledged", func() bool {
		n, _, _ := o.OutboxDepth(t.Context(), 1000)
		return n == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	last := map[string]int64{}
	for _, r := range s.appended() {
		ev, err := streamer.DecodeEvent(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if r.PartitionKey != ev.TenantID || ev.Version != last[ev.TenantID]+1 {
			t.Fatalf("record %s@%d (partition key %s) after version %d", ev.TenantID, ev.Version, r.PartitionKey, last[ev.TenantID])
		}
		last[ev.TenantID] = ev.Version
	}
	if len(last) != tenants || len(s.appended()) != tenants*versions {
		t.Fatalf("%d records of %d tenants, want %d of %d", len(s.appended()), len(last), tenants*versions, tenants)
	}
}
