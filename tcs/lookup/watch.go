package lookup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/spanctx"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
)

// Backoff between feed subscriptions that failed.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// ErrRunning is returned by Run when the Server is already running.
var ErrRunning = errors.New("lookup: server already running")

// Run subscribes to the feed and applies its invalidations to the cache and
// relays them to Watch streams, until ctx ends; then it ends every Watch
// stream and returns nil. A subscription that fails is retried with
// exponential backoff (100 ms to 10 s, jittered); before each one the whole
// cache is expired and every Watch stream sent a Resync, since invalidations
// may have been missed meanwhile. It also watches the feed's liveness (see
// Config.FeedTimeout and the package comment). Run may run once at a time
// (else ErrRunning); Serve runs it.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	defer s.endWatches()
	s.mu.Lock()
	s.lastSign = s.now().UnixNano() // the feed has FeedTimeout to deliver
	s.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	interval := s.healthState.interval
	if s.feedTimeout > 0 {
		interval = min(interval, max(s.feedTimeout/10, 10*time.Millisecond))
	}
	wg.Go(func() { s.healthLoop(ctx, interval, &wg) })
	wg.Go(func() { s.warmUp(ctx) })
	if s.feed == nil {
		s.markSubscribed()
		<-ctx.Done()
		return nil
	}
	// The first message proves the subscription; with liveness detection
	// off (no heartbeats expected) so does the feed's first gap, which
	// feeds send when a subscription starts.
	gap := s.gap
	if s.feedTimeout <= 0 {
		gap = func() {
			s.gap()
			s.markSubscribed()
		}
	}
	wait := backoff.New(minBackoff, maxBackoff, backoff.UpTo)
	for {
		s.gap()
		began := time.Now()
		err := s.feed.Subscribe(ctx, s.deliver, gap)
		if ctx.Err() != nil {
			return nil
		}
		s.subscriptionFailed(err)
		if time.Since(began) > time.Minute {
			wait.Reset()
		}
		s.log.Warn("invalidation feed subscription ended; resubscribing", "err", err, "backoff", wait.Current())
		if wait.Wait(ctx) != nil {
			return nil
		}
	}
}

// deliver applies one message from the feed: any message proves the feed
// alive; a heartbeat does nothing else.
func (s *Server) deliver(inv tcs.Invalidation) {
	s.delivering.Store(time.Now().UnixNano())
	defer s.delivering.Store(0)
	s.markSubscribed()
	now := s.now()
	s.m.feedLast.Set(float64(now.UnixNano()) / 1e9)
	s.mu.Lock()
	s.lastSign = now.UnixNano()
	s.subFailed = false
	if s.down {
		s.feedUpLocked(now)
	}
	s.mu.Unlock()
	if inv.Heartbeat() {
		// Its CommittedAt is when the applier sent it, not a commit in the
		// source of truth: no replication lag to learn from it.
		s.m.heartbeats.Inc()
		return
	}
	if s.tracer != nil && !inv.Trace.IsZero() {
		_, sp := spanctx.Start(context.Background(), s.tracer, inv.Trace, "invalidate", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("tcs.region", s.region), attribute.String("tcs.tenant.id", inv.TenantID),
				attribute.Int64("tcs.tenant.version", inv.Version), attribute.Int("tcs.hostnames", len(inv.Hostnames))))
		defer sp.End()
	}
	s.cache.Invalidate(inv)
	s.m.invalidations.Inc()
	if !inv.CommittedAt.IsZero() {
		lag := s.now().Sub(inv.CommittedAt).Seconds()
		s.m.lag.Set(lag)
		s.m.propagation.Observe(lag)
	}
	s.broadcast(&tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Invalidation{Invalidation: &tcsv1.Invalidation{
		Hostnames: inv.Hostnames,
		TenantId:  inv.TenantID,
		Version:   inv.Version,
	}}})
}

// gap handles invalidations that may have been missed: the cache expires
// and every Watch stream gets a Resync.
func (s *Server) gap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gapLocked()
}

func (s *Server) gapLocked() {
	s.cache.Gap()
	s.m.resyncs.Inc()
	for w := range s.watchers {
		w.lose()
	}
}

