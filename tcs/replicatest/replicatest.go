// Package replicatest is the conformance suite for tcs.Replica: every
// regional replica backend (bbolt, DynamoDB) runs Run against fresh replicas
// and Convergence, the property test of invariant 3 (docs/architecture.md),
// and must pass both unchanged. The suite tests the contract only — what the streamer's
// applier and the lookup servers can observe through the interface — never a
// backend's internals.
//
// Event, Tombstone and Doc build change events by hand; DrawHistory draws a
// random history from a real source of truth (catalog/bolt) and is exported
// so that tests of the pure apply rules can use the same histories.
// LockedReplica wraps a bbolt replica so that a system test can edit its
// file behind the back of the components using it, or stall its applies.
package replicatest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// epoch is the commit time of version 0 in documents made by Doc.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Doc returns a valid tenant document at version holding hostnames (which
// must be normalised), as the source of truth would store it. Its content
// depends on the version (a label and the commit time), so that documents of
// two versions differ.
func Doc(id string, version int64, hostnames ...string) *tenant.Tenant {
	d := storetest.NewTenant(id, "placeholder.example.com")
	d.Hostnames = slices.Clone(hostnames)
	d.Labels = map[string]string{"rev": strconv.FormatInt(version, 10)}
	d.Version = version
	d.UpdatedAt = epoch.Add(time.Duration(version) * time.Second)
	d.UpdatedBy = "replicatest"
	return d
}

// Event returns the change event that puts tenant id at version, holding the
// hostnames of claims (hostname → claim version) and having released those of
// released (hostname → claim version of the release). Claims and releases
// are sorted by hostname, as the source of truth emits them.
func Event(id string, version int64, claims, released map[string]int64) *tenant.ChangeEvent {
	hostnames := slices.Sorted(maps.Keys(claims))
	return &tenant.ChangeEvent{
		TenantID:    id,
		Version:     version,
		Tenant:      Doc(id, version, hostnames...),
		Claims:      claimList(claims),
		Released:    claimList(released),
		CommittedAt: epoch.Add(time.Duration(version) * time.Second),
	}
}

// Tombstone returns the event that deletes tenant id at version, releasing
// the hostnames of released (hostname → claim version of the release).
func Tombstone(id string, version int64, released map[string]int64) *tenant.ChangeEvent {
	at := epoch.Add(time.Duration(version) * time.Second)
	return &tenant.ChangeEvent{
		TenantID: id,
		Version:  version,
		Tenant: &tenant.Tenant{
			ID:        id,
			Status:    tenant.StatusDeleted,
			Version:   version,
			UpdatedAt: at,
			UpdatedBy: "replicatest",
		},
		Released:    claimList(released),
		CommittedAt: at,
	}
}

func claimList(m map[string]int64) []tenant.Claim {
	var out []tenant.Claim
	for _, h := range slices.Sorted(maps.Keys(m)) {
		out = append(out, tenant.Claim{Hostname: h, Version: m[h]})
	}
	return out
}

// Run runs the conformance suite. open must return a new, empty replica
// each time it is called and close it when t ends (t.Cleanup). Run does not
// run Convergence: backends call it themselves, with a check count that
// suits their speed. A replica that implements tcs.Scanner also runs
// RunScanner, and one that implements tcs.BatchApplier the batch tests
// (backends call BatchConvergence themselves, like Convergence).
func Run(t *testing.T, open func(t *testing.T) tcs.Replica) {
	tests := []struct {
		name string
		test func(t *testing.T, open func(t *testing.T) tcs.Replica)
	}{
		{"ApplyThenLookup", testApplyThenLookup},
		{"NotFound", testNotFound},
		{"VersionGating", testVersionGating},
		{"Resync", testResync},
		{"ResyncRepairs", testResyncRepairs},
		{"HostnameMoveAnyOrder", testHostnameMove},
		{"TombstoneBlocksResurrection", testTombstone},
		{"RecreateAfterDelete", testRecreate},
		{"ApplyResultHostnames", testApplyResultHostnames},
		{"MalformedEvents", testMalformed},
		{"ReturnsCopies", testReturnsCopies},
		{"ConcurrentApply", testConcurrentApply},
		{"CanceledContext", testCanceledContext},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, open)
		})
	}
	// The optional capabilities, if the backend has them.
	probe := open(t)
	if _, ok := probe.(tcs.Scanner); ok {
		t.Run("Scanner", func(t *testing.T) {
			t.Parallel()
			RunScanner(t, open)
		})
	}
	if _, ok := probe.(tcs.BatchApplier); ok {
		t.Run("BatchApplier", func(t *testing.T) {
			t.Parallel()
			runBatch(t, open)
		})
	}
}

