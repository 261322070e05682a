// Package storetest is the conformance suite for catalog.Store: every
// source-of-truth backend (bbolt, DynamoDB) runs Run against a fresh store and
// must pass it unchanged. The suite tests the contract only — what a caller
// and the streamer can observe through the interface — never a backend's
// internals.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// NewTenant returns a valid tenant, already in the form tenant.Prepare
// produces: status ACTIVE, two products, a database and a home region. With
// no hostnames it gets "<id>.example.com". The hostnames must be normalised.
func NewTenant(id string, hostnames ...string) *tenant.Tenant {
	if len(hostnames) == 0 {
		hostnames = []string{id + ".example.com"}
	}
	return &tenant.Tenant{
		ID:        id,
		Hostnames: slices.Clone(hostnames),
		Status:    tenant.StatusActive,
		Products: map[string]tenant.Product{
			"jira":       {State: tenant.ProductActive, Users: 25, Edition: "premium"},
			"confluence": {State: tenant.ProductActive, Users: 10, Edition: "standard"},
		},
		Database: &tenant.Database{
			Engine:    "postgres",
			Host:      "db-1.us-east-1.internal",
			Port:      5432,
			Name:      "tenant_" + strings.ReplaceAll(id, "-", "_"),
			Region:    "us-east-1",
			SecretRef: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tcs/" + id,
		},
		Region: "us-east-1",
	}
}

// Run runs the conformance suite. newStore must return a new, empty store
// each time it is called and close it when t ends (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) catalog.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s catalog.Store)
	}{
		{"CreateGetRoundTrip", testCreateGet},
		{"CreateDuplicateID", testCreateDuplicate},
		{"HostnameTaken", testHostnameTaken},
		{"Update", testUpdate},
		{"UpdateWrongVersion", testUpdateWrongVersion},
		{"UpdateNotFound", testUpdateNotFound},
		{"HostnameMoves", testHostnameMoves},
		{"HostnameKeptKeepsClaimVersion", testHostnameKept},
		{"Delete", testDelete},
		{"DeleteWrongVersion", testDeleteWrongVersion},
		{"RecreateAfterDelete", testRecreate},
		{"ListPagination", testListPagination},
		{"ListSegments", testListSegments},
		{"LookupHostname", testLookupHostname},
		{"History", testHistory},
		{"Outbox", testOutbox},
		{"OutboxTraceContext", testOutboxTraceContext},
		{"ResyncTraceContext", testResyncTraceContext},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentHostnameClaims", testConcurrentClaims},
		{"ReturnsCopies", testReturnsCopies},
		{"CanceledContext", testCanceledContext},
		{"Ping", testPing},
	}
	for _, tt := range slices.Concat(tests, adminTests, auditTests, moveTests) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newStore(t))
		})
	}
	t.Run("Property", func(t *testing.T) {
		t.Parallel()
		testProperty(t, newStore)
	})
}

const actor = "storetest"

// equateEmpty lets a backend return nil or empty slices and maps alike;
// time.Time compares with Equal (instants, not locations).
var equateEmpty = cmpopts.EquateEmpty()

// ignoreStamp ignores what the store sets on a write.
var ignoreStamp = cmpopts.IgnoreFields(tenant.Tenant{}, "Version", "UpdatedAt", "UpdatedBy")

// tb is what the helpers need from *testing.T and *rapid.T alike.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

func mustCreate(t tb, s catalog.Store, in *tenant.Tenant) *tenant.Tenant {
	t.Helper()
	out, err := s.Create(context.Background(), in.Clone(), actor)
	if err != nil {
		t.Fatalf("Create(%s): %v", in.ID, err)
	}
	return out
}

func mustUpdate(t tb, s catalog.Store, in *tenant.Tenant, expected int64) *tenant.Tenant {
	t.Helper()
	out, err := s.Update(context.Background(), in.Clone(), expected, actor)
	if err != nil {
		t.Fatalf("Update(%s, %d): %v", in.ID, expected, err)
	}
	return out
}

func mustGet(t tb, s catalog.Store, id string) *tenant.Tenant {
	t.Helper()
	out, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return out
}

func wantCode(t tb, err error, code tenant.Code) {
	t.Helper()
	if got := tenant.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func wantSame(t tb, what string, want, got any) {
	t.Helper()
	if cmp.Equal(want, got, equateEmpty) {
		return
	}
	t.Fatalf("%s differs (-want +got):\n%s", what, cmp.Diff(want, got, equateEmpty))
}

// readOutbox returns every unacknowledged outbox entry, paging through
// every shard, in commit order (see readOutboxAfter).
func readOutbox(t tb, s catalog.Store) []catalog.OutboxEntry {
	t.Helper()
	return readOutboxAfter(t, s, make([]uint64, s.OutboxShards()))
}

// readOutboxAfter returns the outbox entries of each shard after its
// position in after (which it moves to the last entry read), merged in
// commit order: by commit time, and in shard order between entries of one
// time. A write is stamped after its reads, so a write that depends on
// another (it saw the other's claims or document) is stamped after the
// other committed: sorting by time keeps every such pair in order, across
// shards as within one.
func readOutboxAfter(t tb, s catalog.Store, after []uint64) []catalog.OutboxEntry {
	t.Helper()
	if n := s.OutboxShards(); len(after) != n || n < 1 {
		t.Fatalf("OutboxShards() = %d, positions for %d", n, len(after))
	}
	heads, err := s.OutboxHeads(context.Background())
	if err != nil || len(heads) != len(after) {
		t.Fatalf("OutboxHeads() = %v, %v; want %d heads", heads, err, len(after))
	}
	var all []catalog.OutboxEntry
	for shard := range after {
		if heads[shard] < after[shard] {
			t.Fatalf("head of shard %d is %d, below an entry read, %d", shard, heads[shard], after[shard])
		}
		if heads[shard] == after[shard] {
			continue // nothing new: the head says so
		}
		for {
			page, err := s.ReadOutbox(context.Background(), shard, after[shard], 100)
			if err != nil {
				t.Fatalf("ReadOutbox(%d, %d): %v", shard, after[shard], err)
			}
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				if e.Shard != shard || e.Seq <= after[shard] {
					t.Fatalf("ReadOutbox(%d, %d) returned shard %d seq %d", shard, after[shard], e.Shard, e.Seq)
				}
				if want := catalog.OutboxShard(e.Event.TenantID, len(after)); e.Shard != want {
					t.Fatalf("entry of tenant %s is in shard %d, want %d", e.Event.TenantID, e.Shard, want)
				}
				after[shard] = e.Seq
			}
			all = append(all, page...)
		}
		if after[shard] > heads[shard] {
			t.Fatalf("shard %d read up to %d, above its head, %d", shard, after[shard], heads[shard])
		}
	}
	slices.SortStableFunc(all, func(a, b catalog.OutboxEntry) int {
		return a.Event.CommittedAt.Compare(b.Event.CommittedAt)
	})
	return all
}

