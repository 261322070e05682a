package replicatest

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// ConvergenceOptions tune Convergence. The zero value runs rapid's default.
type ConvergenceOptions struct {
	// Checks is how many random histories to check, rounded up to a
	// multiple of rapid's count (-rapid.checks, default 100); 0 means
	// rapid's count. Above it, the histories are checked in batches of
	// rapid's count, as parallel subtests. When the command line or the
	// environment sets rapid's count (-rapid.checks, RAPID_CHECKS) it wins,
	// in one batch, so that a CI job can ask for more. -short divides the
	// count by 5, as rapid does.
	Checks int
	// Orders is how many random deliveries of each history are checked,
	// each on a fresh replica; 0 means 1. A history costs commits to a real
	// source of truth; a delivery costs only replica writes, so a fast
	// backend can check many per history.
	Orders int
}

// Convergence checks invariant 3 (docs/architecture.md) against the replicas
// open returns: for random histories committed to a real source of truth
// (DrawHistory), followed by resyncs of some of their tenants
// (DrawResyncs), delivering the outbox's events in any order, with
// duplicates and replays (DrawDelivery), leaves the replica equal to the
// source (CheckConverged).
//
// On the way it checks every Apply: Applied is true exactly when the event
// is newer than every event of its tenant delivered before, and a duplicate
// changes nothing (a duplicate of the newest version reports its document's
// hostnames again, and nothing else). On the first delivery of each history it also looks every
// hostname up after every Apply and checks that each one whose answer
// changed is in ApplyResult.Hostnames: otherwise a lookup cache would keep a
// stale entry until its TTL.
//
// open must return a new, empty replica and close it when t ends
// (t.Cleanup); TempDir gives it a cheap place for files. It is called from
// parallel subtests.
func Convergence(t *testing.T, open func(t *rapid.T) tcs.Replica, opts ConvergenceOptions) {
	orders := max(opts.Orders, 1)
	prop := func(t *rapid.T) {
		src := OpenSource(t)
		h := DrawHistory(t, src)
		events := append(slices.Clone(h.Events), DrawResyncs(t, src, h)...)
		t.Logf("history:\n%s", describeEvents(events))
		want := ReadTruth(t, src, h)
		for i := range orders {
			r := open(t)
			evs := DrawDelivery(t, events)
			deliver(t, r, h, evs, i == 0)
			CheckConverged(t, r, want)
		}
	}

	per := rapidChecks()
	if opts.Checks <= per || per <= 0 || rapidChecksSet() {
		rapid.Check(t, prop)
		return
	}
	// Each batch draws its own seed; a failing one is minimised and reported
	// with the -run pattern and -rapid.seed that replay it.
	for i := range (opts.Checks + per - 1) / per {
		t.Run(fmt.Sprintf("batch-%d", i), func(t *testing.T) {
			t.Parallel()
			rapid.Check(t, prop)
		})
	}
}

// rapidChecks returns rapid's count of checks per rapid.Check.
func rapidChecks() int {
	if f := flag.Lookup("rapid.checks"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if n, ok := g.Get().(int); ok {
				return n
			}
		}
	}
	return 100
}

// rapidChecksSet reports whether the command line or the environment set
// rapid's count.
func rapidChecksSet() bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	_, env := os.LookupEnv("RAPID_CHECKS")
	return set || env
}

// deliver applies evs to r in order, checking each ApplyResult (see
// Convergence), with lookups of every hostname after each Apply if
// checkLookups.
func deliver(t *rapid.T, r tcs.Replica, h History, evs []*tenant.ChangeEvent, checkLookups bool) {
	t.Helper()
	ctx := context.Background()
	newest := map[string]int64{}
	delivered := map[*tenant.ChangeEvent]bool{}
	var before []answer
	if checkLookups {
		before = lookupAll(t, r, h.Hostnames)
	}
	for i, ev := range evs {
		what := func() string { return fmt.Sprintf("delivery %d of %d (%s)", i, len(evs), describeEvent(ev)) }
		res, err := r.Apply(ctx, ev)
		if err != nil {
			t.Fatalf("%s: Apply: %v", what(), err)
		}
		// A resync re-applies its version (to repair content); anything else
		// applies only above the newest version delivered.
		want := ev.Version > newest[ev.TenantID] || (ev.Resync && ev.Version == newest[ev.TenantID])
		if res.Applied != want {
			t.Fatalf("%s: Applied = %v, want %v (newest version delivered: %d)", what(), res.Applied, want, newest[ev.TenantID])
		}
		if delivered[ev] && !ev.Resync {
			// A duplicate changes nothing. Only a duplicate of the newest
			// version reports hostnames, its document's, to re-send an
			// invalidation its first delivery's applier may have lost.
			again := ev.Version == newest[ev.TenantID]
			if res.Applied || len(res.Hostnames) > 0 && (!again || slices.ContainsFunc(res.Hostnames, func(h string) bool { return !ev.Tenant.HasHostname(h) })) {
				t.Fatalf("%s: a duplicate changed the replica or reported hostnames not its own: %+v", what(), res)
			}
		}
		delivered[ev] = true
		newest[ev.TenantID] = max(newest[ev.TenantID], ev.Version)
		if !checkLookups {
			continue
		}
		after := lookupAll(t, r, h.Hostnames)
		for j, hn := range h.Hostnames {
			if before[j] != after[j] && !slices.Contains(res.Hostnames, hn) {
				t.Fatalf("%s: lookup of %s changed from %s to %s, but ApplyResult.Hostnames = %v", what(), hn, before[j], after[j], res.Hostnames)
			}
		}
		before = after
	}
}

