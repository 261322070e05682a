package lookup

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

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
// may have been missed meanwhile. Run may run once at a time (else
// ErrRunning); Serve runs it.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	defer s.endWatches()
	if s.feed == nil {
		<-ctx.Done()
		return nil
	}
	backoff := minBackoff
	for {
		s.gap()
		began := time.Now()
		err := s.feed.Subscribe(ctx, s.deliver, s.gap)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > time.Minute {
			backoff = minBackoff
		}
		s.log.Warn("invalidation feed subscription ended; resubscribing", "err", err, "backoff", backoff)
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// deliver applies one invalidation from the feed.
func (s *Server) deliver(inv tcs.Invalidation) {
	s.cache.Invalidate(inv)
	s.m.invalidations.Inc()
	if !inv.CommittedAt.IsZero() {
		s.m.lag.Set(s.now().Sub(inv.CommittedAt).Seconds())
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
	s.cache.Gap()
	s.m.resyncs.Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		w.lose()
	}
}

// watcher is one Watch stream's queue. The feed goroutine never waits for
// it: when its buffer is full the stream is marked lost, and gets a Resync
// in place of everything it missed.
type watcher struct {
	ch   chan *tcsv1.WatchResponse
	wake chan struct{}
	lost bool // under Server.mu
}

// lose marks w as having missed messages. Server.mu must be held.
func (w *watcher) lose() {
	w.lost = true
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// broadcast queues msg, which must not be modified afterwards, for every
// Watch stream.
func (s *Server) broadcast(msg *tcsv1.WatchResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		if w.lost {
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
// (the Resync about to be sent supersedes it) and clears the mark, all under
// the lock so that nothing queued after the Resync is lost.
func (s *Server) takeLost(w *watcher) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !w.lost {
		return false
	}
	w.lost = false
	for len(w.ch) > 0 {
		<-w.ch
	}
	return true
}

// endWatches ends every Watch stream, now and later.
func (s *Server) endWatches() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

var resyncMsg = &tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Resync{Resync: &tcsv1.Resync{}}}

// Watch implements TenantContextService.Watch: a Resync, then the region's
// invalidations in order, with a Heartbeat every HeartbeatInterval. A client
// that cannot keep up gets a Resync in place of what it missed. The stream
// ends when the client cancels it (CANCELED) or the server shuts down
// (UNAVAILABLE: reconnect, to this region or another).
func (s *Server) Watch(_ *tcsv1.WatchRequest, stream grpc.ServerStreamingServer[tcsv1.WatchResponse]) error {
	ctx := stream.Context()
	w := &watcher{ch: make(chan *tcsv1.WatchResponse, s.buffer), wake: make(chan struct{}, 1)}
	s.mu.Lock()
	select {
	case <-s.stopping:
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "server shutting down")
	default:
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	s.m.watchStreams.Inc()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
		s.m.watchStreams.Dec()
	}()

	// Registered first, then the Resync: whatever is queued from here on
	// comes after it, as the contract says.
	if err := stream.Send(resyncMsg); err != nil {
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
		case msg = <-w.ch:
		case <-w.wake:
		case <-tick.C:
			msg = &tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Heartbeat{Heartbeat: &tcsv1.Heartbeat{
				At:       timestamppb.New(s.now()),
				Interval: interval,
			}}}
		}
		if s.takeLost(w) {
			msg = resyncMsg // supersedes whatever was about to go
		}
		if msg == nil {
			continue
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}