// pageOrder sorts ids in s's List and Export page order, in place, and
// returns them.
func pageOrder(s catalog.Store, ids []string) []string {
	slices.SortFunc(ids, func(a, b string) int { return catalog.ComparePageOrder(s, a, b) })
	return ids
}

// following returns the ids of sorted (in s's page order) that follow
// after in that order.
func following(s catalog.Store, sorted []string, after string) []string {
	i, _ := slices.BinarySearchFunc(sorted, after, func(a, b string) int { return catalog.ComparePageOrder(s, a, b) })
	for i < len(sorted) && sorted[i] == after {
		i++
	}
	return sorted[i:]
}

// sameShard returns n ids with prefix that share an outbox shard of s.
func sameShard(s catalog.Store, prefix string, n int) []string {
	shards := s.OutboxShards()
	byShard := map[int][]string{}
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		sh := catalog.OutboxShard(id, shards)
		byShard[sh] = append(byShard[sh], id)
		if len(byShard[sh]) == n {
			return byShard[sh]
		}
	}
}

// lastEvent returns the newest outbox entry's event.
func lastEvent(t tb, s catalog.Store) tenant.ChangeEvent {
	t.Helper()
	all := readOutbox(t, s)
	if len(all) == 0 {
		t.Fatalf("outbox is empty")
	}
	return all[len(all)-1].Event
}

func history(t tb, s catalog.Store, id string) []catalog.AuditRecord {
	t.Helper()
	recs, err := s.History(context.Background(), id, catalog.HistoryOptions{Limit: catalog.MaxPageSize})
	if err != nil {
		t.Fatalf("History(%s): %v", id, err)
	}
	return recs
}

// claimMap turns claims into hostname → claim version, failing on a
// hostname listed twice or a list out of hostname order.
func claimMap(t tb, what string, claims []tenant.Claim) map[string]int64 {
	t.Helper()
	m := make(map[string]int64, len(claims))
	for i, c := range claims {
		if i > 0 && claims[i-1].Hostname >= c.Hostname {
			t.Fatalf("%s not sorted by hostname or repeated: %v", what, claims)
		}
		if c.Version <= 0 {
			t.Fatalf("%s: claim version %d of %s is not positive", what, c.Version, c.Hostname)
		}
		m[c.Hostname] = c.Version
	}
	return m
}

// checkEvent checks that ev carries doc whole and claims exactly doc's
// hostnames; it returns the claim versions by hostname.
func checkEvent(t tb, ev tenant.ChangeEvent, doc *tenant.Tenant) map[string]int64 {
	t.Helper()
	if ev.TenantID != doc.ID || ev.Version != doc.Version {
		t.Fatalf("event is %s@%d, want %s@%d", ev.TenantID, ev.Version, doc.ID, doc.Version)
	}
	wantSame(t, "event tenant", doc, ev.Tenant)
	return eventClaims(t, ev)
}

// eventClaims checks that ev claims exactly the hostnames of the document it
// carries and returns the claim versions by hostname.
func eventClaims(t tb, ev tenant.ChangeEvent) map[string]int64 {
	t.Helper()
	if ev.Tenant == nil {
		t.Fatalf("event %s@%d carries no document", ev.TenantID, ev.Version)
	}
	if ev.CommittedAt.IsZero() {
		t.Fatalf("event %s@%d has no CommittedAt", ev.TenantID, ev.Version)
	}
	claims := claimMap(t, "event claims", ev.Claims)
	held := slices.Sorted(func(yield func(string) bool) {
		for h := range claims {
			if !yield(h) {
				return
			}
		}
	})
	want := slices.Compact(slices.Sorted(slices.Values(ev.Tenant.Hostnames)))
	wantSame(t, "hostnames claimed by the event", want, held)
	return claims
}

func testCreateGet(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	in := NewTenant("acme", "acme.example.com", "www.acme.example.com")
	in.Labels = map[string]string{"tier": "gold"}
	sent := in.Clone()

	got, err := s.Create(ctx, in, "alice")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	wantSame(t, "Create's argument after the call", sent, in)
	if got.Version != 1 || got.UpdatedBy != "alice" || got.UpdatedAt.IsZero() {
		t.Fatalf("Create stamped version %d by %q at %v, want 1 by alice at a time", got.Version, got.UpdatedBy, got.UpdatedAt)
	}
	if diff := cmp.Diff(in, got, equateEmpty, ignoreStamp); diff != "" {
		t.Fatalf("Create returned another document (-sent +got):\n%s", diff)
	}
	wantSame(t, "Get after Create", got, mustGet(t, s, "acme"))

	ev := lastEvent(t, s)
	checkEvent(t, ev, got)
	if len(ev.Released) != 0 {
		t.Fatalf("create released %v", ev.Released)
	}
}

func testCreateDuplicate(t *testing.T, s catalog.Store) {
	first := mustCreate(t, s, NewTenant("acme", "acme.example.com"))
	_, err := s.Create(t.Context(), NewTenant("acme", "other.example.com"), actor)
	wantCode(t, err, tenant.AlreadyExists)

	wantSame(t, "tenant after a duplicate create", first, mustGet(t, s, "acme"))
	_, err = s.LookupHostname(t.Context(), "other.example.com")
	wantCode(t, err, tenant.NotFound)
	if n := len(readOutbox(t, s)); n != 1 {
		t.Fatalf("outbox has %d entries, want 1", n)
	}
	if n := len(history(t, s, "acme")); n != 1 {
		t.Fatalf("history has %d records, want 1", n)
	}
}

