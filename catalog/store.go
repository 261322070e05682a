// Package catalog is the write side of TCS: the strongly consistent source of
// truth for tenant configuration. It defines the Store interface that every
// source-of-truth backend implements (bbolt in catalog/bolt, DynamoDB in
// catalog/dynamo; both run the conformance suite in catalog/storetest), and
// the outbox through which committed changes reach the streamer.
//
// What a write stores is decided by one pure function, PlanWrite (plan.go):
// given the stored state and the request, it returns the new document, the
// claims moved, the sealed audit record and the outbox event. Stores read
// what it needs, call it, and write what it returns atomically.
//
// Tenant rules (validation, hostname normalisation) live in catalog/tenant;
// the admin REST API lives in catalog/httpapi.
package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Store is the source of truth. Every write commits, in one atomic
// transaction, the tenant document, its hostname claims, an audit record and
// an outbox entry; a write that fails changes nothing.
//
// Writes take a tenant that has already passed tenant.Prepare; stores check
// only what needs the stored state (existence, versions, hostname ownership).
// Errors are *tenant.Error with codes NotFound, AlreadyExists, HostnameTaken
// or VersionMismatch; anything else is Internal or Unavailable.
type Store interface {
	// Create stores a new tenant at version 1 — or, if id names a tombstone,
	// at the tombstone's version + 1, so replicas order it after the delete.
	Create(ctx context.Context, t *tenant.Tenant, actor string) (*tenant.Tenant, error)
	// Get returns the live tenant; a tombstone is NotFound.
	Get(ctx context.Context, id string) (*tenant.Tenant, error)
	// Update replaces the tenant if its stored version is expectedVersion.
	Update(ctx context.Context, t *tenant.Tenant, expectedVersion int64, actor string) (*tenant.Tenant, error)
	// Delete replaces the tenant by a tombstone and releases its hostnames.
	// expectedVersion 0 deletes whatever version is stored.
	Delete(ctx context.Context, id string, expectedVersion int64, actor string) (*tenant.Tenant, error)
	// List returns live tenants in the store's page order (id order unless
	// the store is a PageOrderer), starting after opts.After; only those
	// of segment opts.Segment if opts.Segments > 0 (a bad segment is
	// Invalid: CheckSegment).
	List(ctx context.Context, opts ListOptions) (Page, error)
	// LookupHostname returns the live tenant holding the normalised hostname.
	LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error)
	// History returns the tenant's audit records, newest first, starting
	// below version opts.Before (0 = from the newest). id AdminAuditID
	// returns the records of resync and resync-all.
	History(ctx context.Context, id string, opts HistoryOptions) ([]AuditRecord, error)

	// OutboxShards returns how many shards the outbox has, numbered from 0:
	// 1 for the bbolt store. Every entry of a tenant goes to shard
	// OutboxShard(id, OutboxShards()), so one shard holds a tenant's changes
	// in commit order; shards are independent (their sequences count
	// separately), so a publisher may read and acknowledge each on its own,
	// or several publishers one shard each.
	OutboxShards() int
	// OutboxHeads returns, for each shard, the sequence of the last entry
	// appended to it (0 before the first): a shard whose head is not above
	// a reader's position in it has nothing new.
	OutboxHeads(ctx context.Context) ([]uint64, error)
	// ReadOutbox returns up to limit entries of shard with a sequence
	// greater than after, in sequence order.
	ReadOutbox(ctx context.Context, shard int, after uint64, limit int) ([]OutboxEntry, error)
	// AckOutbox marks every entry of shard with a sequence ≤ upTo as
	// published; they are not returned again.
	AckOutbox(ctx context.Context, shard int, upTo uint64) error
	// OutboxDepth counts the outbox entries not yet acknowledged, in every
	// shard, stopping at max (a count of max means at least max), and
	// returns the commit time of the oldest (zero when the outbox is
	// empty). It is what the publisher's depth gauges report.
	OutboxDepth(ctx context.Context, max int) (int, time.Time, error)

	// Resync appends, for each distinct tenant of reqs, one outbox entry that
	// re-emits the tenant's current state without changing it: see
	// ResyncRequest. No version moves and the tenants' audit chains are
	// untouched: one record (action "resync", the ids and regions, the
	// actor named by auth.FromContext(ctx)) is appended to the AdminAuditID
	// chain in the same transaction as the first entries. The
	// requests must pass CheckResync (stores check it again, so that a
	// malformed request changes nothing). Ids the store never saw are
	// reported in ResyncResult.NotFound; a deleted tenant is resynced as its
	// tombstone.
	//
	// The bbolt store appends every entry in one transaction. The DynamoDB
	// store appends them in transactions of up to 97 entries (its limits),
	// each a consistent snapshot; an error part way leaves the earlier
	// transactions committed (resyncing again is harmless).
	Resync(ctx context.Context, reqs []ResyncRequest, regions []string) (ResyncResult, error)
	// ResyncAll resyncs, as Resync does with no hostnames to settle, the
	// stored tenants (tombstones included) that follow the id after in page
	// order (as List), up to limit of them (clamped by ResyncAllLimit), and returns
	// the id to pass as after for the next call ("" when no tenant follows).
	// Calls from "" until next is "" resync every tenant stored throughout,
	// with no export round trip; ResyncResult.NotFound stays empty. Each
	// call that resyncs a tenant appends one "resync-all" record (after,
	// the page's ids, regions, actor) to the AdminAuditID chain.
	//
	// The bbolt store reads and appends in one transaction. The DynamoDB
	// store reads an Export page, then resyncs it as Resync does.
	ResyncAll(ctx context.Context, after string, limit int, regions []string) (ResyncResult, string, error)
	// Export returns a page of every stored tenant, tombstones included, in
	// the store's page order (as List) after opts.After, each with the claim versions of the
	// hostnames it holds. Each item is consistent (the claims are those of
	// the document's version); the bbolt store reads a whole page in one
	// transaction. Limit is clamped by ExportLimit; opts' segment selects
	// as in List.
	Export(ctx context.Context, opts ListOptions) (ExportPage, error)

	// Ping reports whether the store can serve requests (readiness).
	Ping(ctx context.Context) error
	Close() error
}

