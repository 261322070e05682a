package streamer_test

// Tests of the applier's invalidation feed: the queue between the applies and
// the Broadcaster, its senders and the heartbeat. Most run in a
// testing/synctest bubble, whose clock moves only when every goroutine in it
// is blocked: timeouts and intervals take no real time, a test can tell that
// no time passed at all while the applier worked, and a goroutine left behind
// when the test ends fails it.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// memReplica applies everything and reports the hostnames an event claims
// or releases as changed.
type memReplica struct {
	tcs.Replica
	mu      sync.Mutex
	applied int
}

func (m *memReplica) Apply(_ context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	m.mu.Lock()
	m.applied++
	m.mu.Unlock()
	var hs []string
	for _, c := range slices.Concat(ev.Claims, ev.Released) {
		hs = append(hs, c.Hostname)
	}
	return tcs.ApplyResult{Applied: true, Hostnames: hs}, nil
}

func (m *memReplica) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied
}

// chanStream hands the applier the batches a test gives it, one at a time,
// and tells the test what the handler returned: a nil is a checkpoint.
type chanStream struct {
	streamer.Stream
	batches chan []streamer.Message
	handled chan error
}

func newChanStream() *chanStream {
	return &chanStream{batches: make(chan []streamer.Message), handled: make(chan error)}
}

func (s *chanStream) Consume(ctx context.Context, _ string, h streamer.Handler) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-s.batches:
			err := h(ctx, b)
			s.handled <- err
			if err != nil {
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					return nil // stopping, as the real streams do
				}
				return err
			}
		}
	}
}

// handle has the applier handle one batch of evs and fails the test if the
// handler returned an error.
func (s *chanStream) handle(t *testing.T, evs ...*tenant.ChangeEvent) {
	t.Helper()
	s.batches <- messages(t, evs...)
	if err := <-s.handled; err != nil {
		t.Fatalf("HandleBatch: %v", err)
	}
}

var errFeed = errors.New("injected broadcast failure")

// fakeBroadcaster records what it delivers. While gate is open (nil or
// closed) it delivers at once, after delay; while gate is shut, Broadcast
// waits for it like a frozen endpoint, until its context ends. The next
// hang calls wait for their context to end; the next fail calls fail.
type fakeBroadcaster struct {
	mu        sync.Mutex
	gate      chan struct{}
	delay     time.Duration
	hang      int
	fail      int
	deadlines []time.Duration // each call's context deadline, from when it was made
	got       []tcs.Invalidation
}

func (b *fakeBroadcaster) Broadcast(ctx context.Context, inv tcs.Invalidation) error {
	b.mu.Lock()
	if d, ok := ctx.Deadline(); ok {
		b.deadlines = append(b.deadlines, time.Until(d))
	}
	gate, delay, hang, fail := b.gate, b.delay, b.hang > 0, b.fail > 0 && b.hang == 0
	if hang {
		b.hang--
	} else if fail {
		b.fail--
	}
	b.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errFeed
	}
	b.mu.Lock()
	b.got = append(b.got, inv)
	b.mu.Unlock()
	return nil
}

func (b *fakeBroadcaster) received() []tcs.Invalidation {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// logCounter is a slog.Handler counting records by level and message.
type logCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCounter) WithGroup(string) slog.Handler            { return l }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.n[r.Level.String()+" "+r.Message]++
	return nil
}

// count returns how many records at level had a message containing substr.
func (l *logCounter) count(level slog.Level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for msg, c := range l.n {
		if strings.HasPrefix(msg, level.String()+" ") && strings.Contains(msg, substr) {
			n += c
		}
	}
	return n
}

// runApplier runs a in the background; stop ends it and returns what Run
// returned.
func runApplier(a *streamer.Applier) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// outcomes returns tcs_apply_broadcasts_total by outcome, with the sum of
// them all under "total".
func outcomes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, o := range []string{"sent", "expired", "dropped", "coalesced", "unsent"} {
		out[o] = metric(t, reg, "tcs_apply_broadcasts_total", o)
		out["total"] += out[o]
	}
	return out
}

