package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// adminTests are the contract tests of Resync and Export; Run runs them.
var adminTests = []struct {
	name string
	test func(t *testing.T, s catalog.Store)
}{
	{"ResyncEmitsCurrentState", testResyncCurrentState},
	{"ResyncTombstone", testResyncTombstone},
	{"ResyncExtraHostnames", testResyncExtraHostnames},
	{"ResyncRegions", testResyncRegions},
	{"ResyncMergesDuplicates", testResyncDuplicates},
	{"ResyncRejectsMalformed", testResyncMalformed},
	{"ResyncMany", testResyncMany},
	{"ResyncWhileWriting", testResyncWhileWriting},
	{"ResyncAllPages", testResyncAllPages},
	{"ResyncAllEmpty", testResyncAllEmpty},
	{"ResyncAllRejectsMalformed", testResyncAllMalformed},
	{"ExportPages", testExportPages},
	{"ExportEmpty", testExportEmpty},
	{"ExportWhileWriting", testExportWhileWriting},
}

func mustResync(t tb, s catalog.Store, reqs []catalog.ResyncRequest, regions ...string) catalog.ResyncResult {
	t.Helper()
	res, err := s.Resync(context.Background(), reqs, regions)
	if err != nil {
		t.Fatalf("Resync(%v, %v): %v", reqs, regions, err)
	}
	return res
}

func ids(ids ...string) []catalog.ResyncRequest {
	out := make([]catalog.ResyncRequest, len(ids))
	for i, id := range ids {
		out[i] = catalog.ResyncRequest{ID: id}
	}
	return out
}

// eventOf returns the ordinary (not resync) event of id at version.
func eventOf(t tb, entries []catalog.OutboxEntry, id string, version int64) tenant.ChangeEvent {
	t.Helper()
	for _, e := range entries {
		if e.Event.TenantID == id && e.Event.Version == version && !e.Event.Resync {
			return e.Event
		}
	}
	t.Fatalf("no event of %s@%d in the outbox", id, version)
	return tenant.ChangeEvent{}
}

// checkResyncEvent checks that ev re-emits doc exactly as the ordinary
// event of its version did (claims included), marked Resync.
func checkResyncEvent(t tb, entries []catalog.OutboxEntry, ev tenant.ChangeEvent, doc *tenant.Tenant) {
	t.Helper()
	if !ev.Resync {
		t.Fatalf("event %s@%d is not marked Resync", ev.TenantID, ev.Version)
	}
	if ev.Tombstone() {
		if ev.TenantID != doc.ID || ev.Version != doc.Version {
			t.Fatalf("event is %s@%d, want %s@%d", ev.TenantID, ev.Version, doc.ID, doc.Version)
		}
		wantSame(t, "resync event tombstone", doc, ev.Tenant)
		if len(ev.Claims) != 0 {
			t.Fatalf("resync of a tombstone claims %v", ev.Claims)
		}
	} else {
		checkEvent(t, ev, doc)
	}
	orig := eventOf(t, entries, doc.ID, doc.Version)
	wantSame(t, "claims of the resync event and of the event of its version", orig.Claims, ev.Claims)
}

