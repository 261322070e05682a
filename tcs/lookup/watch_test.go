package lookup_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// watchStream is a client's Watch stream, read by one goroutine into a
// channel so that tests can wait with a timeout.
type watchStream struct {
	msgs   chan *tcsv1.WatchResponse
	err    chan error
	cancel context.CancelFunc
	first  *tcsv1.WatchResponse // the stream's first Resync
}

// openWatch opens a Watch stream on e and checks that it starts with a
// Resync.
func openWatch(tb testing.TB, e *env) *watchStream {
	tb.Helper()
	before := watchStreams(e)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	stream, err := e.client.Watch(ctx, &tcsv1.WatchRequest{})
	if err != nil {
		tb.Fatal(err)
	}
	w := &watchStream{msgs: make(chan *tcsv1.WatchResponse, 1000), err: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				w.err <- err
				return
			}
			w.msgs <- m
		}
	}()
	w.first = w.next(tb, "resync")
	testwait.For(tb, "the Watch stream to be registered", func() bool { return watchStreams(e) == before+1 })
	return w
}

func watchStreams(e *env) float64 {
	mfs, _ := e.srv.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "tcs_lookup_watch_streams" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

func kindOf(m *tcsv1.WatchResponse) string {
	switch m.GetKind().(type) {
	case *tcsv1.WatchResponse_Invalidation:
		return "invalidation"
	case *tcsv1.WatchResponse_Resync:
		return "resync"
	case *tcsv1.WatchResponse_Heartbeat:
		return "heartbeat"
	}
	return "unknown"
}

// next returns the next message, skipping heartbeats unless kind is
// "heartbeat", and fails unless it is of that kind.
func (w *watchStream) next(tb testing.TB, kind string) *tcsv1.WatchResponse {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-w.msgs:
			k := kindOf(m)
			if k == "heartbeat" && kind != "heartbeat" {
				continue
			}
			if k != kind {
				tb.Fatalf("Watch sent %s (%v), want %s", k, m, kind)
			}
			return m
		case err := <-w.err:
			tb.Fatalf("Watch ended waiting for %s: %v", kind, err)
		case <-timeout:
			tb.Fatalf("timed out waiting for a %s", kind)
		}
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{HeartbeatInterval: 20 * time.Millisecond}, lookup.ServeOptions{})
	w := openWatch(t, e)

	for v := int64(1); v <= 3; v++ {
		inv := tcs.Invalidation{TenantID: "acme", Version: v, Hostnames: []string{host, "acme.example.org"}}
		if err := e.hub.Broadcast(testwait.Context(t), inv); err != nil {
			t.Fatal(err)
		}
	}
	for v := int64(1); v <= 3; v++ {
		got := w.next(t, "invalidation").GetInvalidation()
		want := &tcsv1.Invalidation{TenantId: "acme", Version: v, Hostnames: []string{host, "acme.example.org"}}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("invalidation %d (-want +got):\n%s", v, diff)
		}
	}
	hb := w.next(t, "heartbeat").GetHeartbeat()
	if hb.GetInterval().AsDuration() != 20*time.Millisecond || !hb.GetAt().AsTime().Equal(e.clock.Now()) {
		t.Errorf("heartbeat %v: want interval 20ms at %v", hb, e.clock.Now())
	}

	// Client cancel ends the stream on the server too.
	w.cancel()
	testwait.For(t, "the Watch stream to be closed", func() bool { return watchStreams(e) == 0 })
}

func TestWatchEndsOnShutdown(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{})
	w := openWatch(t, e)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.err:
		if code := status.Code(err); code != codes.Unavailable {
			t.Errorf("Watch ended with %v, want UNAVAILABLE", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch stream still open after shutdown")
	}
}

// TestWatchResyncsOnFeedGap: when the server's own feed loses
// invalidations, its Watch clients are told to resync.
func TestWatchResyncsOnFeedGap(t *testing.T) {
	t.Parallel()
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{Feed: feed}, lookup.ServeOptions{})
	sub := <-feed.subscribed
	w := openWatch(t, e)
	sub.deliver(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{host}})
	w.next(t, "invalidation")
	sub.gap()
	w.next(t, "resync")
}

// TestRunResubscribes: a feed subscription that fails is retried, and each
// new subscription expires the cache and resyncs Watch clients.
func TestRunResubscribes(t *testing.T) {
	t.Parallel()
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{Feed: feed, Replica: newFakeReplica(makeTenant("acme", 1, host))}, lookup.ServeOptions{})
	first := <-feed.subscribed
	w := openWatch(t, e)
	ctx := testwait.Context(t)
	if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}

	first.fail(errors.New("connection reset"))
	second := <-feed.subscribed
	w.next(t, "resync")
	// The cache was expired: the next lookup reads the replica again.
	if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	if n := e.replica.calls.Load(); n != 2 {
		t.Errorf("replica reads = %d, want 2 (the resubscription expired the cache)", n)
	}
	second.deliver(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}})
	w.next(t, "invalidation")
}