func event(id string, version int64) *tenant.ChangeEvent {
	return replicatest.Event(id, version, map[string]int64{id + ".example.com": 1}, nil)
}

// TestFrozenFeedDoesNotSlowApplies: with a Broadcaster that never answers,
// the applier applies and checkpoints batch after batch without waiting
// (no time passes on the bubble's clock), the queue stays within MaxPending
// by dropping the oldest, and Run still stops after its bounded drain, every
// invalidation accounted for.
func TestFrozenFeedDoesNotSlowApplies(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroadcaster{gate: make(chan struct{})} // never opens
		rep, s, reg, logs := &memReplica{}, newChanStream(), prometheus.NewRegistry(), &logCounter{}
		const maxPending = 50
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: rep, Broadcaster: b, Registerer: reg,
			Logger: slog.New(logs), Feed: streamer.FeedConfig{MaxPending: maxPending, Senders: 2}})
		start := time.Now()
		stop := runApplier(a)
		// Each batch updates five hot tenants (whose invalidations coalesce)
		// and creates five new ones (which fill the queue).
		const batches, perBatch = 200, 10
		for i := range batches {
			var evs []*tenant.ChangeEvent
			for j := range perBatch / 2 {
				evs = append(evs, event(fmt.Sprintf("hot-%d", j), int64(i+1)), event(fmt.Sprintf("new-%04d-%d", i, j), 1))
			}
			s.handle(t, evs...) // applied and checkpointed
			if p := gauge(t, reg, "tcs_apply_broadcast_pending"); p > maxPending {
				t.Fatalf("after batch %d: %v invalidations pending, want at most %d", i, p, maxPending)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("applying %d batches took %v on the bubble's clock, want 0: an apply waited for the frozen feed", batches, d)
		}
		if n := rep.count(); n != batches*perBatch {
			t.Errorf("replica applied %d events, want %d", n, batches*perBatch)
		}
		got := outcomes(t, reg)
		if got["dropped"] == 0 || got["coalesced"] == 0 || got["sent"] != 0 {
			t.Errorf("outcomes %v; want some dropped, some coalesced, none sent", got)
		}
		if n := logs.count(slog.LevelWarn, "queue full"); n != 1 {
			t.Errorf("%d warnings of a full queue for %v drops in one instant, want 1", n, got["dropped"])
		}

		stopping := time.Now()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if d := time.Since(stopping); d != streamer.DefaultFeedTimeout {
			t.Errorf("Run returned %v after its context ended, want the drain timeout %v", d, streamer.DefaultFeedTimeout)
		}
		// Every invalidation (one per event, and the heartbeat queued at
		// start) ended one way or another.
		got = outcomes(t, reg)
		if want := float64(batches*perBatch + 1); got["total"] != want {
			t.Errorf("outcomes %v add up to %v, want %v", got, got["total"], want)
		}
		if p := gauge(t, reg, "tcs_apply_broadcast_pending"); p != 0 {
			t.Errorf("%v pending after Run returned, want 0", p)
		}
	})
}