func testResyncCurrentState(t *testing.T, s catalog.Store) {
	a := mustCreate(t, s, NewTenant("acme", "acme.example.com", "www.acme.example.com"))
	next := a.Clone()
	next.Labels = map[string]string{"tier": "gold"}
	next.Hostnames = []string{"acme.example.com", "new.acme.example.com"}
	a = mustUpdate(t, s, next, a.Version)
	b := mustCreate(t, s, NewTenant("beta"))
	before := readOutbox(t, s)
	histA, histB := history(t, s, "acme"), history(t, s, "beta")

	res := mustResync(t, s, ids("beta", "ghost", "acme", "nobody-else"))
	wantSame(t, "Resync result", catalog.ResyncResult{
		Resynced: []catalog.ResyncedTenant{{ID: "beta", Version: 1}, {ID: "acme", Version: 2}},
		NotFound: []string{"ghost", "nobody-else"},
	}, res)

	all := readOutbox(t, s)
	if len(all) != len(before)+2 {
		t.Fatalf("outbox grew by %d entries, want 2 (one per tenant found)", len(all)-len(before))
	}
	wantSame(t, "outbox entries before the resync", before, all[:len(before)])
	added := all[len(before):]
	for i, e := range added {
		if e.Seq <= all[len(before)+i-1].Seq {
			t.Fatalf("resync entry sequence %d is not above %d", e.Seq, all[len(before)+i-1].Seq)
		}
		if e.Event.Released != nil || e.Event.Regions != nil {
			t.Fatalf("resync event %s has releases %v, regions %v; want none", e.Event.TenantID, e.Event.Released, e.Event.Regions)
		}
		if e.Event.CommittedAt.IsZero() {
			t.Fatalf("resync event %s has no CommittedAt", e.Event.TenantID)
		}
	}
	got := map[string]tenant.ChangeEvent{added[0].Event.TenantID: added[0].Event, added[1].Event.TenantID: added[1].Event}
	checkResyncEvent(t, all, got["acme"], a)
	checkResyncEvent(t, all, got["beta"], b)

	// Nothing moved: versions, documents and history are as they were.
	wantSame(t, "acme after resync", a, mustGet(t, s, "acme"))
	wantSame(t, "beta after resync", b, mustGet(t, s, "beta"))
	wantSame(t, "acme's history after resync", histA, history(t, s, "acme"))
	wantSame(t, "beta's history after resync", histB, history(t, s, "beta"))

	// The next write continues the version sequence as if no resync happened.
	next = a.Clone()
	next.Region = "eu-west-1"
	if got := mustUpdate(t, s, next, 2); got.Version != 3 {
		t.Fatalf("update after resync at version %d, want 3", got.Version)
	}
}

func testResyncTombstone(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	mustCreate(t, s, NewTenant("gone", "gone.example.com"))
	tomb, err := s.Delete(ctx, "gone", 0, actor)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	res := mustResync(t, s, ids("gone"))
	wantSame(t, "Resync result", catalog.ResyncResult{Resynced: []catalog.ResyncedTenant{{ID: "gone", Version: tomb.Version}}}, res)
	all := readOutbox(t, s)
	ev := all[len(all)-1].Event
	if !ev.Tombstone() {
		t.Fatalf("resync of a deleted tenant emitted %s@%d with status %v, want its tombstone", ev.TenantID, ev.Version, ev.Tenant.Status)
	}
	checkResyncEvent(t, all, ev, tomb)
	if _, err := s.Get(ctx, "gone"); tenant.ErrorCode(err) != tenant.NotFound {
		t.Fatalf("Get after resync of a tombstone: %v, want NotFound", err)
	}
}

