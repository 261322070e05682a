// Package tenant is the domain model shared by every part of TCS: the Tenant
// document, the change events carried on the stream, the rules that decide
// whether a tenant is valid, and the error codes every edge maps to its wire.
//
// It imports only the standard library (plus golang.org/x/net/idna for
// hostname normalisation) so that any package — including the client library
// compute nodes link — can depend on it cheaply.
package tenant

import (
	"maps"
	"slices"
	"time"
)

// Status is the lifecycle state of a tenant.
type Status string

// Tenant statuses. Deleted is only ever set by a delete: a tombstone kept so
// that replicas never resurrect the tenant from a stale event.
const (
	StatusActive    Status = "ACTIVE"
	StatusSuspended Status = "SUSPENDED"
	StatusDeleted   Status = "DELETED"
)

// ProductState says whether a tenant may use a product it has bought.
type ProductState string

// Product states.
const (
	ProductActive      ProductState = "ACTIVE"
	ProductDeactivated ProductState = "DEACTIVATED"
)

// Product is one product a tenant has bought.
type Product struct {
	State   ProductState `json:"state"`
	Users   int64        `json:"users"`
	Edition string       `json:"edition,omitempty"`
}

// Database says where a tenant's data lives. SecretRef is a reference to the
// credentials (an ARN or a vault path); TCS never stores or serves a secret.
type Database struct {
	Engine    string `json:"engine"`
	Host      string `json:"host"`
	Port      int    `json:"port"`
	Name      string `json:"name"`
	Region    string `json:"region,omitempty"`
	SecretRef string `json:"secret_ref,omitempty"`
}

// Tenant is the whole configuration of one tenant: the document the catalog
// stores, the stream carries and the lookup API serves.
type Tenant struct {
	ID        string             `json:"id"`
	Hostnames []string           `json:"hostnames"`
	Status    Status             `json:"status"`
	Products  map[string]Product `json:"products,omitempty"`
	Database  *Database          `json:"database,omitempty"`
	Region    string             `json:"region,omitempty"`
	Labels    map[string]string  `json:"labels,omitempty"`
	// Migration is the state of the tenant's last move to another
	// database (tcsctl move); nil if it never moved. See Moving and
	// ReadOnly.
	Migration *Migration `json:"migration,omitempty"`

	// Version is +1 on every committed change and is the HTTP ETag. Set by the
	// store, never by callers.
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// Deleted reports whether t is a tombstone.
func (t *Tenant) Deleted() bool { return t.Status == StatusDeleted }

// Clone returns a deep copy of t, so that callers may change it freely.
func (t *Tenant) Clone() *Tenant {
	if t == nil {
		return nil
	}
	c := *t
	c.Hostnames = append([]string(nil), t.Hostnames...)
	if t.Products != nil {
		c.Products = make(map[string]Product, len(t.Products))
		for k, v := range t.Products {
			c.Products[k] = v
		}
	}
	if t.Labels != nil {
		c.Labels = make(map[string]string, len(t.Labels))
		for k, v := range t.Labels {
			c.Labels[k] = v
		}
	}
	if t.Database != nil {
		d := *t.Database
		c.Database = &d
	}
	if t.Migration != nil {
		m := *t.Migration
		c.Migration = &m
	}
	return &c
}

// Equal reports whether a and b are the same document: every field equal,
// times by instant, and a nil slice or map equal to an empty one (JSON
// round trips do not keep the difference). Two nil documents are equal; a
// nil and a non-nil one are not.
func Equal(a, b *Tenant) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ID == b.ID && a.Status == b.Status && a.Region == b.Region &&
		a.Version == b.Version && a.UpdatedAt.Equal(b.UpdatedAt) && a.UpdatedBy == b.UpdatedBy &&
		slices.Equal(a.Hostnames, b.Hostnames) && maps.Equal(a.Products, b.Products) &&
		maps.Equal(a.Labels, b.Labels) &&
		(a.Database == b.Database || a.Database != nil && b.Database != nil && *a.Database == *b.Database) &&
		equalMigration(a.Migration, b.Migration)
}

func equalMigration(a, b *Migration) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Step == b.Step && a.ReadOnly == b.ReadOnly && a.From == b.From && a.To == b.To &&
		a.Started.Equal(b.Started) && a.By == b.By
}

// HasHostname reports whether t holds the (normalised) hostname h.
func (t *Tenant) HasHostname(h string) bool {
	for _, x := range t.Hostnames {
		if x == h {
			return true
		}
	}
	return false
}

// Claim is a hostname together with its claim version: a counter kept per
// hostname in the source of truth and incremented each time the hostname
// changes owner (claimed by a tenant, or released by one). Replicas decide
// which tenant owns a hostname by the highest claim version they have seen,
// whatever order events arrive in.
type Claim struct {
	Hostname string `json:"hostname"`
	Version  int64  `json:"version"`
}

// ChangeEvent is one committed change, as the stream carries it: the whole
// tenant at its version (state transfer, not a delta), or a tombstone.
type ChangeEvent struct {
	TenantID string `json:"tenant_id"`
	Version  int64  `json:"version"`
	// Tenant is the whole document at Version. For a delete it is the
	// tombstone (Status DELETED, no hostnames).
	Tenant *Tenant `json:"tenant"`
	// Claims holds, for each hostname the tenant holds at Version, that
	// hostname's claim version.
	Claims []Claim `json:"claims,omitempty"`
	// Released holds the hostnames this change gave up, each with the claim
	// version of the release.
	Released []Claim `json:"released,omitempty"`
	// CommittedAt is when the source of truth committed the change; replicas
	// measure replication lag from it.
	CommittedAt time.Time `json:"committed_at"`
	// Resync marks an event re-emitted by an operator (tcsctl resync) rather
	// than by a change: replicas apply it even at an equal version, to repair
	// content, but never roll a newer version back.
	Resync bool `json:"resync,omitempty"`
	// Regions names the regions whose appliers apply the event; empty means
	// every region. Only resync events target regions: an ordinary change
	// must reach them all.
	Regions []string `json:"regions,omitempty"`
	// Trace is the W3C trace context of the change: the catalog write's
	// span, stored with the outbox entry in the write's transaction, and
	// replaced on the way by the span of each stage (publish, apply) so
	// that the next stage's span is its child. Empty when the write was
	// not traced.
	Trace TraceContext `json:"trace,omitzero"`
}

// TraceContext is a W3C Trace Context (https://www.w3.org/TR/trace-context/)
// as its two headers carry it. It is kept as text here, so that this
// package needs no tracing library; internal/spanctx converts it to and
// from an OpenTelemetry span context.
type TraceContext struct {
	// Parent is the traceparent header: version, trace id, parent span id
	// and flags, e.g. "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".
	Parent string `json:"traceparent,omitempty"`
	// State is the tracestate header: vendor data, often empty.
	State string `json:"tracestate,omitempty"`
}

// IsZero reports whether tc carries no trace context.
func (tc TraceContext) IsZero() bool { return tc.Parent == "" && tc.State == "" }

// Tombstone reports whether the event deletes the tenant.
func (e *ChangeEvent) Tombstone() bool { return e.Tenant == nil || e.Tenant.Deleted() }

// ForRegion reports whether the applier of region must apply the event:
// Regions is empty (every region) or names it.
func (e *ChangeEvent) ForRegion(region string) bool {
	if len(e.Regions) == 0 {
		return true
	}
	for _, r := range e.Regions {
		if r == region {
			return true
		}
	}
	return false
}