// TestFeedCoalesces: two invalidations of a tenant pending together go out
// as one, with the higher version, the union of their hostnames and the
// newer CommittedAt and the higher version's trace context, whatever order
// they came in.
func TestFeedCoalesces(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroadcaster{gate: make(chan struct{})}
		s, reg := newChanStream(), prometheus.NewRegistry()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: &memReplica{}, Broadcaster: b, Registerer: reg,
			Feed: streamer.FeedConfig{Senders: 1, HeartbeatInterval: -1}})
		stop := runApplier(a)
		other := event("other", 1)
		s.handle(t, other)
		synctest.Wait() // the one sender waits at the gate with it

		// v1 released old.acme.example.com; v2 (a label change) names only
		// the two hostnames it holds. v2 comes first.
		v1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}, map[string]int64{"old.acme.example.com": 1})
		v2 := replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}, nil)
		v1.Trace = tenant.TraceContext{Parent: "00-11111111111111111111111111111111-1111111111111111-01"}
		v2.Trace = tenant.TraceContext{Parent: "00-22222222222222222222222222222222-2222222222222222-01"}
		s.handle(t, v2)
		s.handle(t, v1)
		if p := gauge(t, reg, "tcs_apply_broadcast_pending"); p != 1 {
			t.Errorf("%v pending, want 1 (acme's two invalidations as one)", p)
		}
		close(b.gate)
		synctest.Wait()
		want := []tcs.Invalidation{
			{TenantID: "other", Version: 1, Hostnames: []string{"other.example.com"}, CommittedAt: other.CommittedAt},
			{TenantID: "acme", Version: 2, Hostnames: []string{"acme.example.com", "old.acme.example.com", "www.acme.example.com"}, CommittedAt: v2.CommittedAt, Trace: v2.Trace},
		}
		if diff := cmp.Diff(want, b.received()); diff != "" {
			t.Errorf("broadcast (-want +got):\n%s", diff)
		}
		if got := outcomes(t, reg); got["sent"] != 2 || got["coalesced"] != 1 || got["total"] != 3 {
			t.Errorf("outcomes %v, want 2 sent and 1 coalesced", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// TestFeedQueueFullDropsOldest: a full queue evicts its oldest invalidation
// for a new tenant's, and does not take a heartbeat.
func TestFeedQueueFullDropsOldest(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroadcaster{gate: make(chan struct{})}
		s, reg := newChanStream(), prometheus.NewRegistry()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: &memReplica{}, Broadcaster: b, Registerer: reg,
			Feed: streamer.FeedConfig{Senders: 1, MaxPending: 2, HeartbeatInterval: time.Hour, Timeout: 2 * time.Hour, MaxAge: 2 * time.Hour}})
		start := time.Now()
		stop := runApplier(a)
		synctest.Wait() // the first heartbeat waits at the gate
		evA, evB, evC := event("alpha", 1), event("beta", 1), event("gamma", 1)
		for _, ev := range []*tenant.ChangeEvent{evA, evB, evC} {
			s.handle(t, ev) // one at a time: the queue's order is theirs
		}
		if p, got := gauge(t, reg, "tcs_apply_broadcast_pending"), outcomes(t, reg); p != 2 || got["dropped"] != 1 {
			t.Errorf("%v pending, outcomes %v; want 2 pending, 1 dropped", p, got)
		}
		time.Sleep(time.Hour) // the next heartbeat finds the queue full
		synctest.Wait()
		if got := outcomes(t, reg); got["dropped"] != 2 {
			t.Errorf("outcomes %v; want the heartbeat dropped too", got)
		}
		if age := gauge(t, reg, "tcs_apply_broadcast_oldest_pending_seconds"); age != time.Hour.Seconds() {
			t.Errorf("oldest pending age %vs, want %vs", age, time.Hour.Seconds())
		}
		close(b.gate)
		synctest.Wait()
		want := []tcs.Invalidation{
			{CommittedAt: start},
			{TenantID: "beta", Version: 1, Hostnames: []string{"beta.example.com"}, CommittedAt: evB.CommittedAt},
			{TenantID: "gamma", Version: 1, Hostnames: []string{"gamma.example.com"}, CommittedAt: evC.CommittedAt},
		}
		if diff := cmp.Diff(want, b.received()); diff != "" {
			t.Errorf("broadcast (-want +got):\n%s", diff)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// TestFeedRetries: each Broadcast runs under its own deadline; a failure or
// a timeout is retried after a backoff and delivers; through an outage of
// the endpoint nothing is given up, and after it heals what is pending goes
// out within a second.
func TestFeedRetries(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroadcaster{fail: 2}
		s, reg, logs := newChanStream(), prometheus.NewRegistry(), &logCounter{}
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: &memReplica{}, Broadcaster: b, Registerer: reg,
			Logger: slog.New(logs), Feed: streamer.FeedConfig{Senders: 1, HeartbeatInterval: -1}})
		stop := runApplier(a)
		delivered := func() []string {
			var out []string
			for _, inv := range b.received() {
				out = append(out, inv.TenantID)
			}
			return out
		}
		errs := func() float64 { return metric(t, reg, "tcs_apply_broadcast_errors_total", "") }

		s.handle(t, event("alpha", 1)) // fails twice, then goes out
		time.Sleep(time.Second)
		if got := delivered(); !slices.Equal(got, []string{"alpha"}) || errs() != 2 {
			t.Errorf("delivered %v after %v errors; want alpha after 2", got, errs())
		}

		b.mu.Lock()
		b.hang = 1 // times out once, then goes out
		b.mu.Unlock()
		s.handle(t, event("beta", 1))
		time.Sleep(streamer.DefaultFeedTimeout + time.Second)
		if got := delivered(); !slices.Equal(got, []string{"alpha", "beta"}) || errs() != 3 {
			t.Errorf("delivered %v after %v errors; want beta after a timeout", got, errs())
		}

		// The endpoint goes down for 20 s: nothing is given up, a newer
		// change of a tenant merges into its failed invalidation, and once
		// it heals everything pending goes out within a second.
		b.mu.Lock()
		b.fail = 1 << 30
		b.mu.Unlock()
		gamma2, delta := event("gamma", 2), event("delta", 1)
		s.handle(t, event("gamma", 1))
		s.handle(t, delta)
		time.Sleep(10 * time.Second)
		s.handle(t, gamma2)
		time.Sleep(10 * time.Second)
		if got := delivered(); !slices.Equal(got, []string{"alpha", "beta"}) {
			t.Errorf("delivered %v while the endpoint is down; want only alpha, beta", got)
		}
		b.mu.Lock()
		b.fail = 0
		b.mu.Unlock()
		healed := time.Now()
		for len(b.received()) < 4 {
			time.Sleep(10 * time.Millisecond)
		}
		if d := time.Since(healed); d > time.Second {
			t.Errorf("pending invalidations went out %v after the heal, want at most 1s", d)
		}
		synctest.Wait()
		got := b.received()
		if len(got) != 4 {
			t.Fatalf("delivered %v, want 4 invalidations", got)
		}
		wantLate := []tcs.Invalidation{
			{TenantID: "delta", Version: 1, Hostnames: []string{"delta.example.com"}, CommittedAt: delta.CommittedAt},
			{TenantID: "gamma", Version: 2, Hostnames: []string{"gamma.example.com"}, CommittedAt: gamma2.CommittedAt},
		}
		late := got[2:]
		slices.SortFunc(late, func(x, y tcs.Invalidation) int { return strings.Compare(x.TenantID, y.TenantID) })
		if diff := cmp.Diff(wantLate, late); diff != "" {
			t.Errorf("delivered after the heal (-want +got):\n%s", diff)
		}
		if got := outcomes(t, reg); got["sent"] != 4 || got["coalesced"] != 1 || got["expired"] != 0 || got["total"] != 5 {
			t.Errorf("outcomes %v; want 4 sent, 1 coalesced, none expired", got)
		}
		// About one try a second while down (each failure backs off up to
		// 1 s, jittered down by up to half).
		if n := errs() - 3; n < 20 || n > 45 {
			t.Errorf("%v failed calls in the 20 s outage, want one every 0.5-1 s", n)
		}
		// Warnings at most every 10 s; a recovery logged after each run of
		// failures (alpha's, beta's and the outage).
		if failed, back := logs.count(slog.LevelWarn, "broadcast invalidation failed"), logs.count(slog.LevelInfo, "succeed again"); failed < 2 || failed > 4 || back != 3 {
			t.Errorf("%d failure warnings and %d recoveries logged, want 2-4 and 3", failed, back)
		}
		b.mu.Lock()
		for i, d := range b.deadlines {
			if d != streamer.DefaultFeedTimeout {
				t.Errorf("call %d had %v to its deadline, want %v", i, d, streamer.DefaultFeedTimeout)
			}
		}
		b.mu.Unlock()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// TestFeedExpires: an invalidation that cannot be broadcast is retried
// until the newest change merged into it is MaxAge old, then given up
// (counted as expired, logged); a newer change of its tenant restarts that
// clock.
func TestFeedExpires(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroadcaster{fail: 1 << 30}
		s, reg, logs := newChanStream(), prometheus.NewRegistry(), &logCounter{}
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: &memReplica{}, Broadcaster: b, Registerer: reg,
			Logger: slog.New(logs), Feed: streamer.FeedConfig{Senders: 2, HeartbeatInterval: -1, MaxAge: 10 * time.Second}})
		stop := runApplier(a)
		s.handle(t, event("alpha", 1), event("beta", 1))
		time.Sleep(6 * time.Second)
		s.handle(t, event("beta", 2)) // beta's clock starts again
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := outcomes(t, reg); got["expired"] != 1 || got["coalesced"] != 1 {
			t.Errorf("outcomes %v after 11 s; want alpha expired and beta's two merged", got)
		}
		// Broadcast fails at once, so a failed invalidation is back in the
		// queue before its sender waits out its backoff.
		if p := gauge(t, reg, "tcs_apply_broadcast_pending"); p != 1 {
			t.Errorf("%v pending, want beta", p)
		}
		time.Sleep(7 * time.Second)
		synctest.Wait()
		if got := outcomes(t, reg); got["expired"] != 2 || got["sent"] != 0 || got["total"] != 3 {
			t.Errorf("outcomes %v after 18 s; want both expired, nothing sent", got)
		}
		if !streamer.FeedIdle(a) {
			t.Error("the queue still holds something after everything expired")
		}
		if n := logs.count(slog.LevelWarn, "giving up an invalidation"); n != 1 {
			t.Errorf("%d warnings of expired invalidations, want 1 (at most one per 10 s)", n)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// failingReplica fails its next fail applies, and hangs (until the call's
// context ends) on its next hang applies, before it applies anything.
type failingReplica struct {
	memReplica
	fail, hang int
	calls      int
}

var errStore = errors.New("injected store timeout")

func (f *failingReplica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	f.mu.Lock()
	f.calls++
	hang, fail := f.hang > 0, f.hang == 0 && f.fail > 0
	if hang {
		f.hang--
	} else if fail {
		f.fail--
	}
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return tcs.ApplyResult{}, ctx.Err()
	}
	if fail {
		return tcs.ApplyResult{}, errStore
	}
	return f.memReplica.Apply(ctx, ev)
}

