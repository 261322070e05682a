package catalog

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// WriteRequest is one change to a tenant, as Store.Create, Update and Delete
// receive it.
type WriteRequest struct {
	// Action is ActionCreate, ActionUpdate or ActionDelete.
	Action Action
	// Tenant is the document to store (create and update); it has passed
	// tenant.Prepare. Delete ignores it.
	Tenant *tenant.Tenant
	// ID names the tenant to delete (delete only: create and update write
	// Tenant.ID).
	ID string
	// ExpectedVersion is the version the stored tenant must be at: required
	// by update; for delete, 0 deletes whatever version is stored. Create
	// ignores it.
	ExpectedVersion int64
	// Actor is who asks; At is when (PlanWrite stamps it in UTC, truncated
	// to microseconds, so that it survives the JSON round trip unchanged).
	Actor string
	At    time.Time
	// Trace is the trace context of the write's span (the store captures it
	// from the request's context); PlanWrite puts it on the outbox event,
	// so that it is committed with the change. Empty when not traced.
	Trace tenant.TraceContext
}

// TenantID is the id of the tenant the request writes.
func (r *WriteRequest) TenantID() string {
	if r.Action == ActionDelete || r.Tenant == nil {
		return r.ID
	}
	return r.Tenant.ID
}

// Check rejects what no store can write whatever tenant.Prepare let
// through: an unknown action, no tenant, no id, or a caller-made tombstone
// (only a delete makes those). It needs no stored state, so stores call it
// before reading anything; PlanWrite calls it again.
func (r *WriteRequest) Check() error {
	switch r.Action {
	case ActionCreate, ActionUpdate:
		return CheckWritable(r.Tenant)
	case ActionDelete:
		return nil
	}
	return tenant.Errorf(tenant.Invalid, "unknown write action %q", r.Action)
}

// CheckWritable rejects a document no store can write: nil, without an id,
// or a tombstone.
func CheckWritable(t *tenant.Tenant) error {
	switch {
	case t == nil:
		return tenant.Errorf(tenant.Invalid, "no tenant")
	case t.ID == "":
		return tenant.FieldErrors([]tenant.FieldError{{Field: "id", Reason: "required"}})
	case t.Deleted():
		return tenant.FieldErrors([]tenant.FieldError{{Field: "status", Reason: "DELETED is set only by a delete"}})
	}
	return nil
}

// Hostnames returns the hostnames the tenant holds after the write, sorted
// and distinct: those of Tenant, none for a delete.
func (r *WriteRequest) Hostnames() []string {
	if r.Action == ActionDelete || r.Tenant == nil {
		return nil
	}
	return SortedSet(r.Tenant.Hostnames)
}

// ClaimsNeeded returns the hostnames whose stored claims PlanWrite needs,
// given the stored document current (nil if none): those the write holds
// (Hostnames) and those the live current document holds, sorted and
// distinct.
func (r *WriteRequest) ClaimsNeeded(current *tenant.Tenant) []string {
	want := r.Hostnames()
	if current == nil || current.Deleted() {
		return want
	}
	return SortedSet(append(want, current.Hostnames...))
}

// HostnameClaim is the stored claim of a hostname: the tenant that holds it
// ("" when free) and its claim version, which counts every change of owner.
// A hostname never claimed is free at version 0 (the zero value); a released
// one keeps its version, so that it never goes back.
type HostnameClaim struct {
	Owner   string
	Version int64
}

// WriteState is what PlanWrite needs of the stored state, read by the store
// (inside its transaction, or with the conditions that make its commit fail
// if the state moved).
type WriteState struct {
	// Current is the stored document of the tenant, tombstone or not; nil if
	// the store never saw the id.
	Current *tenant.Tenant
	// AuditHead is the hash of the tenant's newest audit record; "" for a
	// new tenant or one written before audit records were chained.
	AuditHead string
	// Claims holds the stored claim of every hostname in
	// WriteRequest.ClaimsNeeded(Current); a hostname never claimed maps to
	// the zero HostnameClaim. Others are ignored.
	Claims map[string]HostnameClaim
}

// ClaimChange is one hostname claim the write moves: the claim as read and
// as it must be stored. To.Version is always From.Version + 1.
type ClaimChange struct {
	Hostname string
	From, To HostnameClaim
}