func testHostnameTaken(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	acme := mustCreate(t, s, NewTenant("acme", "shared.example.com"))

	// A create that claims a taken hostname (after a free one) writes nothing.
	_, err := s.Create(ctx, NewTenant("beta", "beta.example.com", "shared.example.com"), actor)
	wantCode(t, err, tenant.HostnameTaken)
	if msg := tenant.ErrorMessage(err); !strings.Contains(msg, "shared.example.com") || !strings.Contains(msg, "acme") {
		t.Fatalf("message %q names neither the hostname nor its owner", msg)
	}
	_, err = s.Get(ctx, "beta")
	wantCode(t, err, tenant.NotFound)
	_, err = s.LookupHostname(ctx, "beta.example.com")
	wantCode(t, err, tenant.NotFound)
	_, err = s.History(ctx, "beta", catalog.HistoryOptions{})
	wantCode(t, err, tenant.NotFound)

	// An update that claims it writes nothing either.
	beta := mustCreate(t, s, NewTenant("beta", "beta.example.com"))
	next := beta.Clone()
	next.Hostnames = append(next.Hostnames, "shared.example.com")
	next.Labels = map[string]string{"changed": "yes"}
	_, err = s.Update(ctx, next, beta.Version, actor)
	wantCode(t, err, tenant.HostnameTaken)
	if msg := tenant.ErrorMessage(err); !strings.Contains(msg, "shared.example.com") || !strings.Contains(msg, "acme") {
		t.Fatalf("message %q names neither the hostname nor its owner", msg)
	}
	wantSame(t, "beta after the rejected update", beta, mustGet(t, s, "beta"))
	if n := len(history(t, s, "beta")); n != 1 {
		t.Fatalf("beta has %d audit records, want 1", n)
	}

	wantSame(t, "acme", acme, mustGet(t, s, "acme"))
	owner, err := s.LookupHostname(ctx, "shared.example.com")
	if err != nil || owner.ID != "acme" {
		t.Fatalf("LookupHostname(shared.example.com) = %v, %v; want acme", owner, err)
	}
	if n := len(history(t, s, "acme")); n != 1 {
		t.Fatalf("acme has %d audit records, want 1", n)
	}
	entries := readOutbox(t, s)
	if len(entries) != 2 {
		t.Fatalf("outbox has %d entries, want 2 (the two creates)", len(entries))
	}
}

func testUpdate(t *testing.T, s catalog.Store) {
	created := mustCreate(t, s, NewTenant("acme", "acme.example.com"))
	next := created.Clone()
	next.Hostnames = append(next.Hostnames, "www.acme.example.com")
	next.Labels = map[string]string{"tier": "gold"}
	next.Products["bitbucket"] = tenant.Product{State: tenant.ProductActive, Users: 3}
	sent := next.Clone()

	got, err := s.Update(t.Context(), next, 1, "bob")
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantSame(t, "Update's argument after the call", sent, next)
	if got.Version != 2 || got.UpdatedBy != "bob" {
		t.Fatalf("Update stamped version %d by %q, want 2 by bob", got.Version, got.UpdatedBy)
	}
	if got.UpdatedAt.Before(created.UpdatedAt) {
		t.Fatalf("UpdatedAt went back: %v after %v", got.UpdatedAt, created.UpdatedAt)
	}
	if diff := cmp.Diff(next, got, equateEmpty, ignoreStamp); diff != "" {
		t.Fatalf("Update returned another document (-sent +got):\n%s", diff)
	}
	wantSame(t, "Get after Update", got, mustGet(t, s, "acme"))

	entries := readOutbox(t, s)
	if len(entries) != 2 {
		t.Fatalf("outbox has %d entries, want 2", len(entries))
	}
	before := checkEvent(t, entries[0].Event, created)
	after := checkEvent(t, entries[1].Event, got)
	if after["acme.example.com"] != before["acme.example.com"] {
		t.Fatalf("kept hostname's claim version changed: %d → %d", before["acme.example.com"], after["acme.example.com"])
	}
}

func testUpdateWrongVersion(t *testing.T, s catalog.Store) {
	created := mustCreate(t, s, NewTenant("acme", "acme.example.com"))
	current := mustUpdate(t, s, created, 1) // version 2
	next := current.Clone()
	next.Labels = map[string]string{"lost": "update"}
	for _, expected := range []int64{1, 3, 9, 0, -1} {
		_, err := s.Update(t.Context(), next, expected, actor)
		wantCode(t, err, tenant.VersionMismatch)
		if expected == 9 {
			if msg := tenant.ErrorMessage(err); !strings.Contains(msg, "2") || !strings.Contains(msg, "9") {
				t.Fatalf("message %q does not give both versions (2 stored, 9 expected)", msg)
			}
		}
	}
	wantSame(t, "tenant after rejected updates", current, mustGet(t, s, "acme"))
	if n := len(readOutbox(t, s)); n != 2 {
		t.Fatalf("outbox has %d entries, want 2", n)
	}
}

func testUpdateNotFound(t *testing.T, s catalog.Store) {
	_, err := s.Update(t.Context(), NewTenant("ghost"), 1, actor)
	wantCode(t, err, tenant.NotFound)

	created := mustCreate(t, s, NewTenant("acme"))
	if _, err := s.Delete(t.Context(), "acme", created.Version, actor); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = s.Update(t.Context(), NewTenant("acme"), 2, actor)
	wantCode(t, err, tenant.NotFound)
	if n := len(readOutbox(t, s)); n != 2 {
		t.Fatalf("outbox has %d entries, want 2", n)
	}
	_, err = s.LookupHostname(t.Context(), "ghost.example.com")
	wantCode(t, err, tenant.NotFound)
}

func testHostnameMoves(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	const moving = "moving.example.com"
	a := mustCreate(t, s, NewTenant("tenant-a", "a.example.com", moving))
	b := mustCreate(t, s, NewTenant("tenant-b", "b.example.com"))
	claimed := checkEvent(t, lastEvent(t, s), b)
	if _, ok := claimed[moving]; ok {
		t.Fatalf("b claims %s before taking it", moving)
	}
	entries := readOutbox(t, s)
	v1 := checkEvent(t, entries[0].Event, a)[moving]

	// B cannot take it while A holds it.
	bNext := b.Clone()
	bNext.Hostnames = append(bNext.Hostnames, moving)
	_, err := s.Update(ctx, bNext, b.Version, actor)
	wantCode(t, err, tenant.HostnameTaken)

	aNext := a.Clone()
	aNext.Hostnames = []string{"a.example.com"}
	a = mustUpdate(t, s, aNext, a.Version)
	ev := lastEvent(t, s)
	checkEvent(t, ev, a)
	released := claimMap(t, "released", ev.Released)
	wantSame(t, "hostnames released by A", []tenant.Claim{{Hostname: moving, Version: released[moving]}}, ev.Released)
	v2 := released[moving]
	if v2 <= v1 {
		t.Fatalf("release claim version %d is not above the claim's %d", v2, v1)
	}
	_, err = s.LookupHostname(ctx, moving)
	wantCode(t, err, tenant.NotFound)

	b = mustUpdate(t, s, bNext, b.Version)
	ev = lastEvent(t, s)
	v3 := checkEvent(t, ev, b)[moving]
	if len(ev.Released) != 0 {
		t.Fatalf("B released %v", ev.Released)
	}
	if v3 <= v2 {
		t.Fatalf("B's claim version %d is not above the release's %d", v3, v2)
	}
	owner, err := s.LookupHostname(ctx, moving)
	if err != nil || owner.ID != "tenant-b" {
		t.Fatalf("LookupHostname(%s) = %v, %v; want tenant-b", moving, owner, err)
	}

	// And back again: still increasing.
	bNext = b.Clone()
	bNext.Hostnames = []string{"b.example.com"}
	mustUpdate(t, s, bNext, b.Version)
	v4 := claimMap(t, "released", lastEvent(t, s).Released)[moving]
	aNext = a.Clone()
	aNext.Hostnames = []string{moving, "a.example.com"}
	a = mustUpdate(t, s, aNext, a.Version)
	v5 := checkEvent(t, lastEvent(t, s), a)[moving]
	if !(v3 < v4 && v4 < v5) {
		t.Fatalf("claim versions %d, %d, %d, %d, %d do not strictly increase", v1, v2, v3, v4, v5)
	}
}