// TestApplierRetriesApply: an apply that fails (a frozen store) is retried
// with growing, jittered backoff until it succeeds, and only then is the
// batch acknowledged; retries are counted and their warnings rate-limited.
// An applier stopped while retrying returns nil from Run, its batch not
// acknowledged.
func TestApplierRetriesApply(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rep := &failingReplica{fail: 6}
		s, reg, logs := newChanStream(), prometheus.NewRegistry(), &logCounter{}
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: rep, Registerer: reg, Logger: slog.New(logs), Concurrency: 1})
		stop := runApplier(a)
		start := time.Now()
		s.handle(t, event("alpha", 1)) // returns nil only once applied
		took := time.Since(start)
		if n := rep.count(); n != 1 {
			t.Errorf("applied %d events, want 1", n)
		}
		if n := metric(t, reg, "tcs_apply_retries_total", ""); n != 6 {
			t.Errorf("%v retries, want 6", n)
		}
		// Waits of 0.1, 0.2, 0.4, 0.8, 1.6 and 3.2 s, each jittered down by
		// up to half.
		if most := 6300 * time.Millisecond; took < most/2 || took > most {
			t.Errorf("six retries took %v, want %v to %v", took, most/2, most)
		}
		if warned, back := logs.count(slog.LevelWarn, "apply failed; retrying"), logs.count(slog.LevelInfo, "apply succeeds again"); warned != 1 || back != 1 {
			t.Errorf("%d warnings and %d recoveries logged, want 1 each", warned, back)
		}

		// The backoff stops growing at 5 s: a minute of failures is 12 to
		// 30 tries, not fewer.
		rep.mu.Lock()
		rep.fail = 1 << 30
		rep.calls = 0
		rep.mu.Unlock()
		handled := make(chan error, 1)
		go func() {
			s.batches <- messages(t, event("beta", 1))
			handled <- <-s.handled
		}()
		time.Sleep(time.Minute)
		rep.mu.Lock()
		calls := rep.calls
		rep.mu.Unlock()
		if calls < 12 || calls > 30 {
			t.Errorf("%d tries in a minute of failures, want 12 to 30", calls)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run stopped while retrying = %v, want nil", err)
		}
		if err := <-handled; !errors.Is(err, context.Canceled) || !errors.Is(err, errStore) {
			t.Errorf("the handler stopped while retrying returned %v, want the context's error and the last failure", err)
		}
		if n := rep.count(); n != 1 {
			t.Errorf("applied %d events, want only alpha", n)
		}
	})
}