// tb is what the helpers need from *testing.T and *rapid.T alike.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// equateEmpty lets a backend return nil or empty slices and maps alike;
// time.Time compares with Equal (instants, not locations).
var equateEmpty = cmpopts.EquateEmpty()

func apply(t tb, r tcs.Replica, ev *tenant.ChangeEvent) tcs.ApplyResult {
	t.Helper()
	res, err := r.Apply(context.Background(), ev)
	if err != nil {
		t.Fatalf("Apply(%s@%d): %v", ev.TenantID, ev.Version, err)
	}
	return res
}

func applyAll(t tb, r tcs.Replica, evs ...*tenant.ChangeEvent) {
	t.Helper()
	for _, ev := range evs {
		apply(t, r, ev)
	}
}

// wantResult checks an ApplyResult, with its hostnames compared as a set.
func wantResult(t tb, what string, got tcs.ApplyResult, applied bool, hostnames ...string) {
	t.Helper()
	gotHosts := slices.Sorted(slices.Values(got.Hostnames))
	want := tcs.ApplyResult{Applied: applied, Hostnames: slices.Sorted(slices.Values(hostnames))}
	got.Hostnames = gotHosts
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Fatalf("%s: ApplyResult (-want +got):\n%s", what, diff)
	}
}

// wantLookup checks that hostname resolves to want, or to nothing if want is
// nil.
func wantLookup(t tb, r tcs.Replica, hostname string, want *tenant.Tenant) {
	t.Helper()
	got, err := r.LookupHostname(context.Background(), hostname)
	if want == nil {
		if tenant.ErrorCode(err) != tenant.NotFound {
			t.Fatalf("LookupHostname(%s) = %s, %v; want NotFound", hostname, describe(got), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("LookupHostname(%s): %v; want %s", hostname, err, describe(want))
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Fatalf("LookupHostname(%s) (-want +got):\n%s", hostname, diff)
	}
}

// wantDoc checks that GetTenant(id) returns want, or NotFound if want is nil.
func wantDoc(t tb, r tcs.Replica, id string, want *tenant.Tenant) {
	t.Helper()
	got, err := r.GetTenant(context.Background(), id)
	if want == nil {
		if tenant.ErrorCode(err) != tenant.NotFound {
			t.Fatalf("GetTenant(%s) = %s, %v; want NotFound", id, describe(got), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("GetTenant(%s): %v; want %s", id, err, describe(want))
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Fatalf("GetTenant(%s) (-want +got):\n%s", id, diff)
	}
}

func describe(t *tenant.Tenant) string {
	if t == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s@%d %s %v", t.ID, t.Version, t.Status, t.Hostnames)
}

func testApplyThenLookup(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	ev := Event("acme", 1, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}, nil)
	wantResult(t, "create", apply(t, r, ev), true, "acme.example.com", "www.acme.example.com")
	wantLookup(t, r, "acme.example.com", ev.Tenant)
	wantLookup(t, r, "www.acme.example.com", ev.Tenant)
	wantDoc(t, r, "acme", ev.Tenant)

	// A second tenant does not disturb the first.
	other := Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil)
	apply(t, r, other)
	wantLookup(t, r, "beta.example.com", other.Tenant)
	wantLookup(t, r, "acme.example.com", ev.Tenant)
}

func testNotFound(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	wantLookup(t, r, "nobody.example.com", nil)
	wantDoc(t, r, "nobody", nil)
	apply(t, r, Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil))
	wantLookup(t, r, "nobody.example.com", nil)
	wantLookup(t, r, "example.com", nil)
	wantDoc(t, r, "nobody", nil)
}

func testVersionGating(t *testing.T, open func(t *testing.T) tcs.Replica) {
	hosts := map[string]int64{"acme.example.com": 1}
	v1, v2, v3 := Event("acme", 1, hosts, nil), Event("acme", 2, hosts, nil), Event("acme", 3, hosts, nil)

	t.Run("InOrder", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		wantResult(t, "v1", apply(t, r, v1), true, "acme.example.com")
		wantResult(t, "v2", apply(t, r, v2), true, "acme.example.com")
		// A duplicate of the newest version re-sends its invalidation;
		// older replays report nothing.
		wantResult(t, "duplicate v2", apply(t, r, v2), false, "acme.example.com")
		wantResult(t, "replayed v1", apply(t, r, v1), false)
		wantDoc(t, r, "acme", v2.Tenant)
		wantLookup(t, r, "acme.example.com", v2.Tenant)
	})
	t.Run("NewestFirst", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		wantResult(t, "v3", apply(t, r, v3), true, "acme.example.com")
		wantResult(t, "late v1", apply(t, r, v1), false)
		wantResult(t, "late v2", apply(t, r, v2), false)
		wantResult(t, "duplicate v3", apply(t, r, v3), false, "acme.example.com")
		wantDoc(t, r, "acme", v3.Tenant)
		wantLookup(t, r, "acme.example.com", v3.Tenant)
	})
	t.Run("SameVersionOtherContent", func(t *testing.T) {
		// Without Resync an equal version is a duplicate, whatever it carries.
		t.Parallel()
		r := open(t)
		apply(t, r, v2)
		odd := Event("acme", 2, hosts, nil)
		odd.Tenant.Labels["rev"] = "other"
		wantResult(t, "same version", apply(t, r, odd), false)
		wantDoc(t, r, "acme", v2.Tenant)
	})
}