// ListOptions selects a page of tenants.
type ListOptions struct {
	// After is the id the previous page ended with; "" starts at the first.
	After string
	// Limit is the page size; stores cap it at MaxPageSize.
	Limit int
	// Segment and Segments, when Segments > 0, select only the tenants
	// in segment Segment of Segments (see SegmentOf), so that Segments
	// listers can each walk a disjoint part of the catalog; After pages
	// within the segment. 0/0 lists every tenant. CheckSegment says
	// which values are valid.
	Segment, Segments int
}

// MaxSegments is the most segments a list may be split into.
const MaxSegments = 1024

// SegmentOf returns the segment of tenant id among segments (≥ 1): the
// same FNV-1a hash OutboxShard places tenants by, modulo segments. A store
// that shards tenants by OutboxShard(id, shards) finds segment i of n in
// the shards s with s ≡ i (mod gcd(n, shards)): when n divides shards
// (n a power of two up to 64 for the DynamoDB store) those shards hold
// exactly the segment and nothing else is read; otherwise they hold it
// among other ids, which the store reads and filters out.
func SegmentOf(id string, segments int) int { return OutboxShard(id, segments) }

// CheckSegment validates ListOptions' Segment and Segments, returning an
// Invalid error naming the field that is wrong.
func CheckSegment(opts ListOptions) error {
	bad := func(field, format string, args ...any) error {
		return &tenant.Error{Code: tenant.Invalid, Message: "invalid list segment", Fields: []tenant.FieldError{{Field: field, Reason: fmt.Sprintf(format, args...)}}}
	}
	switch {
	case opts.Segments < 0 || opts.Segments > MaxSegments:
		return bad("segments", "must be from 0 to %d, got %d", MaxSegments, opts.Segments)
	case opts.Segments == 0 && opts.Segment != 0:
		return bad("segment", "%d given without segments (0 lists everything)", opts.Segment)
	case opts.Segments > 0 && (opts.Segment < 0 || opts.Segment >= opts.Segments):
		return bad("segment", "must be from 0 to %d (segments - 1), got %d", opts.Segments-1, opts.Segment)
	}
	return nil
}

// InSegment reports whether id is in the segment opts selects (always,
// when opts.Segments is 0).
func (opts ListOptions) InSegment(id string) bool {
	return opts.Segments == 0 || SegmentOf(id, opts.Segments) == opts.Segment
}

// Page size bounds for List and History.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Page is one page of tenants. Next is the id to pass as ListOptions.After
// for the next page, or "" on the last page.
type Page struct {
	Tenants []*tenant.Tenant
	Next    string
}

// HistoryOptions selects audit records.
type HistoryOptions struct {
	// Before returns records with a version below it; 0 starts at the newest.
	Before int64
	// Limit caps the records returned; stores cap it at MaxPageSize.
	Limit int
}