// TestApplierRetriesHungApply: an apply that hangs until its caller gives up
// is no different: once it returns (here when the applier stops), Run
// returns nil, not the apply's error.
func TestApplierRetriesHungApply(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rep := &failingReplica{hang: 1}
		s := newChanStream()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: rep, Concurrency: 1})
		stop := runApplier(a)
		handled := make(chan error, 1)
		go func() {
			s.batches <- messages(t, event("alpha", 1))
			handled <- <-s.handled
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if err := <-handled; !errors.Is(err, context.Canceled) {
			t.Errorf("handler = %v, want the context's error", err)
		}
		if n := rep.count(); n != 0 {
			t.Errorf("applied %d events, want none", n)
		}
	})
}

// TestFeedHeartbeats: Run sends a heartbeat when it starts and every
// interval, stamped with the applier's clock; stopped with nothing queued,
// it returns at once.
func TestFeedHeartbeats(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroadcaster{}
		reg := prometheus.NewRegistry()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: newChanStream(), Replica: &memReplica{}, Broadcaster: b, Registerer: reg})
		start := time.Now()
		stop := runApplier(a)
		time.Sleep(2*streamer.DefaultHeartbeatInterval + time.Second)
		synctest.Wait()
		var want []tcs.Invalidation
		for i := range 3 {
			want = append(want, tcs.Invalidation{CommittedAt: start.Add(time.Duration(i) * streamer.DefaultHeartbeatInterval)})
		}
		got := b.received()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("heartbeats (-want +got):\n%s", diff)
		}
		for _, inv := range got {
			if !inv.Heartbeat() {
				t.Errorf("%+v is not a heartbeat", inv)
			}
		}
		last := start.Add(2 * streamer.DefaultHeartbeatInterval)
		if ts := gauge(t, reg, "tcs_apply_broadcast_last_success_timestamp_seconds"); ts != float64(last.UnixNano())/1e9 {
			t.Errorf("last success %v, want %v", ts, float64(last.UnixNano())/1e9)
		}
		stopping := time.Now()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if d := time.Since(stopping); d != 0 {
			t.Errorf("Run took %v to stop with nothing queued, want 0", d)
		}
	})
}

