package kinesis

import (
	"context"
	"errors"
	"slices"
)

func (c *consumer) observe(leases []Lease) {
	now := c.s.now()
	for _, l := range leases {
		o, ok := c.seen[l.Shard]
		if !ok || o.owner != l.Owner || o.counter != l.Counter {
			c.seen[l.Shard] = observation{owner: l.Owner, counter: l.Counter, since: now}
		}
	}
}

func (c *consumer) expired(l Lease) bool {
	return l.Owner != "" && l.Owner != c.s.owner && c.s.now().Sub(c.seen[l.Shard].since) >= c.s.lease
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

// balance adopts this worker's own leases that no loop runs, then takes free
// and expired leases up to a fair share, then asks the most loaded worker
// for one.
func (c *consumer) balance(ctx context.Context, leases []Lease) {
	eligible := c.eligible(leases)
	for _, l := range eligible {
		if l.Owner == c.s.owner && c.running[l.Shard] == nil && ctx.Err() == nil {
			// Ours in the table but not running: a take whose answer was
			// lost, a handover to us, a loop that stopped, or a previous
			// Consume that could not release it. Renew first: that gives
			// the loop a fresh validity.
			sent := c.s.now()
			if _, err := c.leases.renew(ctx, l.Shard, l.token); err != nil {
				if !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
					c.log.Warn("adopting a lease failed", "shard", l.Shard, "err", err)
				}
				continue
			}
			c.start(ctx, l, l.token, sent, "adopt")
		}
	}

	workers := map[string]int{c.s.owner: 0}
	var free, expired []Lease
	pendingForMe := false
	for _, l := range eligible {
		switch {
		case l.Owner == c.s.owner:
		case l.Owner == "":
			free = append(free, l)
		case c.expired(l):
			expired = append(expired, l)
		default:
			workers[l.Owner]++
			if l.Pending == c.s.owner {
				pendingForMe = true
			}
		}
	}
	target := (len(eligible) + len(workers) - 1) / len(workers)
	for _, l := range slices.Concat(free, expired) {
		if len(c.running) >= target || ctx.Err() != nil {
			return
		}
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
	if held >= target || pendingForMe || ctx.Err() != nil {
		return
	}
	// Still short, nothing free: ask the most loaded worker for a lease,
	// one at a time. Asking a worker that has exactly the target only when
	// this one is two short keeps workers from trading leases forever.
	victim, most := "", 0
	for owner, n := range workers {
		if owner != c.s.owner && (n > most || n == most && owner < victim) {
			victim, most = owner, n
		}
	}
	if victim == "" || !(most > target || most == target && held < target-1) {
		return
	}
	for _, l := range eligible {
		if l.Owner != victim || l.Pending != "" {
			continue
		}
		err := c.leases.requestSteal(ctx, l)
		if err == nil {
			c.log.Info("asked for a lease", "shard", l.Shard, "owner", victim, "held", held, "target", target)
			c.s.m.leaseEvents.WithLabelValues(c.group, "steal_request").Inc()
			return
		}
		if !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
			c.log.Warn("asking for a lease failed", "shard", l.Shard, "err", err)
		}
		return
	}
}