// Action is what an audited change did.
type Action string

// Audited actions.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// AuditRecord is one committed change: who made it, when, and the document
// before and after. Before is nil for a create.
//
// A tenant's records form a hash chain (see SealAudit, AuditHash and
// VerifyChain): each holds the hash of its predecessor, and the store writes
// it in the same transaction as the change. The records of AdminAuditID
// (resync, resync-all) form a chain of their own; they carry Resync instead
// of documents, and their Version counts the chain's records.
type AuditRecord struct {
	TenantID string         `json:"tenant_id"`
	Version  int64          `json:"version"`
	Action   Action         `json:"action"`
	Actor    string         `json:"actor"`
	At       time.Time      `json:"at"`
	Before   *tenant.Tenant `json:"before,omitempty"`
	After    *tenant.Tenant `json:"after"`
	Resync   *ResyncAudit   `json:"resync,omitempty"`
	// PrevHash is the Hash of the record before this one in its chain; ""
	// for the first record with a hash. Hash is AuditHash of this record;
	// "" on records written before chaining.
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
	// Raw is the JSON the record was decoded from (a stored record's exact
	// bytes); MarshalJSON writes it as it is.
	Raw json.RawMessage `json:"-"`
}

// OutboxEntry is a committed change waiting to be published to the stream.
// Seq increases monotonically, with no gaps, in commit order within its
// Shard.
type OutboxEntry struct {
	Shard int                `json:"shard,omitempty"`
	Seq   uint64             `json:"seq"`
	Event tenant.ChangeEvent `json:"event"`
}

// OutboxShard returns the outbox shard of tenant id among shards: FNV-1a
// of the id, modulo shards. Stores with a sharded outbox (and a sharded
// tenant partition) place the tenant by it.
func OutboxShard(id string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(shards))
}

// PageOrderer is an optional capability of a Store whose List and Export
// pages do not run in id order (the DynamoDB store pages through its tenant
// partitions one after another). ComparePageOrder compares two ids, as
// strings.Compare does, in the order pages run; a page continues after
// ListOptions.After in that order, whether or not After names a tenant.
type PageOrderer interface {
	ComparePageOrder(a, b string) int
}

// ComparePageOrder compares ids a and b in s's page order: s's own if it
// is a PageOrderer, id order otherwise.
func ComparePageOrder(s any, a, b string) int {
	if o, ok := s.(PageOrderer); ok {
		return o.ComparePageOrder(a, b)
	}
	return strings.Compare(a, b)
}

// PageLimit clamps a requested page size to [1, MaxPageSize], with 0 meaning
// DefaultPageSize.
func PageLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return n
}

// MaxResyncTenants is the most tenants one Resync may name.
const MaxResyncTenants = 1000

// ResyncAllLimit clamps a ResyncAll page size to [1, MaxResyncTenants], with
// 0 meaning MaxResyncTenants.
func ResyncAllLimit(n int) int {
	if n <= 0 || n > MaxResyncTenants {
		return MaxResyncTenants
	}
	return n
}

// CheckResyncAll validates a ResyncAll request: after is "" or a valid id,
// and the region names are valid. Fields are named by their JSON path in the
// REST body ("page_token" for after, "regions[0]").
func CheckResyncAll(after string, regions []string) error {
	var fields []tenant.FieldError
	if after != "" {
		if err := tenant.ValidateID(after); err != nil {
			fields = append(fields, renamed(err, "page_token")...)
		}
	}
	for i, r := range regions {
		if err := tenant.ValidateRegion(r); err != nil {
			fields = append(fields, renamed(err, fmt.Sprintf("regions[%d]", i))...)
		}
	}
	return invalidResync(fields)
}

// ResyncRequest names a tenant to re-emit, and hostnames to settle with it.
//
// The event re-emitted carries Resync=true, the tenant's current document at
// its current version (its tombstone if deleted), a Claim for every hostname
// it holds at its current claim version and, for each of Hostnames that the
// tenant does not hold and that no tenant holds, a Released entry at the
// hostname's current claim version, so that a region holding an orphaned
// record of it (pointing at this tenant) drops it. A hostname the store never
// saw is ignored, and so is one another tenant holds (that tenant's resync
// settles it).
type ResyncRequest struct {
	ID string `json:"id"`
	// Hostnames are normalised hostnames to settle; optional.
	Hostnames []string `json:"hostnames,omitempty"`
}