// WritePlan is everything one write stores, in one atomic transaction.
type WritePlan struct {
	// Doc is the document to store: the request's (or a tombstone) stamped
	// with its version, UpdatedAt and UpdatedBy. DocJSON is its encoding,
	// the bytes to store.
	Doc     *tenant.Tenant
	DocJSON []byte
	// Result is DocJSON decoded: what the write returns, exactly as a later
	// Get returns it (nil vs empty maps included).
	Result *tenant.Tenant
	// Changes are the claims to store, each conditioned on its From: the
	// hostnames claimed, then those released, each group in hostname order.
	// Hostnames the tenant keeps are not among them.
	Changes []ClaimChange
	// Audit is the sealed audit record (chained after WriteState.AuditHead;
	// Audit.Hash is the new head) and AuditJSON the bytes to store, under a
	// key that must not exist yet.
	Audit     AuditRecord
	AuditJSON []byte
	// Event is the change to append to the outbox; the store assigns the
	// entry's sequence.
	Event tenant.ChangeEvent
}

// PlanWrite decides one write from the stored state, as every store must:
// it is pure (no I/O, no clock), so both stores run the same rules, and the
// claim versions that replicas converge on (tcs.ApplyEvent) are decided in
// one place.
//
//  1. Create: a live tenant with the id is AlreadyExists. A new id starts
//     at version 1; an id that names a tombstone continues its versions
//     (tombstone + 1), so replicas order the create after the delete.
//  2. Update: the tenant must be live (else NotFound) and at
//     ExpectedVersion (else VersionMismatch). Delete: live, and at
//     ExpectedVersion unless it is 0. Both store the previous version + 1;
//     a delete stores a tombstone (no hostnames).
//  3. Every hostname the new document holds is claimed: one held by another
//     tenant is HostnameTaken, naming the owner; a free one moves to this
//     tenant at its claim version + 1; one this tenant holds already keeps
//     its version.
//  4. Every hostname the live previous document held and the new one does
//     not is released (owner "", claim version + 1) if this tenant still
//     holds it, and left alone otherwise.
//  5. The audit record (Before: the previous document, except for a
//     create; After: the new one) is chained after WriteState.AuditHead.
//  6. The write must keep the rules of tenant moves (CheckMove); the
//     write that starts a move stamps its Started and By.
//  7. The outbox event carries the new document at its version, a claim for
//     every hostname it holds at the claim version after the write, and the
//     releases at their new claim versions, all sorted by hostname, and the
//     request's trace context.
//
// A rejected write returns a *tenant.Error (Invalid, NotFound,
// AlreadyExists, VersionMismatch, HostnameTaken, MoveConflict) and no plan. A state that
// lacks a claim the plan needs is a store bug: an error that is not a
// *tenant.Error.
func PlanWrite(st WriteState, req WriteRequest) (*WritePlan, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	id := req.TenantID()
	cur := st.Current
	if cur != nil && cur.ID != id {
		return nil, fmt.Errorf("internal: plan of tenant %q given the stored document of %q", id, cur.ID)
	}
	live := cur != nil && !cur.Deleted()

	var prev, next *tenant.Tenant // prev: the live document replaced (nil for a create)
	version := int64(1)
	switch req.Action {
	case ActionCreate:
		if live {
			return nil, tenant.Errorf(tenant.AlreadyExists, "tenant %q already exists", id)
		}
		if cur != nil {
			version = cur.Version + 1
		}
		next = req.Tenant
	case ActionUpdate, ActionDelete:
		if !live {
			return nil, tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
		}
		if (req.Action == ActionUpdate || req.ExpectedVersion != 0) && cur.Version != req.ExpectedVersion {
			return nil, tenant.Errorf(tenant.VersionMismatch, "tenant %q is at version %d, not %d", id, cur.Version, req.ExpectedVersion)
		}
		prev, version = cur, cur.Version+1
		next = req.Tenant
		if req.Action == ActionDelete {
			next = &tenant.Tenant{ID: id, Status: tenant.StatusDeleted}
		}
	}

	moveNext := next
	if req.Action == ActionDelete {
		moveNext = nil
	}
	if err := CheckMove(prev, moveNext); err != nil {
		return nil, err
	}

	at := req.At.UTC().Truncate(time.Microsecond)
	doc := next.Clone()
	doc.Version = version
	doc.UpdatedAt = at
	doc.UpdatedBy = req.Actor
	if req.Action == ActionUpdate {
		stampMove(prev, doc, req.Actor, at)
	}

	claimOf := func(h string) (HostnameClaim, error) {
		c, ok := st.Claims[h]
		if !ok {
			return c, fmt.Errorf("internal: plan of tenant %q needs the stored claim of hostname %q, which was not read", id, h)
		}
		return c, nil
	}
	p := &WritePlan{Doc: doc}
	want := req.Hostnames()
	var held, released []tenant.Claim
	for _, h := range want {
		c, err := claimOf(h)
		if err != nil {
			return nil, err
		}
		if c.Owner != id {
			if c.Owner != "" {
				return nil, tenant.Errorf(tenant.HostnameTaken, "hostname %q is owned by tenant %q", h, c.Owner)
			}
			to := HostnameClaim{Owner: id, Version: c.Version + 1}
			p.Changes = append(p.Changes, ClaimChange{Hostname: h, From: c, To: to})
			c = to
		}
		held = append(held, tenant.Claim{Hostname: h, Version: c.Version})
	}
	if prev != nil {
		for _, h := range SortedSet(prev.Hostnames) {
			if _, kept := slices.BinarySearch(want, h); kept {
				continue
			}
			c, err := claimOf(h)
			if err != nil {
				return nil, err
			}
			if c.Owner != id {
				continue // not ours to release
			}
			to := HostnameClaim{Version: c.Version + 1}
			p.Changes = append(p.Changes, ClaimChange{Hostname: h, From: c, To: to})
			released = append(released, tenant.Claim{Hostname: h, Version: to.Version})
		}
	}

	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode tenant %s: %w", id, err)
	}
	p.DocJSON = raw
	p.Result = new(tenant.Tenant)
	if err := DecodeStored(raw, p.Result, "tenant", id); err != nil {
		return nil, err
	}

	p.Audit = AuditRecord{TenantID: id, Version: version, Action: req.Action, Actor: req.Actor, At: at, Before: prev, After: doc}
	if p.AuditJSON, err = SealAudit(&p.Audit, st.AuditHead); err != nil {
		return nil, err
	}
	p.Event = tenant.ChangeEvent{
		TenantID:    id,
		Version:     version,
		Tenant:      doc,
		Claims:      held,
		Released:    released,
		CommittedAt: at,
		Trace:       req.Trace,
	}
	return p, nil
}