func testResync(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	hosts := map[string]int64{"acme.example.com": 1}
	// A replica holding wrong content at version 2 (a bug, a bad restore)...
	corrupt := Event("acme", 2, hosts, nil)
	corrupt.Tenant.Labels["rev"] = "corrupt"
	corrupt.Tenant.Database.Host = "wrong.internal"
	apply(t, r, corrupt)

	// ...is repaired by a resync of the same version...
	resync := Event("acme", 2, hosts, nil)
	resync.Resync = true
	wantResult(t, "resync at the stored version", apply(t, r, resync), true, "acme.example.com")
	wantDoc(t, r, "acme", resync.Tenant)
	wantLookup(t, r, "acme.example.com", resync.Tenant)

	// ...but a resync of an older version changes nothing.
	old := Event("acme", 1, hosts, nil)
	old.Tenant.Labels["rev"] = "older"
	old.Resync = true
	wantResult(t, "resync below the stored version", apply(t, r, old), false)
	wantDoc(t, r, "acme", resync.Tenant)
	wantLookup(t, r, "acme.example.com", resync.Tenant)
}

// permutations returns every order of evs.
func permutations(evs []*tenant.ChangeEvent) [][]*tenant.ChangeEvent {
	if len(evs) <= 1 {
		return [][]*tenant.ChangeEvent{slices.Clone(evs)}
	}
	var out [][]*tenant.ChangeEvent
	for i, first := range evs {
		rest := slices.Concat(evs[:i], evs[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]*tenant.ChangeEvent{first}, p...))
		}
	}
	return out
}

func order(evs []*tenant.ChangeEvent) string {
	s := ""
	for i, ev := range evs {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%s%d", ev.TenantID, ev.Version)
	}
	return s
}