func testResyncExtraHostnames(t *testing.T, s catalog.Store) {
	// acme held old and taken; it dropped both; beta then took taken.
	a := mustCreate(t, s, NewTenant("acme", "acme.example.com", "old.example.com", "taken.example.com"))
	next := a.Clone()
	next.Hostnames = []string{"acme.example.com"}
	a = mustUpdate(t, s, next, a.Version)
	released := claimMap(t, "released", lastEvent(t, s).Released)
	b := mustCreate(t, s, NewTenant("beta", "beta.example.com", "taken.example.com"))
	_ = b

	res := mustResync(t, s, []catalog.ResyncRequest{{ID: "acme", Hostnames: []string{
		"acme.example.com",    // held: claimed anyway
		"old.example.com",     // free: released at its current claim version
		"taken.example.com",   // beta's: left to beta's resync
		"never.example.com",   // never seen: ignored
		"beta.example.com",    // beta's
		"old.example.com",     // listed twice
		"xn--bcher-kva.com",   // never seen
		"zz-last.example.com", // never seen
	}}})
	wantSame(t, "Resync result", catalog.ResyncResult{Resynced: []catalog.ResyncedTenant{{ID: "acme", Version: a.Version}}}, res)
	all := readOutbox(t, s)
	ev := all[len(all)-1].Event
	checkResyncEvent(t, all, ev, a)
	wantSame(t, "released hostnames of the resync",
		[]tenant.Claim{{Hostname: "old.example.com", Version: released["old.example.com"]}}, ev.Released)

	// A tombstone settles the hostnames it released too.
	tomb, err := s.Delete(t.Context(), "acme", 0, actor)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	dropped := claimMap(t, "released", lastEvent(t, s).Released)
	mustResync(t, s, []catalog.ResyncRequest{{ID: "acme", Hostnames: []string{"acme.example.com", "old.example.com", "taken.example.com"}}})
	all = readOutbox(t, s)
	ev = all[len(all)-1].Event
	checkResyncEvent(t, all, ev, tomb)
	wantSame(t, "released hostnames of the tombstone's resync", []tenant.Claim{
		{Hostname: "acme.example.com", Version: dropped["acme.example.com"]},
		{Hostname: "old.example.com", Version: released["old.example.com"]},
	}, ev.Released)
}

func testResyncRegions(t *testing.T, s catalog.Store) {
	mustCreate(t, s, NewTenant("acme"))
	mustResync(t, s, ids("acme"), "us-east-1", "eu-west-1", "us-east-1")
	ev := lastEvent(t, s)
	got := slices.Sorted(slices.Values(ev.Regions))
	wantSame(t, "regions of the resync event", []string{"eu-west-1", "us-east-1"}, slices.Compact(got))
	mustResync(t, s, ids("acme"))
	if ev := lastEvent(t, s); len(ev.Regions) != 0 {
		t.Fatalf("resync without regions targets %v, want every region (none listed)", ev.Regions)
	}
}

func testResyncDuplicates(t *testing.T, s catalog.Store) {
	a := mustCreate(t, s, NewTenant("acme", "acme.example.com", "old.example.com"))
	next := a.Clone()
	next.Hostnames = []string{"acme.example.com"}
	a = mustUpdate(t, s, next, a.Version)
	n := len(readOutbox(t, s))
	res := mustResync(t, s, []catalog.ResyncRequest{{ID: "acme"}, {ID: "ghost"}, {ID: "acme", Hostnames: []string{"old.example.com"}}, {ID: "ghost"}})
	wantSame(t, "Resync result", catalog.ResyncResult{
		Resynced: []catalog.ResyncedTenant{{ID: "acme", Version: a.Version}},
		NotFound: []string{"ghost"},
	}, res)
	all := readOutbox(t, s)
	if len(all) != n+1 {
		t.Fatalf("outbox grew by %d, want 1 entry for a tenant named twice", len(all)-n)
	}
	if ev := all[n].Event; len(ev.Released) != 1 || ev.Released[0].Hostname != "old.example.com" {
		t.Fatalf("merged resync released %v, want old.example.com", ev.Released)
	}
}

