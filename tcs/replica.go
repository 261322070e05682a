// Package tcs is the read side of TCS: a region's replica table (the
// Replica interface, with backends in tcs/boltreplica and tcs/dynamo, both
// run by the conformance suite in tcs/replicatest), the rules that apply
// change events to it in any order (ApplyEvent), and the invalidation
// contract (Broadcaster, Feed) between appliers and lookup servers. The gRPC
// lookup server is tcs/lookup, its cache tcs/cache; tcs/client is the client
// library compute nodes link.
package tcs

import (
	"context"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Replica is one region's copy of the tenant documents and the hostname →
// tenant index, fed by the streamer and read by lookup servers.
//
// Apply must be atomic and order-insensitive (docs/architecture.md,
// invariants 2 and 3): applying any permutation of a history's events, with
// duplicates and replays, leaves the replica equal to the source of truth.
// ApplyEvent (in apply.go) states the rules; every backend runs them inside
// one transaction or conditional write.
type Replica interface {
	// Apply applies one change event and reports what it changed.
	Apply(ctx context.Context, ev *tenant.ChangeEvent) (ApplyResult, error)
	// LookupHostname returns the live tenant that owns the normalised
	// hostname, or a NotFound *tenant.Error.
	LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error)
	// GetTenant returns the stored document, tombstones included (so that
	// verify can compare versions), or NotFound if there is none.
	GetTenant(ctx context.Context, id string) (*tenant.Tenant, error)
	// Ping reports whether the replica can serve reads.
	Ping(ctx context.Context) error
	Close() error
}

// BatchApplier is implemented by replicas that can apply several events in
// one transaction, which the streamer's applier uses for each batch it
// reads from the stream: one commit (one fsync, one conditional write)
// instead of one per event is what makes resyncing every tenant fast.
type BatchApplier interface {
	// ApplyBatch applies evs in order, atomically: all of them or none. It
	// returns one result per event, equal to what Apply would have returned
	// for each in turn. If any event is malformed (tcs.CheckEvent) it
	// returns an Invalid *tenant.Error and applies nothing; callers check
	// events first and leave malformed ones out.
	ApplyBatch(ctx context.Context, evs []*tenant.ChangeEvent) ([]ApplyResult, error)
}

// ApplyResult says what an Apply changed.
type ApplyResult struct {
	// Applied is true if the tenant document was replaced (the event was
	// newer than the stored version, or a resync).
	Applied bool
	// Hostnames whose owner or document changed: what lookup caches must
	// invalidate. Empty when the event was a no-op.
	Hostnames []string
}

// HostEntry is one hostname record of a replica, as Scanner returns it.
type HostEntry struct {
	Hostname string
	HostRecord
}

// Scanner is implemented by replicas that can list their whole contents,
// page by page, for the SRE tools (tcsctl verify and repair) that compare a
// region with the source of truth. Every backend implements it.
//
// Pages come in a backend-defined order (bbolt: key order; DynamoDB: scan
// order) and are addressed by an opaque cursor: "" starts the scan, and the
// next cursor returned with a page continues it; an empty next cursor means
// the scan is complete. A scan that runs while events are applied sees each
// record at least once, in some state it had during the scan.
type Scanner interface {
	// ScanDocs returns up to limit stored documents, tombstones included.
	// A limit ≤ 0 means the backend's default page size.
	ScanDocs(ctx context.Context, cursor string, limit int) (docs []*tenant.Tenant, next string, err error)
	// ScanHosts returns up to limit hostname records, released ones (with
	// TenantID "") included.
	ScanHosts(ctx context.Context, cursor string, limit int) (hosts []HostEntry, next string, err error)
}