// testHostnameMove moves shared.example.com from a to b and back to a, and
// delivers the five events in every order: the claim versions decide, not
// the order (B's claim may arrive before or after A's release).
func testHostnameMove(t *testing.T, open func(t *testing.T) tcs.Replica) {
	const h = "shared.example.com"
	a1 := Event("a", 1, map[string]int64{"a.example.com": 1, h: 1}, nil)
	a2 := Event("a", 2, map[string]int64{"a.example.com": 1}, map[string]int64{h: 2})
	b1 := Event("b", 1, map[string]int64{"b.example.com": 1}, nil)
	b2 := Event("b", 2, map[string]int64{"b.example.com": 1, h: 3}, nil)

	t.Run("AToB", func(t *testing.T) {
		t.Parallel()
		for _, evs := range permutations([]*tenant.ChangeEvent{a1, a2, b1, b2}) {
			r := open(t)
			applyAll(t, r, evs...)
			if t.Failed() {
				return
			}
			wantLookupIn(t, order(evs), r, h, b2.Tenant)
			wantLookupIn(t, order(evs), r, "a.example.com", a2.Tenant)
			wantLookupIn(t, order(evs), r, "b.example.com", b2.Tenant)
		}
	})

	b3 := Event("b", 3, map[string]int64{"b.example.com": 1}, map[string]int64{h: 4})
	a3 := Event("a", 3, map[string]int64{"a.example.com": 1, h: 5}, nil)
	t.Run("AToBToA", func(t *testing.T) {
		t.Parallel()
		// a3 and b3 are the newest of their tenants; delivering every order of
		// the rest around them keeps the run short and still lets each claim
		// arrive before and after each release.
		for _, evs := range permutations([]*tenant.ChangeEvent{a1, a2, b2, b3, a3}) {
			r := open(t)
			applyAll(t, r, evs...)
			wantLookupIn(t, order(evs), r, h, a3.Tenant)
			wantLookupIn(t, order(evs), r, "a.example.com", a3.Tenant)
			wantLookupIn(t, order(evs), r, "b.example.com", b3.Tenant)
		}
	})
}

// wantLookupIn is wantLookup that names the delivery order.
func wantLookupIn(t *testing.T, order string, r tcs.Replica, hostname string, want *tenant.Tenant) {
	t.Helper()
	got, err := r.LookupHostname(context.Background(), hostname)
	switch {
	case want == nil && tenant.ErrorCode(err) != tenant.NotFound:
		t.Fatalf("order %s: LookupHostname(%s) = %s, %v; want NotFound", order, hostname, describe(got), err)
	case want == nil:
	case err != nil:
		t.Fatalf("order %s: LookupHostname(%s): %v; want %s", order, hostname, err, describe(want))
	default:
		if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
			t.Fatalf("order %s: LookupHostname(%s) (-want +got):\n%s", order, hostname, diff)
		}
	}
}

func testTombstone(t *testing.T, open func(t *testing.T) tcs.Replica) {
	hosts := map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}
	v1, v2 := Event("acme", 1, hosts, nil), Event("acme", 2, hosts, nil)
	del := Tombstone("acme", 3, map[string]int64{"acme.example.com": 2, "www.acme.example.com": 2})

	t.Run("DeleteLast", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		apply(t, r, v1)
		apply(t, r, v2)
		wantResult(t, "delete", apply(t, r, del), true, "acme.example.com", "www.acme.example.com")
		wantResult(t, "replayed create", apply(t, r, v1), false)
		wantLookup(t, r, "acme.example.com", nil)
		wantLookup(t, r, "www.acme.example.com", nil)
		wantDoc(t, r, "acme", del.Tenant)
	})
	t.Run("DeleteFirst", func(t *testing.T) {
		// The stale create and update arrive after the tombstone: they must
		// not resurrect the tenant or map its hostnames.
		t.Parallel()
		r := open(t)
		apply(t, r, del)
		wantResult(t, "stale create", apply(t, r, v1), false)
		wantResult(t, "stale update", apply(t, r, v2), false)
		wantLookup(t, r, "acme.example.com", nil)
		wantLookup(t, r, "www.acme.example.com", nil)
		wantDoc(t, r, "acme", del.Tenant)
	})
}

