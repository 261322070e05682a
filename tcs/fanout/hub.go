// Package fanout is the embedded invalidation broadcast: an in-process Hub
// that the region's applier broadcasts to and the region's lookup servers
// subscribe to. It is the one-machine counterpart of the SNS → SQS fan-out
// (docs/architecture.md, "Two families of backends").
//
// A broadcast never waits for a subscriber. Each subscriber has a bounded
// buffer; when it is full the invalidation is dropped for that subscriber
// alone, and the subscriber's gap func is called before anything newer is
// delivered, so that it treats its whole cache as suspect (invariant 5 keeps
// the damage bounded by the TTL; the gap makes it shorter).
//
// Heartbeats (tcs.Invalidation's Heartbeat) are carried like any other
// invalidation, in the same order.
package fanout

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/tcs"
)

// DefaultBuffer is the per-subscriber buffer of a Hub whose Options leave it
// zero.
const DefaultBuffer = 1024

// ErrClosed is returned by Broadcast and Subscribe once the Hub is closed.
var ErrClosed = errors.New("fanout: hub closed")

// Options configure a Hub. The zero value is usable.
type Options struct {
	// Buffer is how many invalidations may wait for one subscriber before
	// further ones are dropped for it (and it is told of the gap). Zero
	// means DefaultBuffer.
	Buffer int
	// ReplayHeartbeat is how recent the newest heartbeat must be for a new
	// subscriber to get it straight away (after its first gap). Without it a
	// lookup server that subscribes just after the applier's first
	// heartbeat waits a whole heartbeat interval before it knows the feed
	// works (and reports SERVING). A heartbeat broadcast within this window
	// proves the feed was alive then, and the next one is due within the
	// applier's interval, so the replay claims nothing the feed's timeout
	// would not. Zero means DefaultReplayHeartbeat; negative replays none.
	ReplayHeartbeat time.Duration
	// Now is the clock ReplayHeartbeat is judged by; nil means time.Now.
	Now func() time.Time
}

// DefaultReplayHeartbeat is Options.ReplayHeartbeat's default: the
// applier's default heartbeat interval (streamer.DefaultHeartbeatInterval).
const DefaultReplayHeartbeat = 5 * time.Second

// Hub is an in-process invalidation broadcast: it implements both
// tcs.Broadcaster and tcs.Feed. The zero value is a Hub with default
// options; a Hub must not be copied after first use.
type Hub struct {
	opts Options

	// mu orders broadcasts: every subscriber sees them in one total order.
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	done   chan struct{} // closed by Close; made lazily under mu
	// beat is the newest heartbeat broadcast, and beatAt when (Options.Now).
	beat   *tcs.Invalidation
	beatAt time.Time
}

var (
	_ tcs.Broadcaster = (*Hub)(nil)
	_ tcs.Feed        = (*Hub)(nil)
)

// New returns a Hub.
func New(opts Options) *Hub {
	return &Hub{opts: opts}
}

type subscriber struct {
	ch chan tcs.Invalidation
	// wake is signalled (without blocking) when an invalidation had to be
	// dropped, so that the subscriber learns of the gap even if nothing
	// else arrives.
	wake chan struct{}
	// lost is set, under Hub.mu, when an invalidation was dropped, and
	// cleared by the subscriber, also under Hub.mu, when it calls gap.
	lost bool
}

func (h *Hub) doneLocked() chan struct{} {
	if h.done == nil {
		h.done = make(chan struct{})
	}
	return h.done
}

// Broadcast hands inv to every current subscriber without waiting for any of
// them. It fails only if ctx has already ended or the Hub is closed. The
// Hostnames slice is copied, so the caller may reuse it; every subscriber
// gets that one copy, which they may keep but must not modify.
func (h *Hub) Broadcast(ctx context.Context, inv tcs.Invalidation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	inv.Hostnames = slices.Clone(inv.Hostnames)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if inv.Heartbeat() {
		h.beat, h.beatAt = &inv, h.now()
	}
	for s := range h.subs {
		if s.lost {
			// Already behind: anything queued after the loss is useless
			// before the gap, and keeping the order simple matters more.
			continue
		}
		select {
		case s.ch <- inv:
		default:
			s.lost = true
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// Subscribe implements tcs.Feed. It registers the subscriber, calls gap once
// straight away (invalidations broadcast before the subscription are not
// replayed, so a new subscriber has by definition missed some), delivers the
// newest heartbeat if it is recent (Options.ReplayHeartbeat), then calls
// deliver for each invalidation in broadcast order until ctx ends (it returns
// nil) or the Hub is closed (it returns ErrClosed). If the subscriber falls
// more than the buffer behind, the invalidations that did not fit are dropped
// and gap is called before the next delivery. deliver and gap run on the
// caller's goroutine, never concurrently.
func (h *Hub) Subscribe(ctx context.Context, deliver func(tcs.Invalidation), gap func()) error {
	n := h.opts.Buffer
	if n <= 0 {
		n = DefaultBuffer
	}
	s := &subscriber{ch: make(chan tcs.Invalidation, n), wake: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	if h.subs == nil {
		h.subs = make(map[*subscriber]struct{})
	}
	h.subs[s] = struct{}{}
	if replay := h.replayWindow(); h.beat != nil && replay > 0 && h.now().Sub(h.beatAt) <= replay {
		s.ch <- *h.beat // the buffer is empty and holds at least one
	}
	done := h.doneLocked()
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}()

	gap()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			return ErrClosed
		case inv := <-s.ch:
			deliver(inv)
		case <-s.wake:
		}
		if len(s.ch) == 0 && h.takeLoss(s) {
			// Everything queued before the loss has been delivered, and
			// nothing after it was queued: the gap goes exactly where the
			// invalidations went missing.
			gap()
		}
	}
}

func (h *Hub) now() time.Time {
	if h.opts.Now != nil {
		return h.opts.Now()
	}
	return time.Now()
}

func (h *Hub) replayWindow() time.Duration {
	if h.opts.ReplayHeartbeat == 0 {
		return DefaultReplayHeartbeat
	}
	return h.opts.ReplayHeartbeat
}

// takeLoss reports and clears s's lost flag, but only once its buffer is
// empty (checked under the lock, so no broadcast slips in between).
func (h *Hub) takeLoss(s *subscriber) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.lost || len(s.ch) > 0 {
		return false
	}
	s.lost = false
	return true
}

// Subscribers returns the number of current subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Close ends every subscription (Subscribe returns ErrClosed) and makes later
// broadcasts fail. It is safe to call more than once.
func (h *Hub) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.doneLocked())
	}
	return nil
}
