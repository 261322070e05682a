package kinesis

import (
	"context"
	"errors"

	"github.com/tcs-dev/tcs/internal/lease"
)

// observe records the leases as read, for expiry (lease.Observer).
func (c *consumer) observe(leases []Lease) {
	ls := make([]lease.Lease, len(leases))
	for i, l := range leases {
		ls[i] = toTable(l)
	}
	c.obs.Observe(c.s.now(), ls)
}

// eligible returns the leases that may be consumed now: not finished, and
// every parent finished (or gone from the stream: trimmed).
func (c *consumer) eligible(leases []Lease) []Lease {
	finished := map[string]bool{}
	for _, l := range leases {
		if l.Checkpoint == ShardEnd {
			finished[l.Shard] = true
		}
	}
	var ok []Lease
	for _, l := range leases {
		if l.Checkpoint == ShardEnd {
			continue
		}
		ready := true
		for _, p := range l.Parents {
			if !finished[p] && c.listed[p] {
				ready = false
			}
		}
		if ready {
			ok = append(ok, l)
		}
	}
	return ok
}

// balance runs lease.Balance's plan over the eligible leases: it adopts
// this worker's own leases that no loop runs, takes free and expired leases
// up to a fair share, then asks the most loaded worker for one (one request
// at a time). Leases the plan says are lost are left to the renewals, which
// stop their loops. The owner of a requested lease hands it over at its
// next renewal (consume.go): a worker asks only one over its share, or at
// its share while the asker is two short.
func (c *consumer) balance(ctx context.Context, leases []Lease) {
	eligible := c.eligible(leases)
	ls := make([]lease.Lease, len(eligible))
	for i, l := range eligible {
		ls[i] = toTable(l)
	}
	now := c.s.now()
	plan, err := lease.Balance(lease.Input{
		Me:        c.s.owner,
		Leases:    ls,
		Expired:   func(l lease.Lease) bool { return c.obs.Expired(now, l) },
		Holds:     func(l lease.Lease) bool { return c.running[l.Key] != nil },
		MaxSteals: 1,
	})
	if err != nil {
		c.log.Warn("planning the leases failed", "err", err)
		return
	}
	for _, a := range plan.Adopt {
		if ctx.Err() != nil {
			return
		}
		// Ours in the table but not running: a take whose answer was
		// lost, a handover to us, a loop that stopped, or a previous
		// Consume that could not release it. Renew first: that gives the
		// loop a fresh validity.
		l := fromTable(a)
		sent := c.s.now()
		if _, err := c.leases.renew(ctx, l.Shard, l.token); err != nil {
			if !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
				c.log.Warn("adopting a lease failed", "shard", l.Shard, "err", err)
			}
			continue
		}
		c.start(ctx, l, l.token, sent, "adopt")
	}
	for _, t := range plan.Take {
		if len(c.running) >= plan.Target || ctx.Err() != nil {
			return
		}
		l := fromTable(t)
		sent := c.s.now()
		taken, err := c.leases.take(ctx, l)
		switch {
		case errors.Is(err, errLeaseLost):
			continue // someone else was quicker
		case err != nil:
			if ctx.Err() == nil {
				c.log.Warn("taking a lease failed", "shard", l.Shard, "err", err)
			}
			continue
		}
		event := "take"
		if l.Owner != "" {
			event = "expired"
			c.log.Info("took an expired lease", "shard", l.Shard, "from", l.Owner)
		}
		c.start(ctx, taken, taken.token, sent, event)
	}
	held := len(c.running)
	ask, from := plan.Steals(held)
	if ask == 0 || ctx.Err() != nil {
		return
	}
	l := fromTable(from[0])
	err = c.leases.requestSteal(ctx, l)
	switch {
	case err == nil:
		c.log.Info("asked for a lease", "shard", l.Shard, "owner", l.Owner, "held", held, "target", plan.Target)
		c.s.m.leaseEvents.WithLabelValues(c.group, "steal_request").Inc()
	case !errors.Is(err, errLeaseLost) && ctx.Err() == nil:
		c.log.Warn("asking for a lease failed", "shard", l.Shard, "err", err)
	}
}