func testRecreate(t *testing.T, open func(t *testing.T) tcs.Replica) {
	// acme is deleted, re-created at the next version with one of its old
	// hostnames, and the other goes to beta.
	a1 := Event("acme", 1, map[string]int64{"acme.example.com": 1, "old.example.com": 1}, nil)
	a2 := Tombstone("acme", 2, map[string]int64{"acme.example.com": 2, "old.example.com": 2})
	a3 := Event("acme", 3, map[string]int64{"acme.example.com": 3}, nil)
	b1 := Event("beta", 1, map[string]int64{"old.example.com": 3}, nil)
	for _, evs := range permutations([]*tenant.ChangeEvent{a1, a2, a3, b1}) {
		r := open(t)
		applyAll(t, r, evs...)
		wantLookupIn(t, order(evs), r, "acme.example.com", a3.Tenant)
		wantLookupIn(t, order(evs), r, "old.example.com", b1.Tenant)
		wantDoc(t, r, "acme", a3.Tenant)
	}
}

func testApplyResultHostnames(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	a1 := Event("acme", 1, map[string]int64{"a.example.com": 1, "b.example.com": 1}, nil)
	wantResult(t, "create", apply(t, r, a1), true, "a.example.com", "b.example.com")

	// Drops a, keeps b, adds c: every hostname of the old and new documents.
	a2 := Event("acme", 2, map[string]int64{"b.example.com": 1, "c.example.com": 1}, map[string]int64{"a.example.com": 2})
	wantResult(t, "update", apply(t, r, a2), true, "a.example.com", "b.example.com", "c.example.com")
	// A redelivery of the stored version reports its document's hostnames
	// again (its first broadcast may have been lost); an older replay
	// reports nothing.
	wantResult(t, "duplicate", apply(t, r, a2), false, "b.example.com", "c.example.com")
	wantResult(t, "replay", apply(t, r, a1), false)

	// Only the label changes: the document of b and c changed.
	a3 := Event("acme", 3, map[string]int64{"b.example.com": 1, "c.example.com": 1}, nil)
	wantResult(t, "label change", apply(t, r, a3), true, "b.example.com", "c.example.com")

	// beta takes the free a: only a changes owner.
	b1 := Event("beta", 1, map[string]int64{"a.example.com": 3}, nil)
	wantResult(t, "claim of a released hostname", apply(t, r, b1), true, "a.example.com")

	// beta's newest document drops a (the update beta@2 that it follows has
	// not arrived): a is unmapped.
	b3 := Event("beta", 3, map[string]int64{"d.example.com": 1}, map[string]int64{"a.example.com": 4})
	wantResult(t, "release with a newer document", apply(t, r, b3), true, "a.example.com", "d.example.com")
	wantLookup(t, r, "a.example.com", nil)

	del := Tombstone("acme", 4, map[string]int64{"b.example.com": 2, "c.example.com": 2})
	wantResult(t, "delete", apply(t, r, del), true, "b.example.com", "c.example.com")
	wantResult(t, "duplicate delete", apply(t, r, del), false)
}