// scriptedFeed is a tcs.Feed whose subscriptions the test drives.
type scriptedFeed struct {
	subscribed chan *subscription
}

type subscription struct {
	ops       chan func()
	errc      chan error
	deliverFn func(tcs.Invalidation)
	gapFn     func()
}

// deliver and gap return once the subscriber's callback has returned.
func (s *subscription) deliver(inv tcs.Invalidation) { s.do(func() { s.deliverFn(inv) }) }
func (s *subscription) gap()                         { s.do(s.gapFn) }
func (s *subscription) fail(err error)               { s.errc <- err }

func (s *subscription) do(f func()) {
	done := make(chan struct{})
	s.ops <- func() {
		f()
		close(done)
	}
	<-done
}

func (f *scriptedFeed) Subscribe(ctx context.Context, deliver func(tcs.Invalidation), gap func()) error {
	s := &subscription{ops: make(chan func()), errc: make(chan error)}
	s.deliverFn, s.gapFn = deliver, gap
	f.subscribed <- s
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.errc:
			return err
		case op := <-s.ops:
			op()
		}
	}
}

// fakeWatchStream is a Watch server stream whose Send blocks while the test
// holds its gate, to play a client that does not read.
type fakeWatchStream struct {
	grpc.ServerStream // nil: only the methods below are used
	ctx               context.Context
	mu                sync.Mutex
	sent              []string
	gate              chan struct{}
	sending           chan struct{}
}

func (f *fakeWatchStream) Context() context.Context    { return f.ctx }
func (f *fakeWatchStream) SetHeader(metadata.MD) error { return nil }

func (f *fakeWatchStream) Send(m *tcsv1.WatchResponse) error {
	f.sending <- struct{}{}
	<-f.gate
	f.mu.Lock()
	defer f.mu.Unlock()
	k := kindOf(m)
	if k == "invalidation" {
		k = fmt.Sprint(m.GetInvalidation().GetVersion())
	}
	f.sent = append(f.sent, k)
	return nil
}

func (f *fakeWatchStream) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

// TestSlowWatchClientGetsResync: a Watch client that stops reading never
// holds up the server; once its buffer overflows it gets a Resync in place
// of what it missed, then what follows.
func TestSlowWatchClientGetsResync(t *testing.T) {
	t.Parallel()
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	srv := lookup.New(lookup.Config{Replica: newFakeReplica(), Feed: feed, WatchBuffer: 2, HeartbeatInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	sub := <-feed.subscribed

	gate := make(chan struct{})
	stream := &fakeWatchStream{ctx: ctx, gate: gate, sending: make(chan struct{}, 100)}
	watched := make(chan error, 1)
	go func() { watched <- srv.Watch(&tcsv1.WatchRequest{}, stream) }()
	<-stream.sending // the first Resync: the stream is registered
	gate <- struct{}{}
	inv := func(v int64) tcs.Invalidation {
		return tcs.Invalidation{TenantID: "acme", Version: v, Hostnames: []string{host}}
	}
	sub.deliver(inv(1))
	<-stream.sending // invalidation 1 is being sent, and blocks

	// 2 and 3 fill the buffer; 4..50 overflow it. None of this may wait
	// for the stream.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := int64(2); v <= 50; v++ {
			sub.deliver(inv(v))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the feed was held up by a slow Watch client")
	}
	close(gate) // the client reads again
	testwait.For(t, "the resync to be sent", func() bool { return len(stream.log()) >= 3 })
	if diff := cmp.Diff([]string{"resync", "1", "resync"}, stream.log()); diff != "" {
		t.Fatalf("sent to the slow client (-want +got):\n%s", diff)
	}
	sub.deliver(inv(51))
	testwait.For(t, "invalidation 51 to be sent", func() bool {
		l := stream.log()
		return len(l) > 0 && l[len(l)-1] == "51"
	})
	if diff := cmp.Diff([]string{"resync", "1", "resync", "51"}, stream.log()); diff != "" {
		t.Errorf("sent to the slow client (-want +got):\n%s", diff)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := <-watched; status.Code(err) != codes.Canceled && status.Code(err) != codes.Unavailable {
		t.Errorf("Watch ended with %v, want CANCELED or UNAVAILABLE", err)
	}
}