// checkFeed marks the feed down if it has been silent for FeedTimeout.
func (s *Server) checkFeed() {
	if s.feedTimeout <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if silent := time.Duration(now.UnixNano() - s.lastSign); !s.down && silent > s.feedTimeout {
		s.feedDownLocked(now, fmt.Sprintf("no message for %v (feed timeout %v)", silent.Round(time.Millisecond), s.feedTimeout))
	}
}

// subscriptionFailed marks the feed down because its subscription ended
// with err.
func (s *Server) subscriptionFailed(err error) {
	if s.feedTimeout <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subFailed = true
	if !s.down {
		s.feedDownLocked(s.now(), fmt.Sprintf("subscription failed: %v", err))
	}
}

// feedDownMsg is the status message of Watch streams ended or refused
// while the feed is down.
const feedDownMsg = "invalidation feed down: this server's cache invalidations are not arriving; watch another region, and shorten your cache TTL meanwhile"

// feedDownLocked records that the feed went down: the cache's TTLs are
// limited, and Watch streams end. Server.mu must be held.
func (s *Server) feedDownLocked(now time.Time, why string) {
	s.down, s.downSince = true, now
	s.cache.LimitTTL(s.feedDownTTL)
	close(s.downCh)
	s.m.feedUp.Set(0)
	s.log.Warn("invalidation feed down: cache TTL limited and Watch streams ended until it delivers again",
		"why", why, "ttl", s.feedDownTTL, "watch_streams", len(s.watchers))
}

// feedUpLocked records that the feed delivers again. Invalidations may have
// been lost while it was down, so the whole cache expires (before the TTLs
// are restored). Server.mu must be held.
func (s *Server) feedUpLocked(now time.Time) {
	s.gapLocked()
	s.cache.LimitTTL(0)
	s.down = false
	s.downCh = make(chan struct{})
	s.m.feedUp.Set(1)
	s.log.Info("invalidation feed up again: cache expired, TTL restored, Watch streams accepted",
		"down_for", now.Sub(s.downSince).Round(time.Millisecond))
}

// watcher is one Watch stream's queue. The feed goroutine never waits for
// it: when its buffer is full the stream is marked lost, and gets a Resync
// in place of everything it missed.
type watcher struct {
	ch   chan *tcsv1.WatchResponse
	wake chan struct{}
	// lost is set and cleared under Server.mu, and read without it by the
	// stream's own loop (takeLost), which then needs the lock only when it
	// is set: 10,000 streams woken by one broadcast do not queue for the
	// lock the broadcast holds.
	lost atomic.Bool
	// session names the stream in acks; started is when it opened (unix
	// nanoseconds); acked is the highest seq its client acked, 0 for none;
	// acking is set while an AckStream of the session is open; done is
	// closed when the Watch stream ends (its AckStream then ends too).
	session string
	started int64
	acked   atomic.Uint64
	acking  atomic.Bool
	done    chan struct{}
	// askedFor is the seq the stream was last asked to ack at once (a
	// Heartbeat with ack_now), at askedAt (unix nanoseconds, wall clock);
	// askMu guards both (requestAck).
	askMu    sync.Mutex
	askedFor uint64
	askedAt  int64
}

