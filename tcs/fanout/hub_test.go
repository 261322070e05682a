package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/fanout"
)

// event is what a subscriber saw: an invalidation's version, or a gap (0).
type event = int64

const gapEvent event = 0

// recorder subscribes to a hub and records what it sees. Its deliver can be
// made to block until released, to play a slow subscriber.
type recorder struct {
	mu     sync.Mutex
	events []event
	// gate, if set, is received from before each delivery is recorded;
	// entered is signalled just before.
	gate    chan struct{}
	entered chan struct{}
	seen    chan event
	done    chan error
}

func subscribe(tb testing.TB, h *fanout.Hub, gate chan struct{}) (*recorder, context.CancelFunc) {
	tb.Helper()
	r := &recorder{gate: gate, entered: make(chan struct{}, 1000), seen: make(chan event, 100000), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	before := h.Subscribers()
	go func() {
		r.done <- h.Subscribe(ctx,
			func(inv tcs.Invalidation) {
				if r.gate != nil {
					r.entered <- struct{}{}
					<-r.gate
				}
				r.record(inv.Version)
			},
			func() { r.record(gapEvent) })
	}()
	tb.Cleanup(func() {
		cancel()
		<-r.done
	})
	// Subscribe registers before its first gap: wait for that gap so that
	// the subscription is live before the test broadcasts.
	r.wait(tb, gapEvent)
	if got := h.Subscribers(); got != before+1 {
		tb.Fatalf("Subscribers() = %d, want %d", got, before+1)
	}
	return r, cancel
}

func (r *recorder) record(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.seen <- e
}

// wait blocks until the recorder has seen e.
func (r *recorder) wait(tb testing.TB, e event) {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-r.seen:
			if got == e {
				return
			}
		case <-timeout:
			tb.Fatalf("timed out waiting for event %d; saw %v", e, r.snapshot())
		}
	}
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

func inv(v int64) tcs.Invalidation {
	return tcs.Invalidation{TenantID: "acme", Version: v, Hostnames: []string{"acme.example.com"}}
}

func TestDeliversInOrderToEverySubscriber(t *testing.T) {
	t.Parallel()
	h := fanout.New(fanout.Options{Buffer: 1000})
	a, _ := subscribe(t, h, nil)
	b, _ := subscribe(t, h, nil)
	const n = 500
	for v := int64(1); v <= n; v++ {
		if err := h.Broadcast(context.Background(), inv(v)); err != nil {
			t.Fatal(err)
		}
	}
	a.wait(t, n)
	b.wait(t, n)
	want := []event{gapEvent}
	for v := int64(1); v <= n; v++ {
		want = append(want, v)
	}
	for name, r := range map[string]*recorder{"a": a, "b": b} {
		if diff := cmp.Diff(want, r.snapshot()); diff != "" {
			t.Errorf("subscriber %s saw (-want +got):\n%s", name, diff)
		}
	}
}

func TestConcurrentBroadcastsOneOrderForAll(t *testing.T) {
	t.Parallel()
	h := fanout.New(fanout.Options{Buffer: 10000})
	a, _ := subscribe(t, h, nil)
	b, _ := subscribe(t, h, nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 250 {
				_ = h.Broadcast(context.Background(), inv(int64(1+w*1000+i)))
			}
		})
	}
	wg.Wait()
	_ = h.Broadcast(context.Background(), inv(99999))
	a.wait(t, 99999)
	b.wait(t, 99999)
	if diff := cmp.Diff(a.snapshot(), b.snapshot()); diff != "" {
		t.Errorf("subscribers saw different orders (-a +b):\n%s", diff)
	}
	if got := len(a.snapshot()); got != 1+1000+1 {
		t.Errorf("saw %d events, want %d", got, 1002)
	}
}

func TestSlowSubscriberGetsGapAndDoesNotBlockBroadcast(t *testing.T) {
	t.Parallel()
	h := fanout.New(fanout.Options{Buffer: 4})
	gate := make(chan struct{})
	slow, _ := subscribe(t, h, gate)
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // runs before the subscriptions' cleanups
	fast, _ := subscribe(t, h, nil)

	// The slow subscriber takes invalidation 1 and blocks delivering it;
	// 2..5 fill its buffer; 6..100 are dropped for it alone. The fast one
	// is kept in lockstep, so its buffer of 4 never fills.
	if err := h.Broadcast(context.Background(), inv(1)); err != nil {
		t.Fatal(err)
	}
	<-slow.entered
	fast.wait(t, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for v := int64(2); v <= 100; v++ {
			if err := h.Broadcast(context.Background(), inv(v)); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-fast.seen:
			case <-time.After(10 * time.Second):
				t.Errorf("fast subscriber did not get invalidation %d", v)
				return
			}
		}
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Broadcast blocked on a slow subscriber")
	}

	fastWant := []event{gapEvent}
	for v := int64(1); v <= 100; v++ {
		fastWant = append(fastWant, v)
	}
	if diff := cmp.Diff(fastWant, fast.snapshot()); diff != "" {
		t.Errorf("fast subscriber saw (-want +got):\n%s", diff)
	}

	release() // let the slow one catch up
	slow.wait(t, gapEvent)
	if err := h.Broadcast(context.Background(), inv(101)); err != nil {
		t.Fatal(err)
	}
	slow.wait(t, 101)

	// What the slow subscriber saw: its first gap, then some prefix of the
	// broadcast in order, then a gap, then what came after the gap.
	want := []event{gapEvent, 1, 2, 3, 4, 5, gapEvent, 101}
	if diff := cmp.Diff(want, slow.snapshot()); diff != "" {
		t.Errorf("slow subscriber saw (-want +got):\n%s", diff)
	}
}