// answer is what a lookup returned: a tenant at a version, or NotFound.
type answer struct {
	id      string
	version int64
}

func (a answer) String() string {
	if a.id == "" {
		return "NotFound"
	}
	return fmt.Sprintf("%s@%d", a.id, a.version)
}

// lookupAll looks every hostname up.
func lookupAll(t *rapid.T, r tcs.Replica, hostnames []string) []answer {
	t.Helper()
	out := make([]answer, len(hostnames))
	for i, h := range hostnames {
		got, err := r.LookupHostname(context.Background(), h)
		switch {
		case tenant.ErrorCode(err) == tenant.NotFound:
		case err != nil:
			t.Fatalf("LookupHostname(%s): %v", h, err)
		default:
			out[i] = answer{got.ID, got.Version}
		}
	}
	return out
}

// Truth is what a replica that converged on a history must answer, read
// from the source of truth after the history.
type Truth struct {
	// Docs holds, for each tenant id of the history, the source's current
	// document, or its tombstone (version and all) if it was deleted; nil if
	// the id was never created.
	Docs map[string]*tenant.Tenant
	// Lookups holds, for each hostname of the history, the tenant the
	// source's LookupHostname returns, or nil where it returns NotFound.
	Lookups map[string]*tenant.Tenant
}

// ReadTruth reads from src what a replica must answer for the ids and
// hostnames of h.
func ReadTruth(t rapid.TB, src catalog.Store, h History) Truth {
	t.Helper()
	ctx := context.Background()
	want := Truth{Docs: map[string]*tenant.Tenant{}, Lookups: map[string]*tenant.Tenant{}}
	for _, id := range h.IDs {
		want.Docs[id] = sourceDoc(t, src, id)
	}
	for _, hn := range h.Hostnames {
		got, err := src.LookupHostname(ctx, hn)
		if err != nil && tenant.ErrorCode(err) != tenant.NotFound {
			t.Fatalf("source LookupHostname(%s): %v", hn, err)
		}
		want.Lookups[hn] = got
	}
	return want
}

// CheckConverged fails t unless r answers as want says: GetTenant returns
// each document (tombstones included) or NotFound for an id never created;
// LookupHostname returns each tenant, document and all, or NotFound.
func CheckConverged(t rapid.TB, r tcs.Replica, want Truth) {
	t.Helper()
	ctx := context.Background()
	for _, id := range slices.Sorted(maps.Keys(want.Docs)) {
		w := want.Docs[id]
		got, err := r.GetTenant(ctx, id)
		switch {
		case w == nil && tenant.ErrorCode(err) == tenant.NotFound:
		case w == nil:
			t.Fatalf("GetTenant(%s) = %s, %v; the source never had it", id, describe(got), err)
		case err != nil:
			t.Fatalf("GetTenant(%s): %v; the source has %s", id, err, describe(w))
		case !tenant.Equal(w, got):
			t.Fatalf("GetTenant(%s): replica has %s, source %s (-source +replica):\n%s", id, describe(got), describe(w), cmp.Diff(w, got, equateEmpty))
		}
	}
	for _, hn := range slices.Sorted(maps.Keys(want.Lookups)) {
		w := want.Lookups[hn]
		got, err := r.LookupHostname(ctx, hn)
		switch {
		case w == nil && tenant.ErrorCode(err) == tenant.NotFound:
		case w == nil:
			t.Fatalf("LookupHostname(%s) = %s, %v; the source has no tenant for it", hn, describe(got), err)
		case err != nil:
			t.Fatalf("LookupHostname(%s): %v; the source has %s", hn, err, describe(w))
		case !tenant.Equal(w, got):
			t.Fatalf("LookupHostname(%s): replica has %s, source %s (-source +replica):\n%s", hn, describe(got), describe(w), cmp.Diff(w, got, equateEmpty))
		}
	}
}

// sourceDoc returns the source's current document of id: the live one, the
// tombstone if it was deleted, or nil if it never existed.
func sourceDoc(t rapid.TB, src catalog.Store, id string) *tenant.Tenant {
	t.Helper()
	ctx := context.Background()
	live, err := src.Get(ctx, id)
	if err == nil {
		return live
	}
	if tenant.ErrorCode(err) != tenant.NotFound {
		t.Fatalf("source Get(%s): %v", id, err)
	}
	recs, err := src.History(ctx, id, catalog.HistoryOptions{Limit: 1})
	if tenant.ErrorCode(err) == tenant.NotFound {
		return nil
	}
	if err != nil || len(recs) != 1 || !recs[0].After.Deleted() {
		t.Fatalf("source History(%s) = %+v, %v; want its tombstone", id, recs, err)
	}
	return recs[0].After
}

func describeEvent(ev *tenant.ChangeEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%d", ev.TenantID, ev.Version)
	if ev.Resync {
		b.WriteString(" resync")
	}
	if ev.Tombstone() {
		b.WriteString(" deleted")
	}
	for _, c := range ev.Claims {
		fmt.Fprintf(&b, " +%s:%d", c.Hostname, c.Version)
	}
	for _, c := range ev.Released {
		fmt.Fprintf(&b, " -%s:%d", c.Hostname, c.Version)
	}
	return b.String()
}

func describeEvents(evs []*tenant.ChangeEvent) string {
	var b strings.Builder
	for i, ev := range evs {
		fmt.Fprintf(&b, "  %d: %s\n", i, describeEvent(ev))
	}
	return b.String()
}