// TestFeedStopDrainsThenAbandons: stopped with a backlog, Run keeps sending
// for DrainTimeout, then abandons the rest (counted as unsent) and returns.
func TestFeedStopDrainsThenAbandons(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroadcaster{delay: 300 * time.Millisecond}
		s, reg := newChanStream(), prometheus.NewRegistry()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: s, Replica: &memReplica{}, Broadcaster: b, Registerer: reg,
			Feed: streamer.FeedConfig{Senders: 1, HeartbeatInterval: -1, DrainTimeout: 2 * time.Second}})
		stop := runApplier(a)
		var evs []*tenant.ChangeEvent
		for i := range 10 {
			evs = append(evs, event(fmt.Sprintf("tenant-%d", i), 1))
		}
		s.handle(t, evs...)
		stopping := time.Now()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if d := time.Since(stopping); d != 2*time.Second {
			t.Errorf("Run returned %v after its context ended, want the drain timeout 2s", d)
		}
		// Sends end at 0.3 s, 0.6 s … 1.8 s; the seventh is in flight at 2 s.
		if got := outcomes(t, reg); got["sent"] != 6 || got["unsent"] != 4 || len(b.received()) != 6 {
			t.Errorf("outcomes %v, %d delivered; want 6 sent, 4 unsent", got, len(b.received()))
		}
	})
}