func testHostnameKept(t *testing.T, s catalog.Store) {
	a := mustCreate(t, s, NewTenant("acme", "keep.example.com", "drop.example.com"))
	first := checkEvent(t, lastEvent(t, s), a)

	next := a.Clone()
	next.Hostnames = []string{"new.example.com", "keep.example.com"}
	next.Labels = map[string]string{"x": "y"}
	a = mustUpdate(t, s, next, a.Version)
	ev := lastEvent(t, s)
	second := checkEvent(t, ev, a)
	if first["keep.example.com"] != second["keep.example.com"] {
		t.Fatalf("kept hostname's claim version changed: %d → %d", first["keep.example.com"], second["keep.example.com"])
	}
	released := claimMap(t, "released", ev.Released)
	if len(released) != 1 || released["drop.example.com"] <= first["drop.example.com"] {
		t.Fatalf("released %v, want drop.example.com above claim version %d", ev.Released, first["drop.example.com"])
	}

	// An update that changes no hostname keeps every claim version.
	next = a.Clone()
	next.Labels = map[string]string{"x": "z"}
	a = mustUpdate(t, s, next, a.Version)
	ev = lastEvent(t, s)
	wantSame(t, "claims after an update that kept every hostname", second, checkEvent(t, ev, a))
	if len(ev.Released) != 0 {
		t.Fatalf("released %v", ev.Released)
	}
}

func testDelete(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, NewTenant("acme", "acme.example.com", "www.acme.example.com"))
	claims := checkEvent(t, lastEvent(t, s), a)

	tomb, err := s.Delete(ctx, "acme", 0, "carol")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if !tomb.Deleted() || tomb.ID != "acme" || tomb.Version != 2 || tomb.UpdatedBy != "carol" || len(tomb.Hostnames) != 0 {
		t.Fatalf("Delete returned %+v, want a tombstone of acme at version 2 by carol without hostnames", tomb)
	}
	ev := lastEvent(t, s)
	if !ev.Tombstone() {
		t.Fatalf("delete event is not a tombstone: %+v", ev.Tenant)
	}
	checkEvent(t, ev, tomb)
	released := claimMap(t, "released", ev.Released)
	if len(released) != len(claims) {
		t.Fatalf("delete released %v, want every one of %v", ev.Released, claims)
	}
	for h, v := range claims {
		if released[h] <= v {
			t.Fatalf("release of %s at claim version %d, not above %d", h, released[h], v)
		}
	}

	_, err = s.Get(ctx, "acme")
	wantCode(t, err, tenant.NotFound)
	_, err = s.LookupHostname(ctx, "acme.example.com")
	wantCode(t, err, tenant.NotFound)
	_, err = s.Delete(ctx, "acme", 0, actor)
	wantCode(t, err, tenant.NotFound)
	_, err = s.Delete(ctx, "ghost", 0, actor)
	wantCode(t, err, tenant.NotFound)

	// The hostnames are free for another tenant, at higher claim versions.
	b := mustCreate(t, s, NewTenant("beta", "www.acme.example.com"))
	if v := checkEvent(t, lastEvent(t, s), b)["www.acme.example.com"]; v <= released["www.acme.example.com"] {
		t.Fatalf("new claim version %d is not above the release's %d", v, released["www.acme.example.com"])
	}
	owner, err := s.LookupHostname(ctx, "www.acme.example.com")
	if err != nil || owner.ID != "beta" {
		t.Fatalf("LookupHostname = %v, %v; want beta", owner, err)
	}

	recs := history(t, s, "acme")
	if len(recs) != 2 || recs[0].Action != catalog.ActionDelete || recs[0].Actor != "carol" {
		t.Fatalf("history = %+v, want the delete by carol first", recs)
	}
	wantSame(t, "audit of the delete, before", a, recs[0].Before)
	wantSame(t, "audit of the delete, after", tomb, recs[0].After)
}

func testDeleteWrongVersion(t *testing.T, s catalog.Store) {
	a := mustCreate(t, s, NewTenant("acme"))
	a = mustUpdate(t, s, a, a.Version) // version 2
	for _, expected := range []int64{1, 3, -1} {
		_, err := s.Delete(t.Context(), "acme", expected, actor)
		wantCode(t, err, tenant.VersionMismatch)
	}
	wantSame(t, "tenant after rejected deletes", a, mustGet(t, s, "acme"))
	if n := len(readOutbox(t, s)); n != 2 {
		t.Fatalf("outbox has %d entries, want 2", n)
	}
	tomb, err := s.Delete(t.Context(), "acme", 2, actor)
	if err != nil || tomb.Version != 3 {
		t.Fatalf("Delete at the right version = %+v, %v; want version 3", tomb, err)
	}
}

func testRecreate(t *testing.T, s catalog.Store) {
	a := mustCreate(t, s, NewTenant("acme", "acme.example.com"))
	a = mustUpdate(t, s, a, a.Version)
	if _, err := s.Delete(t.Context(), "acme", a.Version, actor); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Create(t.Context(), NewTenant("acme", "acme.example.com"), actor)
	if err != nil {
		t.Fatalf("re-Create: %v", err)
	}
	again := mustGet(t, s, "acme")
	if again.Version != 4 {
		t.Fatalf("re-created at version %d, want 4 (after the tombstone's 3)", again.Version)
	}
	checkEvent(t, lastEvent(t, s), again)

	var got []string
	for _, r := range history(t, s, "acme") {
		got = append(got, fmt.Sprintf("%d:%s", r.Version, r.Action))
	}
	wantSame(t, "history", []string{"4:create", "3:delete", "2:update", "1:create"}, got)
}