func testResyncMalformed(t *testing.T, s catalog.Store) {
	mustCreate(t, s, NewTenant("acme"))
	before := readOutbox(t, s)
	many := make([]catalog.ResyncRequest, catalog.MaxResyncTenants+1)
	for i := range many {
		many[i] = catalog.ResyncRequest{ID: fmt.Sprintf("t-%05d", i)}
	}
	tests := []struct {
		name    string
		reqs    []catalog.ResyncRequest
		regions []string
		field   string
	}{
		{"no tenants", nil, nil, "tenants"},
		{"too many tenants", many, nil, "tenants"},
		{"bad id", []catalog.ResyncRequest{{ID: "acme"}, {ID: "Bad_ID"}}, nil, "tenants[1].id"},
		{"bad hostname", []catalog.ResyncRequest{{ID: "acme", Hostnames: []string{"ok.example.com", "bad_host"}}}, nil, "tenants[0].hostnames[1]"},
		{"hostname not normalised", []catalog.ResyncRequest{{ID: "acme", Hostnames: []string{"UPPER.example.com"}}}, nil, "tenants[0].hostnames[0]"},
		{"bad region", ids("acme"), []string{"us-east-1", "US_EAST"}, "regions[1]"},
		{"empty region", ids("acme"), []string{""}, "regions[0]"},
	}
	for _, tc := range tests {
		_, err := s.Resync(t.Context(), tc.reqs, tc.regions)
		wantCode(t, err, tenant.Invalid)
		var fields []string
		for _, f := range tenant.ErrorFields(err) {
			fields = append(fields, f.Field)
		}
		if !slices.Contains(fields, tc.field) {
			t.Errorf("%s: error names %v, want %s (%v)", tc.name, fields, tc.field, err)
		}
	}
	wantSame(t, "outbox after rejected resyncs", before, readOutbox(t, s))
}

// testResyncMany resyncs more tenants than one DynamoDB transaction holds.
func testResyncMany(t *testing.T, s catalog.Store) {
	const n = 130
	var reqs []catalog.ResyncRequest
	var want catalog.ResyncResult
	docs := map[string]*tenant.Tenant{}
	for i := range n {
		id := fmt.Sprintf("t-%03d", i)
		if i%10 == 3 {
			want.NotFound = append(want.NotFound, id)
		} else {
			docs[id] = mustCreate(t, s, NewTenant(id))
			want.Resynced = append(want.Resynced, catalog.ResyncedTenant{ID: id, Version: 1})
		}
		reqs = append(reqs, catalog.ResyncRequest{ID: id})
	}
	slices.Reverse(reqs)
	slices.Reverse(want.Resynced)
	slices.Reverse(want.NotFound)
	before := len(readOutbox(t, s))
	wantSame(t, "Resync result", want, mustResync(t, s, reqs))
	all := readOutbox(t, s)
	added := all[before:]
	if len(added) != len(docs) {
		t.Fatalf("outbox grew by %d, want %d", len(added), len(docs))
	}
	// Each shard holds its tenants' entries in request order.
	wantOrder, gotOrder := map[int][]string{}, map[int][]string{}
	for _, r := range want.Resynced {
		sh := catalog.OutboxShard(r.ID, s.OutboxShards())
		wantOrder[sh] = append(wantOrder[sh], r.ID)
	}
	for _, e := range added {
		gotOrder[e.Shard] = append(gotOrder[e.Shard], e.Event.TenantID)
		checkResyncEvent(t, all, e.Event, docs[e.Event.TenantID])
	}
	wantSame(t, "resync entries of each shard (request order)", wantOrder, gotOrder)
}

// churn moves hostnames between two tenants until stop is closed, so that
// a reader racing with it sees tenants mid-move.
func churn(t *testing.T, s catalog.Store, stop <-chan struct{}) (wait func()) {
	t.Helper()
	const shared = "shared.example.com"
	mustCreate(t, s, NewTenant("mover-a", "a.example.com", shared))
	mustCreate(t, s, NewTenant("mover-b", "b.example.com"))
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Go(func() {
		ctx := context.Background()
		from, to := "mover-a", "mover-b"
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, step := range []struct {
				id    string
				hosts []string
			}{
				{from, []string{strings.TrimPrefix(from, "mover-") + ".example.com"}},
				{to, []string{strings.TrimPrefix(to, "mover-") + ".example.com", shared}},
			} {
				cur, err := s.Get(ctx, step.id)
				if err == nil {
					next := cur.Clone()
					next.Hostnames = step.hosts
					_, err = s.Update(ctx, next, cur.Version, actor)
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("churn %s: %w", step.id, err):
					default:
					}
					return
				}
			}
			from, to = to, from
		}
	})
	return func() {
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
}