// lose marks w as having missed messages. A stream's own loop clears the
// mark and empties its queue under Server.mu (takeLost) before it sends the
// Resync, so a mark set at any time leads to a Resync sent after it.
func (w *watcher) lose() {
	w.lost.Store(true)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// broadcast queues msg, which must not be modified afterwards, for every
// Watch stream. It holds Server.mu only to list the streams: queueing to
// each wakes its goroutine, which at the cap of 10,000 streams costs tens of
// milliseconds (BenchmarkBroadcast), during which streams come and go and
// the feed's liveness is checked. A stream that registers after the list
// was taken starts with a Resync, which covers msg (already applied to the
// cache); one that ended meanwhile gets msg queued for nobody. Broadcasts
// run one at a time, in order.
func (s *Server) broadcast(msg *tcsv1.WatchResponse) {
	s.bcastMu.Lock()
	defer s.bcastMu.Unlock()
	s.mu.Lock()
	s.acks.nextSeqLocked(msg, time.Now().UnixNano())
	ws := s.bcastList[:0]
	for w := range s.watchers {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	defer func() {
		clear(ws) // let ended streams' queues go
		s.bcastList = ws[:0]
	}()
	for _, w := range ws {
		if w.lost.Load() {
			continue // its Resync will cover this
		}
		select {
		case w.ch <- msg:
		default:
			w.lose()
		}
	}
}

// takeLost reports whether w missed messages, and if so empties its queue
// (the Resync it returns, numbered as the last broadcast, supersedes it)
// and clears the mark, all under the lock so that nothing queued after the
// Resync is lost.
func (s *Server) takeLost(w *watcher) *tcsv1.WatchResponse {
	if !w.lost.Load() {
		return nil // lose signals wake after setting it: checked again then
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !w.lost.Load() {
		return nil
	}
	w.lost.Store(false)
	for len(w.ch) > 0 {
		<-w.ch
	}
	return s.resyncLocked(w)
}

// endWatches ends every Watch stream, now and later.
func (s *Server) endWatches() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// Watch implements TenantContextService.Watch: a Resync, then the region's
// invalidations in order, with a Heartbeat every HeartbeatInterval. A client
// that cannot keep up gets a Resync in place of what it missed. The stream
// ends when the client cancels it (CANCELED), the server shuts down, or the
// server's invalidation feed goes down (UNAVAILABLE: reconnect, to this
// region or another); while the feed is down new streams are refused with
// UNAVAILABLE before their Resync. A stream beyond the node's or its
// caller's cap (Config.MaxWatchStreams, MaxWatchPerCaller) is refused with
// RESOURCE_EXHAUSTED, before anything is allocated for it.
func (s *Server) Watch(_ *tcsv1.WatchRequest, stream grpc.ServerStreamingServer[tcsv1.WatchResponse]) error {
	ctx := stream.Context()
	caller := CallerOf(ctx)
	s.mu.Lock()
	select {
	case <-s.stopping:
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "server shutting down")
	default:
	}
	if s.down {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, feedDownMsg)
	}
	if err := s.watchCapLocked(caller); err != nil {
		s.mu.Unlock()
		return err
	}
	feedDown := s.downCh
	w := &watcher{
		ch:      make(chan *tcsv1.WatchResponse, s.buffer),
		wake:    make(chan struct{}, 1),
		session: newSessionID(),
		started: s.now().UnixNano(),
		done:    make(chan struct{}),
	}
	s.watchers[w] = struct{}{}
	s.watchCallers[caller]++
	first := s.resyncLocked(w)
	s.mu.Unlock()
	s.sessions.Store(w.session, w)
	s.m.watchStreams.Inc()
	defer func() {
		s.sessions.Delete(w.session)
		close(w.done)
		s.mu.Lock()
		delete(s.watchers, w)
		if s.watchCallers[caller]--; s.watchCallers[caller] <= 0 {
			delete(s.watchCallers, caller)
		}
		s.mu.Unlock()
		s.m.watchStreams.Dec()
	}()

	// Registered first, then the Resync: whatever is queued from here on
	// comes after it, as the contract says.
	if err := stream.Send(first); err != nil {
		return err
	}
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	interval := durationpb.New(s.interval)
	for {
		var msg *tcsv1.WatchResponse
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stopping:
			return status.Error(codes.Unavailable, "server shutting down")
		case <-feedDown:
			return status.Error(codes.Unavailable, feedDownMsg)
		case msg = <-w.ch:
		case <-w.wake:
		case <-tick.C:
			msg = &tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Heartbeat{Heartbeat: &tcsv1.Heartbeat{
				At:       timestamppb.New(s.now()),
				Interval: interval,
			}}}
		}
		if r := s.takeLost(w); r != nil {
			msg = r // supersedes whatever was about to go
		}
		if msg == nil {
			continue
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}

// watchCapLocked refuses a new Watch stream of caller beyond the node's or
// the caller's cap. Server.mu must be held.
func (s *Server) watchCapLocked(caller Caller) error {
	if s.maxWatch > 0 && len(s.watchers) >= s.maxWatch {
		s.m.shed[shedWatchNode].Inc()
		return status.Errorf(codes.ResourceExhausted,
			"this server has its cap of %d Watch streams open (tcs --watch-max-streams): watch another server of the region", s.maxWatch)
	}
	if s.maxWatchPerCaller > 0 && s.watchCallers[caller] >= s.maxWatchPerCaller {
		s.m.shed[shedWatchCaller].Inc()
		return status.Errorf(codes.ResourceExhausted,
			"%s has its cap of %d Watch streams open on this server (tcs --watch-max-per-caller): one stream per client is enough", caller, s.maxWatchPerCaller)
	}
	return nil
}