func testListPagination(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	page, err := s.List(ctx, catalog.ListOptions{})
	if err != nil || len(page.Tenants) != 0 || page.Next != "" {
		t.Fatalf("List of an empty store = %+v, %v", page, err)
	}

	const n = 120
	var live []string
	for _, i := range rand.Perm(n) {
		mustCreate(t, s, NewTenant(fmt.Sprintf("t-%03d", i)))
	}
	for i := range n {
		id := fmt.Sprintf("t-%03d", i)
		if i%5 == 4 { // t-004, t-009 … t-119: tombstones, the last one too
			if _, err := s.Delete(ctx, id, 0, actor); err != nil {
				t.Fatalf("Delete(%s): %v", id, err)
			}
			continue
		}
		live = append(live, id)
	}
	pageOrder(s, live)

	// 96 live tenants: 7 leaves a short last page, 8 fills it exactly (and
	// the peek past it only meets a tombstone).
	for _, size := range []int{7, 8, 1, 96, 500} {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > n {
				t.Fatalf("page size %d: List does not end", size)
			}
			page, err := s.List(ctx, catalog.ListOptions{After: after, Limit: size})
			if err != nil {
				t.Fatalf("List(after %q, %d): %v", after, size, err)
			}
			if len(page.Tenants) > size {
				t.Fatalf("List(after %q, %d) returned %d tenants", after, size, len(page.Tenants))
			}
			if after != "" && len(page.Tenants) == 0 {
				t.Fatalf("page size %d: the page after Next %q is empty; Next must be \"\" on the last page", size, after)
			}
			for _, tn := range page.Tenants {
				if tn.Deleted() {
					t.Fatalf("List returned tombstone %s", tn.ID)
				}
				got = append(got, tn.ID)
			}
			if page.Next == "" {
				break
			}
			if len(page.Tenants) == 0 || page.Next != page.Tenants[len(page.Tenants)-1].ID {
				t.Fatalf("page size %d: Next %q is not the page's last id", size, page.Next)
			}
			after = page.Next
		}
		wantSame(t, fmt.Sprintf("ids listed with page size %d", size), live, got)
	}

	page, err = s.List(ctx, catalog.ListOptions{})
	if err != nil || len(page.Tenants) != catalog.DefaultPageSize || page.Next != live[catalog.DefaultPageSize-1] {
		t.Fatalf("List with no limit: %d tenants, next %q, %v; want %d", len(page.Tenants), page.Next, err, catalog.DefaultPageSize)
	}
	// After may name a tombstone, or no tenant at all.
	for _, after := range []string{"t-004", "t-0045", "a", "t-041"} {
		page, err := s.List(ctx, catalog.ListOptions{After: after, Limit: 1})
		rest := following(s, live, after)
		if len(rest) == 0 {
			if err != nil || len(page.Tenants) != 0 {
				t.Fatalf("List(after %q) = %+v, %v; want nothing (no live tenant follows it)", after, page, err)
			}
			continue
		}
		first := rest[0]
		if err != nil || len(page.Tenants) != 1 || page.Tenants[0].ID != first {
			t.Fatalf("List(after %q) = %+v, %v; want %s first", after, page, err, first)
		}
		wantSame(t, "a listed tenant", mustGet(t, s, first), page.Tenants[0])
	}
	page, err = s.List(ctx, catalog.ListOptions{After: live[len(live)-1]})
	if err != nil || len(page.Tenants) != 0 || page.Next != "" {
		t.Fatalf("List after the last = %+v, %v; want nothing", page, err)
	}
}

// testListSegments lists and exports a store segment by segment: each
// segment, paged, holds exactly the tenants SegmentOf puts in it, in page
// order, so the segments are disjoint and together hold every tenant.
// Segment counts cover one that divides the DynamoDB store's 64 shards
// (16), one that they divide (128) and one coprime with them (3).
func testListSegments(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	const n = 100
	var live, stored []string
	for i := range n {
		id := fmt.Sprintf("seg-%03d", i)
		mustCreate(t, s, NewTenant(id))
		stored = append(stored, id)
		if i%7 == 3 {
			if _, err := s.Delete(ctx, id, 0, actor); err != nil {
				t.Fatalf("Delete(%s): %v", id, err)
			}
			continue
		}
		live = append(live, id)
	}
	pageOrder(s, live)
	pageOrder(s, stored)

	for _, segments := range []int{1, 3, 16, 128} {
		var union []string
		for seg := range segments {
			var want, wantStored []string
			for _, id := range live {
				if catalog.SegmentOf(id, segments) == seg {
					want = append(want, id)
				}
			}
			for _, id := range stored {
				if catalog.SegmentOf(id, segments) == seg {
					wantStored = append(wantStored, id)
				}
			}
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > n {
					t.Fatalf("segment %d of %d: List does not end", seg, segments)
				}
				page, err := s.List(ctx, catalog.ListOptions{After: after, Limit: 7, Segment: seg, Segments: segments})
				if err != nil {
					t.Fatalf("List(segment %d of %d, after %q): %v", seg, segments, after, err)
				}
				for _, tn := range page.Tenants {
					got = append(got, tn.ID)
				}
				if page.Next == "" {
					break
				}
				if len(page.Tenants) != 7 || page.Next != page.Tenants[6].ID {
					t.Fatalf("segment %d of %d: a page of %d before Next %q", seg, segments, len(page.Tenants), page.Next)
				}
				after = page.Next
			}
			wantSame(t, fmt.Sprintf("ids listed in segment %d of %d", seg, segments), want, got)
			union = append(union, got...)

			var exported []string
			after = ""
			for pages := 0; ; pages++ {
				if pages > n {
					t.Fatalf("segment %d of %d: Export does not end", seg, segments)
				}
				page, err := s.Export(ctx, catalog.ListOptions{After: after, Limit: 11, Segment: seg, Segments: segments})
				if err != nil {
					t.Fatalf("Export(segment %d of %d, after %q): %v", seg, segments, after, err)
				}
				for _, it := range page.Items {
					exported = append(exported, it.Tenant.ID)
				}
				if page.Next == "" {
					break
				}
				after = page.Next
			}
			wantSame(t, fmt.Sprintf("ids exported in segment %d of %d", seg, segments), wantStored, exported)
		}
		wantSame(t, fmt.Sprintf("the %d segments' ids", segments), live, pageOrder(s, union))
	}

	for _, bad := range []struct {
		opts  catalog.ListOptions
		field string
	}{
		{catalog.ListOptions{Segments: -1}, "segments"},
		{catalog.ListOptions{Segments: catalog.MaxSegments + 1}, "segments"},
		{catalog.ListOptions{Segment: 1}, "segment"},
		{catalog.ListOptions{Segment: 3, Segments: 3}, "segment"},
		{catalog.ListOptions{Segment: -1, Segments: 2}, "segment"},
	} {
		_, err := s.List(ctx, bad.opts)
		wantCode(t, err, tenant.Invalid)
		if f := tenant.ErrorFields(err); len(f) != 1 || f[0].Field != bad.field {
			t.Fatalf("List(%+v) = %v; want it to name %s", bad.opts, err, bad.field)
		}
		_, err = s.Export(ctx, bad.opts)
		wantCode(t, err, tenant.Invalid)
	}
}