func testMalformed(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	good := Event("acme", 2, map[string]int64{"acme.example.com": 1}, nil)
	apply(t, r, good)

	newHost := map[string]int64{"acme.example.com": 1, "new.example.com": 1}
	mismatch := Event("acme", 3, newHost, nil)
	mismatch.Version = 4
	otherID := Event("acme", 3, newHost, nil)
	otherID.Tenant.ID = "beta"
	emptyID := Event("", 3, newHost, nil)
	noDoc := Event("acme", 3, newHost, map[string]int64{"acme.example.com": 2})
	noDoc.Tenant = nil
	zero := Event("acme", 0, newHost, nil)
	for name, ev := range map[string]*tenant.ChangeEvent{
		"nil event":                       nil,
		"empty tenant id":                 emptyID,
		"nil tenant":                      noDoc,
		"event and doc versions differ":   mismatch,
		"event and doc tenant ids differ": otherID,
		"version 0":                       zero,
	} {
		res, err := r.Apply(context.Background(), ev)
		if tenant.ErrorCode(err) != tenant.Invalid {
			t.Errorf("Apply(%s) = %+v, %v; want an Invalid error (the applier skips those)", name, res, err)
		}
	}
	wantDoc(t, r, "acme", good.Tenant)
	wantDoc(t, r, "beta", nil)
	wantLookup(t, r, "acme.example.com", good.Tenant)
	wantLookup(t, r, "new.example.com", nil)
}

func testReturnsCopies(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	ev := Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
	want := ev.Tenant.Clone()
	apply(t, r, ev)
	ev.Tenant.Labels["rev"] = "changed after apply"
	ev.Tenant.Hostnames[0] = "changed.example.com"

	got, err := r.GetTenant(context.Background(), "acme")
	if err != nil {
		t.Fatalf("GetTenant: %v", err)
	}
	got.Labels["rev"] = "changed by a caller"
	got.Database.Host = "changed.internal"
	found, err := r.LookupHostname(context.Background(), "acme.example.com")
	if err != nil {
		t.Fatalf("LookupHostname: %v", err)
	}
	found.Hostnames[0] = "changed.example.com"
	found.Products["jira"] = tenant.Product{}

	wantDoc(t, r, "acme", want)
	wantLookup(t, r, "acme.example.com", want)
}

// testConcurrentApply delivers a history's events from several goroutines
// at once, each event several times: Apply must be atomic.
func testConcurrentApply(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	const h = "shared.example.com"
	evs := []*tenant.ChangeEvent{
		Event("a", 1, map[string]int64{"a.example.com": 1, h: 1}, nil),
		Event("a", 2, map[string]int64{"a.example.com": 1}, map[string]int64{h: 2}),
		Event("b", 1, map[string]int64{"b.example.com": 1, h: 3}, nil),
		Event("b", 2, map[string]int64{"b.example.com": 1}, map[string]int64{h: 4}),
		Event("c", 1, map[string]int64{"c.example.com": 1, h: 5}, nil),
		Tombstone("a", 3, map[string]int64{"a.example.com": 2}),
		Event("c", 2, map[string]int64{"c.example.com": 1, h: 5, "a.example.com": 3}, nil),
	}
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*len(evs))
	for w := range workers {
		wg.Go(func() {
			for i := range evs {
				ev := evs[(i*3+w)%len(evs)]
				if _, err := r.Apply(context.Background(), ev); err != nil {
					errs <- fmt.Errorf("Apply(%s@%d): %w", ev.TenantID, ev.Version, err)
				}
				if _, err := r.LookupHostname(context.Background(), h); err != nil && tenant.ErrorCode(err) != tenant.NotFound {
					errs <- fmt.Errorf("LookupHostname(%s): %w", h, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c2 := evs[len(evs)-1].Tenant
	wantLookup(t, r, h, c2)
	wantLookup(t, r, "a.example.com", c2)
	wantLookup(t, r, "b.example.com", evs[3].Tenant)
	wantDoc(t, r, "a", evs[5].Tenant)
}

func testCanceledContext(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev := Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
	if _, err := r.Apply(ctx, ev); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a canceled context: %v, want context.Canceled", err)
	}
	wantDoc(t, r, "acme", nil)
	apply(t, r, ev)
	if _, err := r.LookupHostname(ctx, "acme.example.com"); !errors.Is(err, context.Canceled) {
		t.Fatalf("LookupHostname with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := r.GetTenant(ctx, "acme"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetTenant with a canceled context: %v, want context.Canceled", err)
	}
}

func testPing(t *testing.T, open func(t *testing.T) tcs.Replica) {
	r := open(t)
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