// testResyncWhileWriting resyncs tenants whose hostnames move between them
// meanwhile: every resync event must still be a state the tenant had, with
// the claims of that state.
func testResyncWhileWriting(t *testing.T, s catalog.Store) {
	stop := make(chan struct{})
	wait := churn(t, s, stop)
	deadline := time.Now().Add(time.Second)
	rounds := 0
	for ; rounds < 5 || time.Now().Before(deadline); rounds++ {
		mustResync(t, s, ids("mover-a", "mover-b"))
	}
	close(stop)
	wait()
	all := readOutbox(t, s)
	n := 0
	for _, e := range all {
		if !e.Event.Resync {
			continue
		}
		n++
		orig := eventOf(t, all, e.Event.TenantID, e.Event.Version)
		eventClaims(t, e.Event)
		wantSame(t, fmt.Sprintf("resync event %s@%d", e.Event.TenantID, e.Event.Version), orig.Tenant, e.Event.Tenant)
		wantSame(t, fmt.Sprintf("claims of resync event %s@%d", e.Event.TenantID, e.Event.Version), orig.Claims, e.Event.Claims)
	}
	if n != 2*rounds {
		t.Fatalf("%d resync events for %d rounds of 2 tenants", n, rounds)
	}
}

func exportAll(t tb, s catalog.Store, limit int) (items []catalog.ExportItem, pages int) {
	t.Helper()
	after := ""
	for {
		page, err := s.Export(context.Background(), catalog.ListOptions{After: after, Limit: limit})
		if err != nil {
			t.Fatalf("Export(after %q, %d): %v", after, limit, err)
		}
		pages++
		items = append(items, page.Items...)
		if page.Next == "" {
			return items, pages
		}
		if len(page.Items) == 0 || page.Next != page.Items[len(page.Items)-1].Tenant.ID {
			t.Fatalf("Export page of %d items has Next %q, want its last id", len(page.Items), page.Next)
		}
		after = page.Next
	}
}

