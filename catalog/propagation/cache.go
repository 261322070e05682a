package propagation

import (
	"context"
	"slices"
	"sync"
	"time"
)

// DefaultRegistryMaxAge is how long Cached keeps a registry's answer: a
// Wait polls every 5 to 50 ms, and each poll would otherwise read the
// registry (a DynamoDB Scan on AWS).
const DefaultRegistryMaxAge = time.Second

// cached is a Registry that reads its inner one at most once per maxAge.
type cached struct {
	inner  Registry
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex // held while reading inner: concurrent callers share one read
	at      time.Time
	live    []Node
	dropped []Dropped
}

// Cached returns a Registry that answers from reg's last answer while it is
// at most maxAge old (DefaultRegistryMaxAge if maxAge <= 0), so that many
// waits polling at once read reg once per maxAge. A node that joins or
// stops shows up to maxAge late, well within the heartbeat bound. A failed
// read is not kept. A nil now is time.Now.
func Cached(reg Registry, maxAge time.Duration, now func() time.Time) Registry {
	if maxAge <= 0 {
		maxAge = DefaultRegistryMaxAge
	}
	if now == nil {
		now = time.Now
	}
	return &cached{inner: reg, maxAge: maxAge, now: now}
}

// Nodes implements Registry.
func (c *cached) Nodes(ctx context.Context) ([]Node, []Dropped, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.maxAge {
		return slices.Clone(c.live), slices.Clone(c.dropped), nil
	}
	live, dropped, err := c.inner.Nodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	c.at, c.live, c.dropped = c.now(), live, dropped
	return slices.Clone(live), slices.Clone(dropped), nil
}
