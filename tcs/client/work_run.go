package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// TenantFunc is the work RunPerTenant runs for one tenant: token is the
// tenant's fencing token (see Assignment.Tenants); ctx ends when this
// member no longer owns the tenant under that token, or RunPerTenant stops.
type TenantFunc func(ctx context.Context, tenantID string, token uint64) error

// RunPerTenant joins pool (see Work) and runs fn for each tenant this
// member owns, every interval: the first run of a tenant at a random point
// of its first interval (so that a member given many tenants at once does
// not run them all together), each next run interval after the previous
// one began (a run longer than interval is followed at once by the next).
// Never two runs of one tenant at once; at most the assignment's
// MaxConcurrent runs at once (a due run waits for a slot). When the member
// loses a tenant, or its token changes, the run's ctx is cancelled, and
// RunPerTenant waits for it to return before it acknowledges the
// assignment (Assignment.Applied), so that the tenant's new owner starts
// at once and never alongside it: fn should return soon after its ctx
// ends, as no tenant starts meanwhile. onErr, if not nil, is called with
// each run's error. It returns nil when ctx ends, after the runs in
// progress returned and the member left the pool (its tenants go to the
// others at once), or the error that kept it from joining.
func (c *Client) RunPerTenant(ctx context.Context, pool string, capacity float64, interval time.Duration, fn TenantFunc, onErr func(tenantID string, err error), opts ...WorkOption) error {
	if interval <= 0 {
		return fmt.Errorf("tcs client work: interval %v: want more than 0", interval)
	}
	if fn == nil {
		return fmt.Errorf("tcs client work: no function to run")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	assignments, err := c.Work(ctx, pool, capacity, opts...)
	if err != nil {
		return err
	}
	s := &slots{}
	s.cond = sync.NewCond(&s.mu)
	type running struct {
		token  uint64
		cancel context.CancelFunc
		done   chan struct{}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	tenants := map[string]running{}
	stopAll := func() {
		for id, r := range tenants {
			r.cancel()
			delete(tenants, id)
		}
	}
	defer stopAll()
	defer s.close()
	for a := range assignments {
		s.setLimit(a.MaxConcurrent)
		var stopped []chan struct{}
		for id, r := range tenants {
			if tok, ok := a.Tenants[id]; !ok || tok != r.token {
				r.cancel()
				delete(tenants, id)
				stopped = append(stopped, r.done)
			}
		}
		for _, done := range stopped {
			<-done
		}
		a.Applied() // no run of a dropped tenant is left
		for id, tok := range a.Tenants {
			if _, ok := tenants[id]; ok {
				continue
			}
			tctx, tcancel := context.WithCancel(ctx)
			done := make(chan struct{})
			tenants[id] = running{token: tok, cancel: tcancel, done: done}
			wg.Go(func() {
				defer close(done)
				runTenant(tctx, s, id, tok, interval, fn, onErr)
			})
		}
	}
	return nil
}

// runTenant runs fn for one tenant every interval until ctx ends.
func runTenant(ctx context.Context, s *slots, id string, token uint64, interval time.Duration, fn TenantFunc, onErr func(string, error)) {
	next := time.Now().Add(rand.N(interval))
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !s.acquire(ctx) {
			return
		}
		began := time.Now()
		err := fn(ctx, id, token)
		s.release()
		if err != nil && onErr != nil && ctx.Err() == nil {
			onErr(id, err)
		}
		next = began.Add(interval)
	}
}

// slots is a semaphore whose size changes with the assignments: 0 means no
// limit.
type slots struct {
	mu     sync.Mutex
	cond   *sync.Cond
	limit  int
	busy   int
	closed bool
}

func (s *slots) setLimit(n int) {
	s.mu.Lock()
	s.limit = n
	s.mu.Unlock()
	s.cond.Broadcast()
}

func (s *slots) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cond.Broadcast()
}

// acquire waits for a slot; false if ctx ended (or the slots were closed)
// first.
func (s *slots) acquire(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock() // so that a waiter between its check and its Wait is not missed
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed && ctx.Err() == nil && s.limit > 0 && s.busy >= s.limit {
		s.cond.Wait()
	}
	if s.closed || ctx.Err() != nil {
		return false
	}
	s.busy++
	return true
}

func (s *slots) release() {
	s.mu.Lock()
	s.busy--
	s.mu.Unlock()
	s.cond.Broadcast()
}