func TestUnsubscribeWhenContextEnds(t *testing.T) {
	t.Parallel()
	h := fanout.New(fanout.Options{})
	r, cancel := subscribe(t, h, nil)
	cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Subscribe returned %v after its context ended, want nil", err)
		}
		r.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe did not return after its context ended")
	}
	if n := h.Subscribers(); n != 0 {
		t.Errorf("Subscribers() = %d after unsubscribe, want 0", n)
	}
	if err := h.Broadcast(context.Background(), inv(1)); err != nil {
		t.Errorf("Broadcast with no subscribers: %v", err)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	h := fanout.New(fanout.Options{})
	r, _ := subscribe(t, h, nil)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		if !errors.Is(err, fanout.ErrClosed) {
			t.Errorf("Subscribe returned %v after Close, want ErrClosed", err)
		}
		r.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe did not return after Close")
	}
	if err := h.Broadcast(context.Background(), inv(1)); !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("Broadcast after Close = %v, want ErrClosed", err)
	}
	err := h.Subscribe(context.Background(), func(tcs.Invalidation) {}, func() {})
	if !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	_ = h.Close()
}

func TestBroadcastCopiesHostnames(t *testing.T) {
	t.Parallel()
	var h fanout.Hub // the zero value is usable
	got := make(chan tcs.Invalidation, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	go func() {
		_ = h.Subscribe(ctx, func(inv tcs.Invalidation) { got <- inv }, func() { close(ready) })
	}()
	<-ready
	names := []string{"a.example.com"}
	if err := h.Broadcast(ctx, tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: names}); err != nil {
		t.Fatal(err)
	}
	names[0] = "changed.example.com"
	if inv := <-got; inv.Hostnames[0] != "a.example.com" {
		t.Errorf("subscriber saw %q: Broadcast did not copy Hostnames", inv.Hostnames[0])
	}
}

func TestBroadcastAfterContextEnds(t *testing.T) {
	t.Parallel()
	h := fanout.New(fanout.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Broadcast(ctx, inv(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Broadcast on an ended context = %v, want context.Canceled", err)
	}
}

func BenchmarkBroadcast(b *testing.B) {
	for _, subs := range []int{1, 8} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			h := fanout.New(fanout.Options{Buffer: 1 << 16})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			for range subs {
				ready := make(chan struct{})
				wg.Go(func() {
					_ = h.Subscribe(ctx, func(tcs.Invalidation) {}, func() {
						select {
						case <-ready:
						default:
							close(ready)
						}
					})
				})
				<-ready
			}
			v := inv(1)
			b.ReportAllocs()
			for b.Loop() {
				_ = h.Broadcast(ctx, v)
			}
			cancel()
			wg.Wait()
		})
	}
}

// TestReplaysRecentHeartbeat: a new subscriber gets the newest heartbeat, if
// it was broadcast within ReplayHeartbeat, right after its first gap and
// with its CommittedAt as sent; never an invalidation, never an old
// heartbeat, and none when replay is off.
func TestReplaysRecentHeartbeat(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	beat1 := tcs.Invalidation{CommittedAt: t0.Add(-time.Second)}
	beat2 := tcs.Invalidation{CommittedAt: t0}
	inv := tcs.Invalidation{TenantID: "acme", Version: 3, Hostnames: []string{"acme.example.com"}, CommittedAt: t0}
	for _, tc := range []struct {
		name      string
		replay    time.Duration
		broadcast []tcs.Invalidation
		after     time.Duration // from the last broadcast to the subscription
		want      []string
	}{
		{"newest heartbeat", 0, []tcs.Invalidation{beat1, beat2, inv}, 0, []string{"gap", "beat " + t0.String()}},
		{"at the window's end", 0, []tcs.Invalidation{beat2}, fanout.DefaultReplayHeartbeat, []string{"gap", "beat " + t0.String()}},
		{"too old", 0, []tcs.Invalidation{beat2}, fanout.DefaultReplayHeartbeat + time.Millisecond, []string{"gap"}},
		{"custom window", time.Minute, []tcs.Invalidation{beat2}, 30 * time.Second, []string{"gap", "beat " + t0.String()}},
		{"off", -1, []tcs.Invalidation{beat2}, 0, []string{"gap"}},
		{"invalidations only", 0, []tcs.Invalidation{inv}, 0, []string{"gap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			h := fanout.New(fanout.Options{ReplayHeartbeat: tc.replay, Now: func() time.Time { return now }})
			defer h.Close()
			for _, b := range tc.broadcast {
				if err := h.Broadcast(context.Background(), b); err != nil {
					t.Fatal(err)
				}
			}
			now = now.Add(tc.after)
			seen := make(chan string, 10)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- h.Subscribe(ctx, func(inv tcs.Invalidation) {
					if inv.Heartbeat() {
						seen <- "beat " + inv.CommittedAt.String()
					} else {
						seen <- fmt.Sprintf("%s v%d", inv.TenantID, inv.Version)
					}
				}, func() { seen <- "gap" })
			}()
			// A marker broadcast after the subscription bounds what it saw
			// before.
			for h.Subscribers() == 0 {
				time.Sleep(time.Millisecond)
			}
			if err := h.Broadcast(context.Background(), tcs.Invalidation{TenantID: "marker", Version: 1, Hostnames: []string{"m.example.com"}}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for s := range seen {
				if s == "marker v1" {
					break
				}
				got = append(got, s)
			}
			cancel()
			<-done
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("before the first broadcast after subscribing (-want +got):\n%s", diff)
			}
		})
	}
}