// TestFrozenFeedReplicates: on the embedded stream and replica, an applier
// whose Broadcaster never answers converges and checkpoints everything, and
// stops.
func TestFrozenFeedReplicates(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ids, hostnames := history(t, r.src)
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: r.src, Stream: r.stream})
	if _, err := p.PublishOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep := r.replica(t, "us-east-1")
	b := &fakeBroadcaster{gate: make(chan struct{})} // never opens
	a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: r.stream, Replica: rep, Broadcaster: b,
		Feed: streamer.FeedConfig{DrainTimeout: 10 * time.Millisecond}})
	runUntilConverged(t, a, rep, r.src, ids, hostnames)
	if lag, err := r.stream.Lag(a.Group()); err != nil || lag != 0 {
		t.Errorf("stream lag %d, %v after converging; want everything checkpointed", lag, err)
	}
}

// TestRunTwice: an Applier runs once at a time.
func TestRunTwice(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Stream: newChanStream(), Replica: &memReplica{}, Broadcaster: &fakeBroadcaster{}})
		stop := runApplier(a)
		synctest.Wait()
		if err := a.Run(context.Background()); err == nil {
			t.Error("a second Run of a running applier succeeded")
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		// Stopped, it can run again.
		if err := runApplier(a)(); err != nil {
			t.Fatalf("Run again = %v", err)
		}
	})
}

// BenchmarkApplierFeed measures HandleBatch (an in-memory replica, batches
// of 100 events of 1,000 tenants) with no Broadcaster, one that answers at
// once, and one that never answers: the feed costs applying about the same
// whatever the Broadcaster does.
func BenchmarkApplierFeed(b *testing.B) {
	const perBatch, tenants = 100, 1000
	var batches [][]streamer.Message
	for i := range tenants / perBatch * 10 {
		var evs []*tenant.ChangeEvent
		for j := range perBatch {
			n := i*perBatch + j
			evs = append(evs, event(fmt.Sprintf("tenant-%04d", n%tenants), int64(n/tenants+1)))
		}
		data := make([]streamer.Message, len(evs))
		for k, ev := range evs {
			d, err := streamer.EncodeEvent(ev)
			if err != nil {
				b.Fatal(err)
			}
			data[k] = streamer.Message{PartitionKey: ev.TenantID, Data: d}
		}
		batches = append(batches, data)
	}
	for _, bc := range []struct {
		name string
		b    tcs.Broadcaster
	}{
		{"none", nil},
		{"instant", &fakeBroadcaster{}},
		{"frozen", &fakeBroadcaster{gate: make(chan struct{})}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: &memReplica{}, Broadcaster: bc.b, Concurrency: 1,
				Feed: streamer.FeedConfig{HeartbeatInterval: -1, DrainTimeout: time.Millisecond}})
			if bc.b != nil {
				defer streamer.StartFeed(b.Context(), a)()
			}
			i := 0
			for b.Loop() {
				if err := a.HandleBatch(b.Context(), batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i*perBatch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