// ResyncResult says what a Resync re-emitted.
type ResyncResult struct {
	// Resynced lists each tenant re-emitted, in request order, at the
	// version its event carries.
	Resynced []ResyncedTenant `json:"resynced"`
	// NotFound lists the requested ids the store never saw, in request
	// order.
	NotFound []string `json:"not_found"`
}

// ResyncedTenant is one tenant a Resync re-emitted.
type ResyncedTenant struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// CheckResync validates a Resync request: 1 to MaxResyncTenants tenants,
// each with a valid id and at most tenant.MaxHostnames normalised hostnames,
// and valid region names. Fields are named by their JSON path in the REST
// body ("tenants[2].id", "tenants[0].hostnames[1]", "regions[0]"). An id
// listed twice is allowed; stores merge the requests.
func CheckResync(reqs []ResyncRequest, regions []string) error {
	switch {
	case len(reqs) == 0:
		return invalidResync([]tenant.FieldError{{Field: "tenants", Reason: "at least one tenant is required"}})
	case len(reqs) > MaxResyncTenants:
		return invalidResync([]tenant.FieldError{{Field: "tenants", Reason: fmt.Sprintf("at most %d tenants per request; got %d", MaxResyncTenants, len(reqs))}})
	}
	var fields []tenant.FieldError
	for i, r := range reqs {
		if err := tenant.ValidateID(r.ID); err != nil {
			fields = append(fields, renamed(err, fmt.Sprintf("tenants[%d].id", i))...)
		}
		if n := len(r.Hostnames); n > tenant.MaxHostnames {
			fields = append(fields, tenant.FieldError{Field: fmt.Sprintf("tenants[%d].hostnames", i), Reason: fmt.Sprintf("at most %d hostnames per tenant; got %d", tenant.MaxHostnames, n)})
			continue
		}
		for j, h := range r.Hostnames {
			field := fmt.Sprintf("tenants[%d].hostnames[%d]", i, j)
			norm, err := tenant.NormalizeHostname(h)
			switch {
			case err != nil:
				fields = append(fields, renamed(err, field)...)
			case norm != h:
				fields = append(fields, tenant.FieldError{Field: field, Reason: fmt.Sprintf("must be normalised: %q", norm)})
			}
		}
	}
	for i, r := range regions {
		if err := tenant.ValidateRegion(r); err != nil {
			fields = append(fields, renamed(err, fmt.Sprintf("regions[%d]", i))...)
		}
	}
	return invalidResync(fields)
}

func invalidResync(fields []tenant.FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return &tenant.Error{Code: tenant.Invalid, Message: "invalid resync request", Fields: fields}
}

// renamed returns the field errors of err under the name field.
func renamed(err error, field string) []tenant.FieldError {
	fs := tenant.ErrorFields(err)
	if len(fs) == 0 {
		return []tenant.FieldError{{Field: field, Reason: tenant.ErrorMessage(err)}}
	}
	out := make([]tenant.FieldError, len(fs))
	for i, f := range fs {
		out[i] = tenant.FieldError{Field: field, Reason: f.Reason}
	}
	return out
}

// MergeResync merges requests that name the same tenant, keeping the order
// of first appearance; the hostnames of each are sorted and distinct.
func MergeResync(reqs []ResyncRequest) []ResyncRequest {
	index := make(map[string]int, len(reqs))
	var out []ResyncRequest
	for _, r := range reqs {
		i, ok := index[r.ID]
		if !ok {
			i = len(out)
			index[r.ID] = i
			out = append(out, ResyncRequest{ID: r.ID})
		}
		out[i].Hostnames = append(out[i].Hostnames, r.Hostnames...)
	}
	for i := range out {
		slices.Sort(out[i].Hostnames)
		out[i].Hostnames = slices.Compact(out[i].Hostnames)
	}
	return out
}

// Export page size bounds: pages are bigger than List's, for bulk reads.
const (
	DefaultExportPageSize = 100
	MaxExportPageSize     = 1000
)

// ExportLimit clamps a requested export page size to [1, MaxExportPageSize],
// with 0 meaning DefaultExportPageSize.
func ExportLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultExportPageSize
	case n > MaxExportPageSize:
		return MaxExportPageSize
	}
	return n
}

// ExportItem is one stored tenant with the claim versions of its hostnames
// (none for a tombstone), sorted by hostname.
type ExportItem struct {
	Tenant *tenant.Tenant `json:"tenant"`
	Claims []tenant.Claim `json:"claims"`
}

// ExportPage is one page of an export. Next is the id to pass as
// ListOptions.After for the next page, or "" on the last page.
type ExportPage struct {
	Items []ExportItem
	Next  string
}