func testLookupHostname(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, NewTenant("acme", "acme.example.com", "xn--bcher-kva.example.com"))
	b := mustCreate(t, s, NewTenant("beta", "beta.example.com"))
	for h, want := range map[string]*tenant.Tenant{
		"acme.example.com":          a,
		"xn--bcher-kva.example.com": a,
		"beta.example.com":          b,
	} {
		got, err := s.LookupHostname(ctx, h)
		if err != nil {
			t.Fatalf("LookupHostname(%s): %v", h, err)
		}
		wantSame(t, "LookupHostname("+h+")", want, got)
	}
	for _, h := range []string{"unknown.example.com", "example.com", "acme.example.co", ""} {
		_, err := s.LookupHostname(ctx, h)
		wantCode(t, err, tenant.NotFound)
	}

	next := a.Clone()
	next.Hostnames = []string{"acme.example.com"}
	a = mustUpdate(t, s, next, a.Version)
	_, err := s.LookupHostname(ctx, "xn--bcher-kva.example.com")
	wantCode(t, err, tenant.NotFound)
	got, err := s.LookupHostname(ctx, "acme.example.com")
	if err != nil {
		t.Fatalf("LookupHostname: %v", err)
	}
	wantSame(t, "LookupHostname after an update", a, got)
}

func testHistory(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	docs := []*tenant.Tenant{nil} // docs[v] is the document at version v
	created, err := s.Create(ctx, NewTenant("acme"), "actor-1")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	docs = append(docs, created)
	for v := int64(1); v <= 5; v++ {
		next := docs[v].Clone()
		next.Labels = map[string]string{"step": strconv.FormatInt(v, 10)}
		got, err := s.Update(ctx, next, v, fmt.Sprintf("actor-%d", v+1))
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		docs = append(docs, got)
	}
	mustCreate(t, s, NewTenant("acmf")) // a neighbour whose records must not leak in
	mustCreate(t, s, NewTenant("acm"))

	check := func(opts catalog.HistoryOptions, want ...int64) {
		t.Helper()
		recs, err := s.History(ctx, "acme", opts)
		if err != nil {
			t.Fatalf("History(%+v): %v", opts, err)
		}
		var got []int64
		for _, r := range recs {
			got = append(got, r.Version)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("History(%+v) versions %v, want %v", opts, got, want)
		}
		for _, r := range recs {
			v := r.Version
			if r.TenantID != "acme" || r.Actor != fmt.Sprintf("actor-%d", v) {
				t.Fatalf("record %d: tenant %q actor %q", v, r.TenantID, r.Actor)
			}
			wantAction := catalog.ActionUpdate
			var wantBefore *tenant.Tenant
			if v == 1 {
				wantAction = catalog.ActionCreate
			} else {
				wantBefore = docs[v-1]
			}
			if r.Action != wantAction {
				t.Fatalf("record %d: action %q, want %q", v, r.Action, wantAction)
			}
			wantSame(t, fmt.Sprintf("record %d before", v), wantBefore, r.Before)
			wantSame(t, fmt.Sprintf("record %d after", v), docs[v], r.After)
			if !r.At.Equal(docs[v].UpdatedAt) {
				t.Fatalf("record %d: at %v, want the document's UpdatedAt %v", v, r.At, docs[v].UpdatedAt)
			}
		}
	}
	check(catalog.HistoryOptions{}, 6, 5, 4, 3, 2, 1)
	check(catalog.HistoryOptions{Limit: 2}, 6, 5)
	check(catalog.HistoryOptions{Before: 5, Limit: 2}, 4, 3)
	check(catalog.HistoryOptions{Before: 3, Limit: 2}, 2, 1)
	check(catalog.HistoryOptions{Before: 1, Limit: 2})
	check(catalog.HistoryOptions{Before: 100}, 6, 5, 4, 3, 2, 1)

	_, err = s.History(ctx, "ghost", catalog.HistoryOptions{})
	wantCode(t, err, tenant.NotFound)
	// A deleted tenant keeps its history.
	if _, err := s.Delete(ctx, "acme", 0, "actor-7"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if recs := history(t, s, "acme"); len(recs) != 7 || recs[0].Action != catalog.ActionDelete {
		t.Fatalf("history after delete has %d records, first %+v", len(recs), recs[0])
	}
}

// testOutbox checks one shard's sequence (entries of tenants that share a
// shard), the heads, acknowledgements, and that shards are independent.
func testOutbox(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	if got := readOutbox(t, s); len(got) != 0 {
		t.Fatalf("new store's outbox has %d entries", len(got))
	}
	ids := sameShard(s, "t", 3)
	sh := catalog.OutboxShard(ids[0], s.OutboxShards())
	a := mustCreate(t, s, NewTenant(ids[0]))
	b := mustCreate(t, s, NewTenant(ids[1]))
	a2 := mustUpdate(t, s, a, a.Version)
	if _, err := s.Update(ctx, a, a.Version, actor); err == nil { // stale: no entry
		t.Fatalf("stale Update succeeded")
	}
	tomb, err := s.Delete(ctx, ids[1], b.Version, actor)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want := []*tenant.Tenant{a, b, a2, tomb}

	all := readOutbox(t, s)
	if len(all) != len(want) {
		t.Fatalf("outbox has %d entries, want %d", len(all), len(want))
	}
	for i, e := range all {
		if e.Shard != sh {
			t.Fatalf("entry %d is in shard %d, want %d", i, e.Shard, sh)
		}
		if i > 0 && e.Seq <= all[i-1].Seq {
			t.Fatalf("seq %d after %d", e.Seq, all[i-1].Seq)
		}
		if e.Seq == 0 {
			t.Fatalf("entry %d has seq 0", i)
		}
		checkEvent(t, e.Event, want[i])
	}
	heads := func() []uint64 {
		t.Helper()
		h, err := s.OutboxHeads(ctx)
		if err != nil || len(h) != s.OutboxShards() {
			t.Fatalf("OutboxHeads() = %v, %v; want %d heads", h, err, s.OutboxShards())
		}
		return h
	}
	if h := heads(); h[sh] != all[3].Seq {
		t.Fatalf("head of shard %d is %d, want the last entry's %d", sh, h[sh], all[3].Seq)
	}

	seqs := func(es []catalog.OutboxEntry) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	read := func(after uint64, limit int) []uint64 {
		t.Helper()
		es, err := s.ReadOutbox(ctx, sh, after, limit)
		if err != nil {
			t.Fatalf("ReadOutbox(%d, %d, %d): %v", sh, after, limit, err)
		}
		return seqs(es)
	}
	depth := func(max, wantN int, wantOldest time.Time) {
		t.Helper()
		n, oldest, err := s.OutboxDepth(ctx, max)
		if err != nil {
			t.Fatalf("OutboxDepth(%d): %v", max, err)
		}
		if n != wantN || !oldest.Equal(wantOldest) {
			t.Errorf("OutboxDepth(%d) = %d, %v; want %d, %v", max, n, oldest, wantN, wantOldest)
		}
	}
	depth(100, 4, all[0].Event.CommittedAt)
	depth(2, 2, all[0].Event.CommittedAt) // stops counting at max
	depth(0, 4, all[0].Event.CommittedAt) // 0: no cap
	s0, s1, s2, s3 := all[0].Seq, all[1].Seq, all[2].Seq, all[3].Seq
	wantSame(t, "ReadOutbox(0, 1)", []uint64{s0}, read(0, 1))
	wantSame(t, "ReadOutbox(s0, 2)", []uint64{s1, s2}, read(s0, 2))
	wantSame(t, "ReadOutbox(s1, 10)", []uint64{s2, s3}, read(s1, 10))
	wantSame(t, "ReadOutbox(s3, 10)", []uint64(nil), read(s3, 10))
	for _, bad := range []int{-1, s.OutboxShards()} {
		if _, err := s.ReadOutbox(ctx, bad, 0, 1); tenant.ErrorCode(err) != tenant.Invalid {
			t.Errorf("ReadOutbox of shard %d: %v; want Invalid", bad, err)
		}
		if err := s.AckOutbox(ctx, bad, 1); tenant.ErrorCode(err) != tenant.Invalid {
			t.Errorf("AckOutbox of shard %d: %v; want Invalid", bad, err)
		}
	}

	// A tenant of another shard (if there is one) is acknowledged on its
	// own: acking shard sh leaves it.
	var other *catalog.OutboxEntry
	if s.OutboxShards() > 1 {
		for i := 0; other == nil; i++ {
			id := fmt.Sprintf("o-%d", i)
			if catalog.OutboxShard(id, s.OutboxShards()) == sh {
				continue
			}
			mustCreate(t, s, NewTenant(id))
			all := readOutbox(t, s)
			other = &all[len(all)-1]
		}
	}

	if err := s.AckOutbox(ctx, sh, s1); err != nil {
		t.Fatalf("AckOutbox: %v", err)
	}
	wantSame(t, "ReadOutbox after acking two", []uint64{s2, s3}, read(0, 10))
	if other == nil {
		depth(100, 2, all[2].Event.CommittedAt)
	} else {
		depth(100, 3, all[2].Event.CommittedAt)
	}
	wantSame(t, "ReadOutbox(0, 1) after ack", []uint64{s2}, read(0, 1))
	if err := s.AckOutbox(ctx, sh, s0); err != nil { // acking again is harmless
		t.Fatalf("AckOutbox: %v", err)
	}
	if err := s.AckOutbox(ctx, sh, s3); err != nil {
		t.Fatalf("AckOutbox: %v", err)
	}
	wantSame(t, "ReadOutbox after acking all", []uint64(nil), read(0, 10))
	if other != nil {
		wantSame(t, "the other shard after acking shard "+strconv.Itoa(sh), []catalog.OutboxEntry{*other}, readOutbox(t, s))
		depth(100, 1, other.Event.CommittedAt)
		if err := s.AckOutbox(ctx, other.Shard, other.Seq); err != nil {
			t.Fatalf("AckOutbox: %v", err)
		}
	}
	depth(100, 0, time.Time{})
	if h := heads(); h[sh] != s3 {
		t.Fatalf("head of shard %d after acking all is %d, want %d", sh, h[sh], s3)
	}

	mustCreate(t, s, NewTenant(ids[2]))
	rest := readOutbox(t, s)
	if len(rest) != 1 || rest[0].Seq != s3+1 {
		t.Fatalf("after acking all, a write gave %v; want one entry, %d", seqs(rest), s3+1)
	}
}

func testConcurrentUpdates(t *testing.T, s catalog.Store) {
	a := mustCreate(t, s, NewTenant("acme", "acme.example.com"))
	const n = 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins []*tenant.Tenant
		errs []error
	)
	for i := range n {
		wg.Go(func() {
			next := a.Clone()
			next.Labels = map[string]string{"writer": strconv.Itoa(i)}
			got, err := s.Update(context.Background(), next, a.Version, fmt.Sprintf("writer-%d", i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			wins = append(wins, got)
		})
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Fatalf("%d updates at the same version succeeded, want 1 (errors: %v)", len(wins), errs)
	}
	for _, err := range errs {
		wantCode(t, err, tenant.VersionMismatch)
	}
	wantSame(t, "the winner", wins[0], mustGet(t, s, "acme"))
	if wins[0].Version != 2 {
		t.Fatalf("winner at version %d, want 2", wins[0].Version)
	}
	if n := len(readOutbox(t, s)); n != 2 {
		t.Fatalf("outbox has %d entries, want 2", n)
	}
}

func testConcurrentClaims(t *testing.T, s catalog.Store) {
	const n, contested = 20, "contested.example.com"
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
		errs    []error
	)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("racer-%02d", i)
			_, err := s.Create(context.Background(), NewTenant(id, id+".example.com", contested), actor)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			winners = append(winners, id)
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d tenants claimed %s, want 1: %v (errors: %v)", len(winners), contested, winners, errs)
	}
	for _, err := range errs {
		wantCode(t, err, tenant.HostnameTaken)
	}
	owner, err := s.LookupHostname(t.Context(), contested)
	if err != nil || owner.ID != winners[0] {
		t.Fatalf("LookupHostname = %v, %v; want %s", owner, err, winners[0])
	}
	for i := range n {
		id := fmt.Sprintf("racer-%02d", i)
		if id == winners[0] {
			continue
		}
		_, err := s.Get(t.Context(), id)
		wantCode(t, err, tenant.NotFound)
		_, err = s.LookupHostname(t.Context(), id+".example.com")
		wantCode(t, err, tenant.NotFound)
	}
	if n := len(readOutbox(t, s)); n != 1 {
		t.Fatalf("outbox has %d entries, want 1", n)
	}
}