// ResyncEvent returns the event that re-emits doc (its current state,
// tombstone or not) without changing it, settling the hostnames settle: see
// ResyncRequest. claims holds the stored claims of doc's hostnames and of
// settle (a hostname missing from it is taken as never claimed). The event
// claims each hostname doc holds at its claim version, leaving out one whose
// claim names another owner (which a commit never leaves behind), and
// releases each of settle that doc does not hold and that is free after
// having been claimed, at its current claim version. trace is the trace
// context of the resync's span (the store captures it from the request's
// context, as for a write); zero when not traced.
func ResyncEvent(doc *tenant.Tenant, claims map[string]HostnameClaim, settle, regions []string, at time.Time, trace tenant.TraceContext) tenant.ChangeEvent {
	ev := tenant.ChangeEvent{
		TenantID:    doc.ID,
		Version:     doc.Version,
		Tenant:      doc,
		Claims:      HeldClaims(doc, claims),
		CommittedAt: at,
		Resync:      true,
		Regions:     regions,
		Trace:       trace,
	}
	for _, h := range settle {
		if c := claims[h]; !doc.HasHostname(h) && c.Owner == "" && c.Version > 0 {
			ev.Released = append(ev.Released, tenant.Claim{Hostname: h, Version: c.Version})
		}
	}
	return ev
}

// HeldClaims returns the claims of the hostnames doc holds, sorted by
// hostname, at their versions in claims. A hostname whose claim names
// another owner (which a commit never leaves behind) is left out rather than
// claimed for doc.
func HeldClaims(doc *tenant.Tenant, claims map[string]HostnameClaim) []tenant.Claim {
	var out []tenant.Claim
	for _, h := range SortedSet(doc.Hostnames) {
		if c := claims[h]; c.Owner == doc.ID {
			out = append(out, tenant.Claim{Hostname: h, Version: c.Version})
		}
	}
	return out
}

// SortedSet returns the distinct values of s in order, in a new slice.
func SortedSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// DecodeStored unmarshals a stored value (what names it in errors, key is
// its key). Its errors never keep a *tenant.Error (which a strict
// UnmarshalJSON in package tenant may return): a stored document that fails
// to decode is corruption or skew between versions, an internal error, not
// the caller's invalid input.
func DecodeStored(raw []byte, into any, what, key string) error {
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("decode stored %s %s: %s", what, key, err)
	}
	return nil
}
