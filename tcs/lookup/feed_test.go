package lookup_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// wantRefused checks that a new Watch stream is refused with UNAVAILABLE
// because the feed is down.
func wantRefused(t *testing.T, e *env) {
	t.Helper()
	stream, err := e.client.Watch(testwait.Context(t), &tcsv1.WatchRequest{})
	if err == nil {
		var m *tcsv1.WatchResponse
		m, err = stream.Recv()
		if err == nil {
			t.Fatalf("Watch while the feed is down sent %v, want UNAVAILABLE", m)
		}
	}
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "invalidation feed down") {
		t.Fatalf("Watch while the feed is down: %v, want UNAVAILABLE, invalidation feed down", err)
	}
}

// wantEnded checks that w ended with UNAVAILABLE because the feed is down.
func (w *watchStream) wantEnded(t *testing.T) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-w.msgs:
			if kindOf(m) != "heartbeat" {
				t.Fatalf("Watch sent %v, want it to end", m)
			}
		case err := <-w.err:
			if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "invalidation feed down") {
				t.Fatalf("Watch ended with %v, want UNAVAILABLE, invalidation feed down", err)
			}
			return
		case <-timeout:
			t.Fatal("the Watch stream did not end")
		}
	}
}

// TestFeedSilence: a feed silent for FeedTimeout is down: the cache's TTL
// is limited at once (for entries already cached too), tcs_lookup_feed_up
// is 0, Watch streams end and new ones are refused, with one warning. The
// next message brings it back: the cache expires, the TTL is restored,
// Watch streams are accepted, with one info log. Heartbeats keep the feed
// up and are neither applied nor relayed.
func TestFeedSilence(t *testing.T) {
	t.Parallel()
	var logs testio.SyncBuffer
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{
		Feed:        feed,
		Replica:     newFakeReplica(makeTenant("acme", 1, host)),
		FeedTimeout: 15 * time.Second,
		FeedDownTTL: 5 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
	}, lookup.ServeOptions{})
	sub := <-feed.subscribed
	ctx := testwait.Context(t)
	lookupHost := func() {
		t.Helper()
		if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := func() bool { _, ok := e.srv.Cache().Peek(host); return ok }
	metric := func(name string) float64 { return gather(t, e.srv.Registry())[name] }
	lookupHost()
	w := openWatch(t, e)

	// A heartbeat: alive, not an invalidation.
	e.clock.Advance(10 * time.Second)
	sub.deliver(tcs.Invalidation{CommittedAt: e.clock.Now().Add(-time.Hour)})
	if got, want := metric("tcs_lookup_feed_last_message_timestamp_seconds"), float64(e.clock.Now().Unix()); got != want {
		t.Errorf("last message timestamp = %v, want %v", got, want)
	}
	if metric("tcs_lookup_feed_heartbeats_total") != 1 || metric("tcs_lookup_invalidations_total") != 0 || metric("tcs_lookup_replication_lag_seconds") != 0 || metric("tcs_lookup_propagation_seconds_count") != 0 {
		t.Errorf("after a heartbeat: heartbeats %v, invalidations %v, lag %v, propagations %v; want 1, 0, 0, 0",
			metric("tcs_lookup_feed_heartbeats_total"), metric("tcs_lookup_invalidations_total"), metric("tcs_lookup_replication_lag_seconds"), metric("tcs_lookup_propagation_seconds_count"))
	}
	if !fresh() {
		t.Error("a heartbeat dropped a cache entry")
	}
	sub.deliver(tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{"zeta.example.com"}})
	if got := w.next(t, "invalidation").GetInvalidation(); got.GetTenantId() != "zeta" {
		t.Fatalf("Watch relayed %v, want the zeta invalidation (the heartbeat is not relayed)", got)
	}

	// Silent for the timeout, to the nanosecond: still up.
	e.clock.Advance(15 * time.Second)
	e.srv.CheckFeed()
	if metric("tcs_lookup_feed_up") != 1 || !fresh() {
		t.Fatal("the feed is down after exactly the feed timeout")
	}
	e.clock.Advance(time.Millisecond)
	e.srv.CheckFeed()
	e.srv.CheckFeed() // one warning, however often it is checked
	if metric("tcs_lookup_feed_up") != 0 {
		t.Fatal("tcs_lookup_feed_up = 1 after the feed timeout")
	}
	if fresh() {
		t.Error("an entry read 25s ago is fresh while the feed is down (want the 5s TTL)")
	}
	w.wantEnded(t)
	wantRefused(t, e)
	lookupHost() // read again, cached for 5s
	e.clock.Advance(4 * time.Second)
	if !fresh() {
		t.Error("an entry read 4s ago is not fresh with the 5s TTL")
	}
	e.clock.Advance(2 * time.Second)
	if fresh() {
		t.Error("an entry read 6s ago is fresh with the 5s TTL")
	}
	lookupHost()
	e.clock.Advance(time.Second)
	e.srv.CheckFeed()

	// A heartbeat brings it back, as a gap.
	resyncs := metric("tcs_lookup_resyncs_total")
	sub.deliver(tcs.Invalidation{CommittedAt: e.clock.Now()})
	if metric("tcs_lookup_feed_up") != 1 || metric("tcs_lookup_resyncs_total") != resyncs+1 {
		t.Errorf("after the feed delivered again: up %v, resyncs %v; want 1, %v", metric("tcs_lookup_feed_up"), metric("tcs_lookup_resyncs_total"), resyncs+1)
	}
	if fresh() {
		t.Error("an entry read while the feed was down survived its return")
	}
	lookupHost()
	e.clock.Advance(20 * time.Second)
	if !fresh() {
		t.Error("the 30s TTL is not back")
	}
	openWatch(t, e)
	if n, m := logs.Count("invalidation feed down"), logs.Count("invalidation feed up again"); n != 1 || m != 1 {
		t.Errorf("logged %d down and %d up messages, want 1 and 1:\n%s", n, m, logs.String())
	}
}

// TestFeedSubscriptionFailure: a failed subscription makes the feed down at
// once, until the next subscription delivers.
func TestFeedSubscriptionFailure(t *testing.T) {
	t.Parallel()
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{Feed: feed, FeedTimeout: time.Minute}, lookup.ServeOptions{})
	first := <-feed.subscribed
	w := openWatch(t, e)
	first.fail(errors.New("queue deleted"))
	w.wantEnded(t)
	second := <-feed.subscribed
	wantRefused(t, e) // resubscribed, but nothing delivered yet
	if up := gather(t, e.srv.Registry())["tcs_lookup_feed_up"]; up != 0 {
		t.Errorf("tcs_lookup_feed_up = %v, want 0", up)
	}
	second.deliver(tcs.Invalidation{})
	if up := gather(t, e.srv.Registry())["tcs_lookup_feed_up"]; up != 1 {
		t.Errorf("tcs_lookup_feed_up = %v after a heartbeat, want 1", up)
	}
	openWatch(t, e)
}

// TestFeedDetectionOff: a negative FeedTimeout never marks the feed down.
func TestFeedDetectionOff(t *testing.T) {
	t.Parallel()
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{Feed: feed, FeedTimeout: -1}, lookup.ServeOptions{})
	sub := <-feed.subscribed
	w := openWatch(t, e)
	e.clock.Advance(time.Hour)
	e.srv.CheckFeed()
	if up := gather(t, e.srv.Registry())["tcs_lookup_feed_up"]; up != 1 {
		t.Errorf("tcs_lookup_feed_up = %v, want 1", up)
	}
	sub.deliver(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{host}})
	w.next(t, "invalidation") // the stream is still open
}
