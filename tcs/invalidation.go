package tcs

import (
	"context"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
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
	// Trace is the trace context of the apply that caused the invalidation
	// (see tenant.ChangeEvent.Trace); a lookup server's "invalidate" span is
	// its child. Empty when the change was not traced, and in heartbeats.
	Trace tenant.TraceContext
}

// Heartbeat reports whether inv is a feed heartbeat: an Invalidation with
// no TenantID and no Hostnames, which invalidates nothing. Appliers
// broadcast one at a steady interval (CommittedAt = when it was sent), so
// that a lookup server can tell a working feed that has nothing to say from
// one that stopped delivering, and shorten its cache TTL while the feed is
// silent (invariant 5). Broadcasters and feeds carry heartbeats like any
// other invalidation.
func (inv Invalidation) Heartbeat() bool {
	return inv.TenantID == "" && len(inv.Hostnames) == 0
}

// Broadcaster sends invalidations to every lookup server of one region. The
// applier calls it after an apply is durable. Delivery is best effort: a
// lost invalidation only delays freshness up to the cache TTL (invariant 5).
// It must be safe for concurrent use: an applier broadcasts from several
// goroutines.
type Broadcaster interface {
	Broadcast(ctx context.Context, inv Invalidation) error
}

// Feed delivers a region's invalidations to one lookup server.
type Feed interface {
	// Subscribe calls deliver for each invalidation until ctx ends (then it
	// returns nil) or the feed fails. It calls gap whenever invalidations
	// may have been lost (the subscriber fell behind, the feed reconnected
	// or could not receive, a message was unreadable), so that the receiver
	// can treat its whole cache as suspect. deliver and gap are never
	// called concurrently.
	//
	// Invalidations may be delivered more than once and out of broadcast
	// order: the AWS feed (SNS to an SQS standard queue) promises neither,
	// and ordered delivery would cost a FIFO topic and queue per node for
	// nothing, since receivers apply invalidations by version (as the
	// Invalidation comment in tcs.proto says), which makes order and
	// duplicates harmless. The in-process feed (package fanout) does keep
	// broadcast order.
	Subscribe(ctx context.Context, deliver func(Invalidation), gap func()) error
}
