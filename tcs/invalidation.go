package tcs

import (
	"context"
	"time"
)

// Invalidation says that a tenant changed in a region's replica: cached
// answers for Hostnames that are older than Version are out of date.
type Invalidation struct {
	TenantID  string
	Version   int64
	Hostnames []string
	// CommittedAt is when the source of truth committed the change; lookup
	// servers report replication lag from it.
	CommittedAt time.Time
}

// Broadcaster sends invalidations to every lookup server of one region. The
// applier calls it after an apply is durable. Delivery is best effort: a
// lost invalidation only delays freshness up to the cache TTL (invariant 5).
type Broadcaster interface {
	Broadcast(ctx context.Context, inv Invalidation) error
}

// Feed delivers a region's invalidations to one lookup server.
type Feed interface {
	// Subscribe calls deliver for each invalidation, in the order they were
	// broadcast, until ctx ends (then it returns nil) or the feed fails. It
	// calls gap whenever invalidations may have been lost (the subscriber
	// fell behind, or the feed reconnected), so that the receiver can treat
	// its whole cache as suspect. deliver and gap are never called
	// concurrently.
	Subscribe(ctx context.Context, deliver func(Invalidation), gap func()) error
}
