package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Store deadlines. A catalog store call takes milliseconds (one bbolt
// transaction, or a DynamoDB transaction of a few items); a store that has
// not answered within seconds is down or frozen, and the caller is better
// served by a prompt 503 than by a hung request.
const (
	// DefaultStoreTimeout bounds the store calls of one request together.
	DefaultStoreTimeout = 5 * time.Second
	// DefaultReadyTimeout bounds /readyz's store ping.
	DefaultReadyTimeout = time.Second
	// DefaultRetryAfter is what 503 answers ask clients to wait.
	DefaultRetryAfter = time.Second
	// DefaultMaxStoreCalls bounds the store calls in flight.
	DefaultMaxStoreCalls = 256
	// readyCacheTTL is how long /readyz reuses a ping's answer, so that a
	// flood of unauthenticated /readyz calls is not a flood of store calls.
	readyCacheTTL = time.Second
)

// storeOp describes one store call, for problem answers, logs and metrics.
type storeOp struct {
	// method is the catalog.Store method (the metric label).
	method string
	// what names the call for people: "create tenant acme".
	what string
	// write: the call may change the store, so a call that timed out after
	// it started may have committed.
	write bool
	// check tells the caller how to learn whether a write committed.
	check string
}

// noAnswer is a store call that gave no answer: it did not answer within
// its deadline, or its backend's connection failed (lost). writeError maps
// it: a write that had started is "outcome unknown", any other call a
// plain 503.
type noAnswer struct {
	op    storeOp
	limit time.Duration
	// started: the store was called. False when the call waited for a
	// free slot (MaxStoreCalls) until its deadline, so a write did not
	// happen.
	started bool
	// lost: the store answered with a connection error (a request that
	// may have been sent), not a timeout.
	lost bool
	// err is what the store returned, if it returned in time with a
	// timeout or connection error of its own.
	err error
}

func (e *noAnswer) Error() string {
	var msg string
	switch {
	case !e.started:
		msg = fmt.Sprintf("store %s: not started within %v: every store call slot is busy", e.op.what, e.limit)
	case e.lost:
		msg = fmt.Sprintf("store %s: connection failed", e.op.what)
	default:
		msg = fmt.Sprintf("store %s: no answer within %v", e.op.what, e.limit)
	}
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *noAnswer) Unwrap() error { return e.err }

// budgetKey holds the request's *budget in its context.
type budgetKey struct{}

// budget is the one deadline all store calls of a request share, set by
// the first of them: a read-modify-write (Get, then Update) answers within
// StoreTimeout as a single read does.
type budget struct {
	mu       sync.Mutex
	deadline time.Time
}

func (b *budget) until(limit time.Duration) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deadline.IsZero() {
		b.deadline = time.Now().Add(limit)
	}
	return b.deadline
}

// withBudget gives r a store-call budget.
func withBudget(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), budgetKey{}, &budget{}))
}

// storeCall runs f, a store call, under the request's store deadline, and
// returns by the deadline even if f ignores its context: f runs in its own
// goroutine, which finishes when the store answers. Calls in flight,
// including those that outlived their deadline, hold one of MaxStoreCalls
// slots, so a store that ignores contexts costs a bounded number of
// goroutines; a call that finds every slot taken waits for one until its
// deadline.
func storeCall[T any](s *Server, ctx context.Context, op storeOp, f func(ctx context.Context) (T, error)) (T, error) {
	limit := s.storeTimeout
	deadline := time.Now().Add(limit)
	if b, ok := ctx.Value(budgetKey{}).(*budget); ok {
		deadline = b.until(limit)
	}
	return runStoreCall(s, ctx, deadline, limit, op, f)
}

func runStoreCall[T any](s *Server, parent context.Context, deadline time.Time, limit time.Duration, op storeOp, f func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		if err := parent.Err(); err != nil {
			return zero, err
		}
		s.timeouts.WithLabelValues(op.method).Inc()
		return zero, &noAnswer{op: op, limit: limit}
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-s.slots }()
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("store %s panicked: %v\n%s", op.what, p, debug.Stack())}
			}
		}()
		v, err := f(ctx)
		done <- result{v, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		select {
		case res = <-done: // answered just in time
		default:
			if err := parent.Err(); err != nil {
				return zero, err
			}
			s.timeouts.WithLabelValues(op.method).Inc()
			return zero, &noAnswer{op: op, limit: limit, started: true}
		}
	}
	if res.err != nil && parent.Err() == nil {
		var domain *tenant.Error
		switch {
		case isTimeout(res.err):
			// The store gave up on its own deadline (ours, or its
			// backend's: an AWS SDK call deadline) or on one of its
			// attempts.
			s.timeouts.WithLabelValues(op.method).Inc()
			return zero, &noAnswer{op: op, limit: limit, started: true, err: res.err}
		case !errors.As(res.err, &domain) && isConnectionError(res.err):
			return zero, &noAnswer{op: op, limit: limit, started: true, lost: true, err: res.err}
		}
	}
	return res.v, res.err
}

// isConnectionError reports whether err says a request's connection failed
// (the AWS SDK's send errors do), so the request may have reached the
// server.
func isConnectionError(err error) bool {
	var c interface{ ConnectionError() bool }
	return errors.As(err, &c) && c.ConnectionError()
}

// isTimeout reports whether err is a timeout: a context deadline, or a
// network or SDK error that says it is one (awsclient.TimeoutError, net
// timeouts).
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// readiness caches /readyz's store ping for readyCacheTTL; concurrent
// /readyz calls share one ping.
type readiness struct {
	mu      sync.Mutex
	checked time.Time
	err     error
	running chan struct{} // closed when the running ping ends; nil if none
}

// ready reports whether the store answered a ping within ReadyTimeout, at
// most readyCacheTTL ago.
func (s *Server) ready(ctx context.Context) error {
	rd := &s.readiness
	rd.mu.Lock()
	if !rd.checked.IsZero() && s.now().Sub(rd.checked) < readyCacheTTL {
		err := rd.err
		rd.mu.Unlock()
		return err
	}
	if running := rd.running; running != nil {
		rd.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return ctx.Err()
		}
		rd.mu.Lock()
		defer rd.mu.Unlock()
		return rd.err
	}
	running := make(chan struct{})
	rd.running = running
	rd.mu.Unlock()

	// The ping serves every waiting caller, so it does not end with the
	// first caller's request.
	pctx := context.WithoutCancel(ctx)
	op := storeOp{method: "Ping", what: "ping"}
	_, err := runStoreCall(s, pctx, time.Now().Add(s.readyTimeout), s.readyTimeout, op, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.store.Ping(ctx)
	})

	rd.mu.Lock()
	rd.checked, rd.err, rd.running = s.now(), err, nil
	rd.mu.Unlock()
	close(running)
	return err
}
