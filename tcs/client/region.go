package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// region is one lookup endpoint with its circuit breaker.
type region struct {
	addr string
	conn *grpc.ClientConn
	api  tcsv1.TenantContextServiceClient

	mu        sync.Mutex
	name      string // as the server reports it; addr until it does
	failures  int
	openUntil time.Time // breaker open (skipped) until then; zero when closed
}

// label is the region's name for metrics and logs.
func (r *region) label() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.name
}

// intern returns the region's name as the server reported it, reusing the
// stored string when it has not changed.
func (r *region) intern(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != "" && name != r.name {
		r.name = name
	}
	return r.name
}

// allow reports whether a lookup may be sent to the region now: its breaker
// is closed, or its cooldown is over, in which case this lookup is the probe
// and the breaker stays open for the others for another cooldown.
func (r *region) allow(now time.Time, cooldown time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.openUntil.IsZero() {
		return true
	}
	if now.Before(r.openUntil) {
		return false
	}
	r.openUntil = now.Add(cooldown)
	return true
}

// healthy reports whether the breaker is closed, without probing.
func (r *region) healthy(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.openUntil.IsZero() || !now.Before(r.openUntil)
}

// succeeded closes the breaker.
func (r *region) succeeded() {
	r.mu.Lock()
	r.failures = 0
	r.openUntil = time.Time{}
	r.mu.Unlock()
}

// failed counts a failure and reports whether it opened the breaker.
func (r *region) failed(now time.Time, threshold int, cooldown time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures++
	if r.failures >= threshold && r.openUntil.IsZero() {
		r.openUntil = now.Add(cooldown)
		return true
	}
	if !r.openUntil.IsZero() {
		r.openUntil = now.Add(cooldown) // a failed probe
	}
	return false
}

// answered reports whether err is an answer from the region (as opposed
// to a failure to get one): success, NOT_FOUND and INVALID_ARGUMENT end a
// lookup; anything else moves it to the next region.
func answered(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.InvalidArgument:
		return true
	}
	return false
}

type attempt[T any] struct {
	val T
	r   *region
	err error
}

// errBehind: every region that answered was behind (see call).
var errBehind = errors.New("every region that answered is behind versions this client returned")

// call sends one RPC to the regions in order, local first, skipping those
// whose breaker is open (unless all are), starting the next region when the
// current one fails or has not answered within the hedge delay, and returns
// the first answer (see answered) that accept takes. accept sees each
// successful answer, in the order they arrive; one it does not take (a
// region behind versions the client has returned) moves the call to the
// next region at once, as a failure does, without counting against the
// region's breaker, and so does a region's answer that it has not reached
// the min_version of a LookupAtLeast (notReached). If no answer is taken it returns the last failure, or
// errBehind if that was an answer accept did not take.
func call[T any](c *Client, ctx context.Context, rpc func(context.Context, tcsv1.TenantContextServiceClient) (T, error),
	accept func(T, *region) bool) (T, *region, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	now := time.Now()
	order := make([]*region, 0, len(c.regions))
	var skipped []*region
	for _, r := range c.regions {
		if r.allow(now, c.cfg.breakerCooldown) {
			order = append(order, r)
		} else {
			skipped = append(skipped, r)
		}
	}
	if len(order) == 0 {
		order = skipped // every breaker is open: try them all rather than fail unasked
	} else {
		for _, r := range skipped {
			c.hooks.Failover(r.label())
		}
	}

	results := make(chan attempt[T], len(order))
	next, inflight := 0, 0
	start := func() {
		r := order[next]
		next++
		inflight++
		first := next == 1
		go func() {
			began := time.Now()
			v, err := rpc(ctx, r.api)
			took := time.Since(began)
			c.hooks.RPC(r.label(), took, err)
			if first && answered(err) {
				c.hedge.observe(took)
			}
			results <- attempt[T]{val: v, r: r, err: err}
		}()
	}
	start()

	delay := c.hedge.get()
	var hedge <-chan time.Time
	var timer *time.Timer
	if delay > 0 && len(order) > 1 {
		timer = time.NewTimer(delay)
		defer timer.Stop()
		hedge = timer.C
	}
	var zero T
	for {
		select {
		case <-hedge:
			hedge = nil
			if next < len(order) {
				c.hooks.Hedge(order[next-1].label())
				start()
				if next < len(order) {
					timer.Reset(delay)
					hedge = timer.C
				}
			}
		case a := <-results:
			inflight--
			behind := false
			if answered(a.err) {
				a.r.succeeded()
				if a.err != nil || accept(a.val, a.r) {
					return a.val, a.r, a.err
				}
				behind = true
				a.err = errBehind
				c.hooks.Behind(a.r.label())
			} else if _, _, ok := notReached(a.err); ok {
				// Behind the version a LookupAtLeast asked for: an
				// answer, not a failure of the region.
				a.r.succeeded()
				behind = true
				c.hooks.Behind(a.r.label())
			} else if ctx.Err() == nil || status.Code(a.err) == codes.DeadlineExceeded {
				// Failed on its own (or timed out), not cancelled by us.
				if a.r.failed(time.Now(), c.cfg.breakerFailures, c.cfg.breakerCooldown) {
					c.hooks.BreakerOpen(a.r.label())
					c.log.Warn("tcs region failing; skipping it for a while",
						"region", a.r.label(), "addr", a.r.addr, "cooldown", c.cfg.breakerCooldown, "err", a.err)
				}
			}
			if next < len(order) && ctx.Err() == nil {
				if !behind {
					c.hooks.Failover(a.r.label())
				}
				start()
				if timer != nil && next < len(order) {
					timer.Reset(delay)
					hedge = timer.C
				}
			} else if inflight == 0 {
				return zero, nil, a.err // the last failure
			}
		}
	}
}