func testReturnsCopies(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	mutate := func(tn *tenant.Tenant) {
		tn.Hostnames[0] = "mutated.example.com"
		tn.Hostnames = append(tn.Hostnames, "appended.example.com")
		tn.Products["jira"] = tenant.Product{State: tenant.ProductDeactivated}
		tn.Database.Host = "mutated"
		if tn.Labels == nil {
			tn.Labels = map[string]string{}
		}
		tn.Labels["mutated"] = "yes"
		tn.Version = 99
	}

	in := NewTenant("acme", "acme.example.com")
	created, err := s.Create(ctx, in, actor)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := created.Clone()
	mutate(in)
	mutate(created)
	wantSame(t, "after mutating Create's argument and result", want, mustGet(t, s, "acme"))

	got := mustGet(t, s, "acme")
	mutate(got)
	page, err := s.List(ctx, catalog.ListOptions{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	mutate(page.Tenants[0])
	owner, err := s.LookupHostname(ctx, "acme.example.com")
	if err != nil {
		t.Fatalf("LookupHostname: %v", err)
	}
	mutate(owner)
	wantSame(t, "after mutating Get, List and LookupHostname results", want, mustGet(t, s, "acme"))

	next := want.Clone()
	next.Labels = map[string]string{"a": "b"}
	updated, err := s.Update(ctx, next, want.Version, actor)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	want = updated.Clone()
	mutate(next)
	mutate(updated)
	recs := history(t, s, "acme")
	mutate(recs[0].After)
	mutate(recs[0].Before)
	wantSame(t, "after mutating Update's argument and result", want, mustGet(t, s, "acme"))
	wantSame(t, "history after mutating an earlier History result", want, history(t, s, "acme")[0].After)
	wantSame(t, "outbox", want, lastEvent(t, s).Tenant)
}

func testCanceledContext(t *testing.T, s catalog.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	a := NewTenant("acme")
	if _, err := s.Create(ctx, a, actor); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a canceled context: %v", err)
	}
	_, err := s.Get(t.Context(), "acme")
	wantCode(t, err, tenant.NotFound)
	if n := len(readOutbox(t, s)); n != 0 {
		t.Fatalf("outbox has %d entries, want 0", n)
	}
	mustCreate(t, s, a)
	if _, err := s.Get(ctx, "acme"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a canceled context: %v", err)
	}
	if _, err := s.Update(ctx, a, 1, actor); !errors.Is(err, context.Canceled) {
		t.Fatalf("Update with a canceled context: %v", err)
	}
	if _, err := s.Delete(ctx, "acme", 0, actor); !errors.Is(err, context.Canceled) {
		t.Fatalf("Delete with a canceled context: %v", err)
	}
	if v := mustGet(t, s, "acme").Version; v != 1 {
		t.Fatalf("version %d after canceled writes, want 1", v)
	}
}

func testPing(t *testing.T, s catalog.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// tracedContext returns a context under a (remote) sampled span with a
// tracestate, and the TraceContext an outbox entry made under it carries.
func tracedContext() (context.Context, tenant.TraceContext) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("vendor=abc")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts})
	return trace.ContextWithSpanContext(context.Background(), sc),
		tenant.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "vendor=abc"}
}