func testExportPages(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	want := map[string]*tenant.Tenant{}
	for _, id := range []string{"t-4", "t-1", "t-3", "t-5", "t-2"} {
		want[id] = mustCreate(t, s, NewTenant(id, id+".example.com", "www."+id+".example.com"))
	}
	tomb, err := s.Delete(ctx, "t-3", 0, actor)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want["t-3"] = tomb
	next := want["t-2"].Clone()
	next.Hostnames = []string{"t-2.example.com", "t-3.example.com"} // takes a released hostname
	want["t-2"] = mustUpdate(t, s, next, 1)
	all := readOutbox(t, s)

	for _, limit := range []int{0, 1, 2, 5, 6, catalog.MaxExportPageSize + 1} {
		items, pages := exportAll(t, s, limit)
		var gotIDs []string
		for _, it := range items {
			gotIDs = append(gotIDs, it.Tenant.ID)
			w := want[it.Tenant.ID]
			wantSame(t, "exported "+it.Tenant.ID, w, it.Tenant)
			wantSame(t, "claims of exported "+it.Tenant.ID, eventOf(t, all, w.ID, w.Version).Claims, it.Claims)
		}
		wantSame(t, fmt.Sprintf("exported ids with page size %d", limit), pageOrder(s, []string{"t-1", "t-2", "t-3", "t-4", "t-5"}), gotIDs)
		wantPages := 1
		if limit > 0 && limit < 5 {
			wantPages = (5 + limit - 1) / limit
		}
		if pages != wantPages {
			t.Errorf("page size %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	// After need not name a tenant.
	rest := following(s, pageOrder(s, []string{"t-1", "t-2", "t-3", "t-4", "t-5"}), "t-25")
	wantIDs, wantNext := rest[:min(2, len(rest))], ""
	if len(rest) > 2 {
		wantNext = rest[1]
	}
	page, err := s.Export(ctx, catalog.ListOptions{After: "t-25", Limit: 2})
	var gotIDs []string
	for _, it := range page.Items {
		gotIDs = append(gotIDs, it.Tenant.ID)
	}
	if err != nil || !slices.Equal(gotIDs, wantIDs) || page.Next != wantNext {
		t.Fatalf("Export(after t-25, 2) = %v next %q, %v; want %v next %q", gotIDs, page.Next, err, wantIDs, wantNext)
	}
}

func testExportEmpty(t *testing.T, s catalog.Store) {
	page, err := s.Export(t.Context(), catalog.ListOptions{})
	if err != nil || len(page.Items) != 0 || page.Next != "" {
		t.Fatalf("Export of an empty store = %+v, %v; want no items, no next page", page, err)
	}
}

// testExportWhileWriting exports tenants whose hostnames move between them
// meanwhile: every item must be a state its tenant had, with its claims.
func testExportWhileWriting(t *testing.T, s catalog.Store) {
	stop := make(chan struct{})
	wait := churn(t, s, stop)
	deadline := time.Now().Add(time.Second)
	var seen []catalog.ExportItem
	for rounds := 0; rounds < 5 || time.Now().Before(deadline); rounds++ {
		items, _ := exportAll(t, s, 1)
		if len(items) != 2 {
			t.Fatalf("export has %d tenants, want 2", len(items))
		}
		seen = append(seen, items...)
	}
	close(stop)
	wait()
	all := readOutbox(t, s)
	for _, it := range seen {
		orig := eventOf(t, all, it.Tenant.ID, it.Tenant.Version)
		wantSame(t, fmt.Sprintf("exported %s@%d", it.Tenant.ID, it.Tenant.Version), orig.Tenant, it.Tenant)
		wantSame(t, fmt.Sprintf("claims of exported %s@%d", it.Tenant.ID, it.Tenant.Version), orig.Claims, it.Claims)
	}
}

// testResyncAllPages: ResyncAll from "" until next is "" resyncs every
// stored tenant once, tombstones included, in page order, each event as
// Resync would emit it, with the regions asked for.
func testResyncAllPages(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	want := map[string]*tenant.Tenant{}
	for _, id := range []string{"t-4", "t-1", "t-3", "t-5", "t-2"} {
		want[id] = mustCreate(t, s, NewTenant(id, id+".example.com", "www."+id+".example.com"))
	}
	tomb, err := s.Delete(ctx, "t-3", 0, actor)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want["t-3"] = tomb
	next := want["t-2"].Clone()
	next.Hostnames = []string{"t-2.example.com", "t-3.example.com"} // takes a released hostname
	want["t-2"] = mustUpdate(t, s, next, 1)

	for _, limit := range []int{0, 1, 2, 5, 6, catalog.MaxResyncTenants + 1} {
		before := len(readOutbox(t, s))
		var got []catalog.ResyncedTenant
		after, calls := "", 0
		for {
			res, next, err := s.ResyncAll(ctx, after, limit, []string{"us-east-1"})
			if err != nil {
				t.Fatalf("ResyncAll(%q, %d): %v", after, limit, err)
			}
			calls++
			if len(res.NotFound) != 0 {
				t.Fatalf("ResyncAll reported not found: %v", res.NotFound)
			}
			got = append(got, res.Resynced...)
			if next == "" {
				break
			}
			if len(res.Resynced) == 0 || next != res.Resynced[len(res.Resynced)-1].ID {
				t.Fatalf("ResyncAll(%q, %d): next %q is not the last id of %v", after, limit, next, res.Resynced)
			}
			after = next
			if calls > 10 {
				t.Fatalf("ResyncAll with limit %d does not end", limit)
			}
		}
		var wantRes []catalog.ResyncedTenant
		for _, id := range pageOrder(s, []string{"t-1", "t-2", "t-3", "t-4", "t-5"}) {
			wantRes = append(wantRes, catalog.ResyncedTenant{ID: id, Version: want[id].Version})
		}
		wantSame(t, fmt.Sprintf("resynced with page size %d", limit), wantRes, got)
		all := readOutbox(t, s)
		if len(all)-before != 5 {
			t.Fatalf("page size %d: outbox grew by %d, want 5", limit, len(all)-before)
		}
		// Entries of one transaction share a commit time: the outbox
		// has no order between tenants of different shards.
		events := map[string]bool{}
		for _, e := range all[before:] {
			ev := e.Event
			if _, ok := want[ev.TenantID]; !ok || events[ev.TenantID] {
				t.Fatalf("page size %d: unexpected or repeated event of %s", limit, ev.TenantID)
			}
			events[ev.TenantID] = true
			checkResyncEvent(t, all, ev, want[ev.TenantID])
			wantSame(t, "regions of "+ev.TenantID, []string{"us-east-1"}, ev.Regions)
			if len(ev.Released) != 0 {
				t.Fatalf("ResyncAll event of %s releases %v", ev.TenantID, ev.Released)
			}
		}
	}
	rest := following(s, pageOrder(s, []string{"t-1", "t-2", "t-3", "t-4", "t-5"}), "t-25")
	wantIDs, wantNext := rest[:min(2, len(rest))], ""
	if len(rest) > 2 {
		wantNext = rest[1]
	}
	res, cursor, err := s.ResyncAll(ctx, "t-25", 2, nil)
	var gotIDs []string
	for _, r := range res.Resynced {
		gotIDs = append(gotIDs, r.ID)
	}
	if err != nil || !slices.Equal(gotIDs, wantIDs) || cursor != wantNext {
		t.Fatalf("ResyncAll(after t-25, 2) = %v next %q, %v; want %v next %q", gotIDs, cursor, err, wantIDs, wantNext)
	}
	if ev := lastEvent(t, s); len(rest) > 0 && len(ev.Regions) != 0 {
		t.Fatalf("ResyncAll without regions targets %v, want every region (none listed)", ev.Regions)
	}
}

func testResyncAllEmpty(t *testing.T, s catalog.Store) {
	res, next, err := s.ResyncAll(t.Context(), "", 0, nil)
	if err != nil || len(res.Resynced) != 0 || next != "" {
		t.Fatalf("ResyncAll of an empty store = %+v, %q, %v; want nothing, no next", res, next, err)
	}
	mustCreate(t, s, NewTenant("acme"))
	res, next, err = s.ResyncAll(t.Context(), "acme", 0, nil)
	if err != nil || len(res.Resynced) != 0 || next != "" {
		t.Fatalf("ResyncAll after the last id = %+v, %q, %v; want nothing, no next", res, next, err)
	}
}

func testResyncAllMalformed(t *testing.T, s catalog.Store) {
	mustCreate(t, s, NewTenant("acme"))
	before := readOutbox(t, s)
	tests := []struct {
		name, after string
		regions     []string
		field       string
	}{
		{"bad cursor", "Not An Id", nil, "page_token"},
		{"bad region", "", []string{"us-east-1", "Mars!"}, "regions[1]"},
	}
	for _, tc := range tests {
		_, _, err := s.ResyncAll(t.Context(), tc.after, 0, tc.regions)
		if tenant.ErrorCode(err) != tenant.Invalid {
			t.Fatalf("%s: ResyncAll = %v, want Invalid", tc.name, err)
		}
		if fs := tenant.ErrorFields(err); len(fs) != 1 || fs[0].Field != tc.field {
			t.Fatalf("%s: fields %v, want one naming %s", tc.name, fs, tc.field)
		}
	}
	if after := readOutbox(t, s); len(after) != len(before) {
		t.Fatalf("a rejected ResyncAll wrote %d outbox entries", len(after)-len(before))
	}
}
