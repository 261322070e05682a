// Package catalog is the write side of TCS: the strongly consistent source of
// truth for tenant configuration. It defines the Store interface that every
// source-of-truth backend implements (bbolt in catalog/bolt, DynamoDB later),
// and the outbox through which committed changes reach the streamer.
//
// Tenant rules (validation, hostname normalisation) live in catalog/tenant;
// the admin REST API lives in catalog/httpapi.
package catalog

import (
	"context"
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
	// List returns live tenants in id order, starting after opts.After.
	List(ctx context.Context, opts ListOptions) (Page, error)
	// LookupHostname returns the live tenant holding the normalised hostname.
	LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error)
	// History returns the tenant's audit records, newest first, starting
	// below version opts.Before (0 = from the newest).
	History(ctx context.Context, id string, opts HistoryOptions) ([]AuditRecord, error)

	// ReadOutbox returns up to limit outbox entries with a sequence greater
	// than after, in sequence order.
	ReadOutbox(ctx context.Context, after uint64, limit int) ([]OutboxEntry, error)
	// AckOutbox marks every entry with a sequence ≤ upTo as published; they
	// are not returned again.
	AckOutbox(ctx context.Context, upTo uint64) error

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
type AuditRecord struct {
	TenantID string         `json:"tenant_id"`
	Version  int64          `json:"version"`
	Action   Action         `json:"action"`
	Actor    string         `json:"actor"`
	At       time.Time      `json:"at"`
	Before   *tenant.Tenant `json:"before,omitempty"`
	After    *tenant.Tenant `json:"after"`
}

// OutboxEntry is a committed change waiting to be published to the stream.
// Seq increases monotonically in commit order.
type OutboxEntry struct {
	Seq   uint64             `json:"seq"`
	Event tenant.ChangeEvent `json:"event"`
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
