package client

import (
	"context"
	"fmt"
	"sync"
)

// readiness tells WaitReady when the Watch stream comes up.
type readiness struct {
	mu      sync.Mutex
	up      chan struct{} // closed while the stream is up; replaced when it goes down
	isUp    bool
	lastErr error // why the last stream ended (nil before any did)
}

func (r *readiness) init() { r.up = make(chan struct{}) }

// set records that the stream is up or down, and if down, why.
func (r *readiness) set(up bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !up && err != nil {
		r.lastErr = err
	}
	if up == r.isUp {
		return
	}
	r.isUp = up
	if up {
		close(r.up)
	} else {
		r.up = make(chan struct{})
	}
}

// wait returns the channel closed once the stream is up, and why the last
// stream ended.
func (r *readiness) wait() (<-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up, r.lastErr
}

// WaitReady waits until the Client is ready, or ctx ends or the Client is
// closed.
//
// Ready means what Watching reports: the invalidation stream is up on a
// region (that region answered the Watch call and sent its Resync), so
// cached answers live for the full TTL and are invalidated as their
// tenants change. Lookups do not need it: before it they work (a miss asks
// the regions as always) but cache answers for the disconnected TTL only.
// Call it at start-up to hold back traffic (or a readiness probe) until
// the Client is fully working; a Client whose regions are all unreachable
// never becomes ready.
//
// It returns nil once ready (at once if it already is), ErrClosed if the
// Client is closed first, and otherwise an error wrapping ctx's error that
// says why the last Watch stream failed, if one did.
func (c *Client) WaitReady(ctx context.Context) error {
	up, _ := c.ready.wait()
	select {
	case <-up:
		return nil
	case <-c.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		if c.Watching() {
			return nil
		}
		if _, last := c.ready.wait(); last != nil {
			return fmt.Errorf("tcs client: not ready, the watch stream is not up (last failure: %v): %w", last, ctx.Err())
		}
		return fmt.Errorf("tcs client: not ready, the watch stream is not up: %w", ctx.Err())
	}
}
