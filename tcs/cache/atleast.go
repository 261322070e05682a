package cache

import "context"

// Want is what a read-your-writes lookup needs of its answer (LookupAtLeast).
type Want struct {
	// TenantID, if not empty, is the tenant the answer must be.
	TenantID string
	// MinVersion is the oldest version of the tenant the answer may be.
	MinVersion int64
}

// Met reports whether a lookup's outcome, res and err, meets w: a tenant
// answer (not NotFound, not an error), of w.TenantID if set, at
// w.MinVersion or newer. A stale answer meets w if its version does.
func (w Want) Met(res Result, err error) bool {
	return err == nil && res.Field1 != nil && (w.TenantID == "" || res.TenantID == w.TenantID) && res.Version >= w.MinVersion
}

// met reports whether tenant entry e meets w.
func (w Want) met(e *entry) bool {
	return !e.negative() && (w.TenantID == "" || e.tenantID == w.TenantID) && e.version >= w.MinVersion
}

// atLeastJoins bounds how many reads in flight a LookupAtLeast joins that
// began before it did (each is followed by another), so that it cannot be
// kept waiting for ever by a hostname that other lookups keep reading.
const atLeastJoins = 3

// LookupAtLeast is LookupAdmit for a caller that needs an answer at least as
// new as w (read-your-writes). A fresh entry that meets w is the answer, and
// hit is true. Otherwise the answer is that of a replica read that began
// after the call did: the call joins a read in flight, and if that one
// began earlier, waits for it and joins (or starts) the next. The read is
// any miss's, installed by the same rules (an answer older than the entry
// of its tenant does not replace it; one that raced with an invalidation is
// not installed fresh), with the same stale-if-error answers when it fails.
// Its answer is returned whether or not it meets w (check with Want.Met):
// the caller decides what a region behind the version asked for says.
//
// admit is asked before any read, with known false whatever the cache
// holds: unlike a lookup of an expired entry, min_version lets a caller
// force a read of a hot hostname on every call, so each such read is
// budgeted as a read of an unknown hostname is. A refused call gets the
// entry kept for the hostname, stale, only if it meets w; else admit's
// error. While the replica is failing, a kept entry that meets w is
// answered at once, stale, as LookupAdmit would.
func (c *Cache) LookupAtLeast(ctx context.Context, hostname string, w Want, admit Admit) (res Result, hit bool, err error) {
	now := c.opts.Now().UnixNano()
	sh := c.shard(hostname)
	sh.mu.Lock()
	e, ok := c.getLocked(sh, hostname)
	if ok && c.fresh(&e, now) && w.met(&e) {
		sh.positiveHits++
		sh.mu.Unlock()
		return e.result(false), true, nil
	}
	sh.mu.Unlock()
	kept := ok && w.met(&e) && c.keptWithin(&e, now)

	if kept && c.failing() && (!e.outdated || c.opts.Fallback == nil) {
		c.probe(hostname)
		c.staleAtOnce.Add(1)
		c.staleServes.Add(1)
		res, err := c.serveStale(hostname, &e)
		return res, false, err
	}
	if admit != nil {
		if err := admit(false); err != nil {
			c.refused.Add(1)
			if kept && !e.outdated {
				c.refusedStale.Add(1)
				res, err := c.serveStale(hostname, &e)
				return res, false, err
			}
			return Result{}, false, err
		}
	}
	c.misses.Add(1)
	began := c.fills.Load()
	for range atLeastJoins {
		ch := c.flight.DoChan(hostname, func() (any, error) { return c.fillRead(hostname) })
		select {
		case r := <-ch:
			res, _ = r.Val.(Result)
			err = r.Err
		case <-ctx.Done():
			return Result{}, false, ctx.Err()
		}
		if res.seq > began {
			break
		}
	}
	if res.Stale && !res.Fallback {
		c.staleServes.Add(1)
	}
	return res, false, err
}