// testOutboxTraceContext: a write made under a span stores that span's
// context (W3C traceparent and tracestate) with its outbox entry; a write
// under none stores none.
func testOutboxTraceContext(t *testing.T, s catalog.Store) {
	traced, want := tracedContext()

	created, err := s.Create(traced, NewTenant("traced", "traced.example.com"), actor)
	if err != nil {
		t.Fatal(err)
	}
	if got := lastEvent(t, s).Trace; got != want {
		t.Errorf("create's outbox entry carries %+v, want %+v", got, want)
	}
	upd := created.Clone()
	upd.Hostnames = []string{"traced.example.com", "more.traced.example.com"}
	if _, err := s.Update(context.Background(), upd, created.Version, actor); err != nil {
		t.Fatal(err)
	}
	if got := lastEvent(t, s).Trace; !got.IsZero() {
		t.Errorf("untraced update's outbox entry carries %+v, want none", got)
	}
	if _, err := s.Delete(traced, "traced", 0, actor); err != nil {
		t.Fatal(err)
	}
	if got := lastEvent(t, s).Trace; got != want {
		t.Errorf("delete's outbox entry carries %+v, want %+v", got, want)
	}
}

// testResyncTraceContext: a Resync or ResyncAll made under a span (a
// `tcsctl resync` through the catalog's traced REST API, a reconciler's
// repair) stores that span's context with every outbox entry it appends,
// as a write does; one under none stores none.
func testResyncTraceContext(t *testing.T, s catalog.Store) {
	traced, want := tracedContext()
	mustCreate(t, s, NewTenant("acme", "acme.example.com"))
	mustCreate(t, s, NewTenant("beta", "beta.example.com"))
	check := func(what string, before int, want tenant.TraceContext) {
		t.Helper()
		added := readOutbox(t, s)[before:]
		if len(added) != 2 {
			t.Fatalf("%s appended %d outbox entries, want 2", what, len(added))
		}
		for _, e := range added {
			if !e.Event.Resync {
				t.Fatalf("%s appended a non-resync event of %s", what, e.Event.TenantID)
			}
			if e.Event.Trace != want {
				t.Errorf("%s: the entry of %s carries %+v, want %+v", what, e.Event.TenantID, e.Event.Trace, want)
			}
		}
	}

	before := len(readOutbox(t, s))
	if _, err := s.Resync(traced, ids("acme", "beta"), []string{"us-east-1"}); err != nil {
		t.Fatal(err)
	}
	check("traced Resync", before, want)

	before = len(readOutbox(t, s))
	mustResync(t, s, ids("acme", "beta"))
	check("untraced Resync", before, tenant.TraceContext{})

	before = len(readOutbox(t, s))
	if _, _, err := s.ResyncAll(traced, "", 0, nil); err != nil {
		t.Fatal(err)
	}
	check("traced ResyncAll", before, want)
}
