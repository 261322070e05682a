package drift

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// fakeTruth is an in-memory source of truth; onPass runs at the start of
// every full read (the first page), so a test can change the world between
// a pass's truth snapshot and its region scan, or between passes.
type fakeTruth struct {
	mu     sync.Mutex
	items  map[string]catalog.ExportItem
	passes int
	onPass func(pass int)
}

func (f *fakeTruth) Export(_ context.Context, token string, size int) (catalog.ExportPage, error) {
	if token == "" {
		f.passes++
		if f.onPass != nil {
			f.onPass(f.passes)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.items {
		if id > token {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var p catalog.ExportPage
	for _, id := range ids {
		if len(p.Items) == size {
			p.Next = p.Items[len(p.Items)-1].Tenant.ID
			break
		}
		p.Items = append(p.Items, f.items[id])
	}
	return p, nil
}

// fakeRegion is an in-memory replica scan, one record per page so that
// paging is exercised.
type fakeRegion struct {
	mu    sync.Mutex
	docs  map[string]*tenant.Tenant
	hosts map[string]tcs.HostRecord
}

func (f *fakeRegion) ScanDocs(_ context.Context, cursor string, _ int) ([]*tenant.Tenant, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := keyAfter(f.docs, cursor)
	if !ok {
		return nil, "", nil
	}
	return []*tenant.Tenant{f.docs[id].Clone()}, id, nil
}

func (f *fakeRegion) ScanHosts(_ context.Context, cursor string, _ int) ([]tcs.HostEntry, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := keyAfter(f.hosts, cursor)
	if !ok {
		return nil, "", nil
	}
	return []tcs.HostEntry{{Hostname: h, HostRecord: f.hosts[h]}}, h, nil
}

// keyAfter returns the smallest key of m above cursor: the fake scans serve
// one entry a page, in key order.
func keyAfter[V any](m map[string]V, cursor string) (string, bool) {
	next, ok := "", false
	for k := range m {
		if k > cursor && (!ok || k < next) {
			next, ok = k, true
		}
	}
	return next, ok
}

func doc(id string, v int64, label string) *tenant.Tenant {
	return &tenant.Tenant{ID: id, Hostnames: []string{id + ".example.com"}, Status: tenant.StatusActive, Version: v,
		Labels: map[string]string{"l": label}, UpdatedAt: time.Unix(v, 0).UTC()}
}

// world is a truth and one region agreeing on tenants xxx and yyy.
func world() (*fakeTruth, *fakeRegion) {
	tr := &fakeTruth{items: map[string]catalog.ExportItem{}}
	rg := &fakeRegion{docs: map[string]*tenant.Tenant{}, hosts: map[string]tcs.HostRecord{}}
	for _, id := range []string{"xxx", "yyy"} {
		d := doc(id, 2, "a")
		tr.items[id] = catalog.ExportItem{Tenant: d, Claims: []tenant.Claim{{Hostname: id + ".example.com", Version: 1}}}
		rg.docs[id] = d.Clone()
		rg.hosts[id+".example.com"] = tcs.HostRecord{TenantID: id, ClaimVersion: 1}
	}
	return tr, rg
}

// set moves tenant id to version v in the truth or the region.
func (f *fakeTruth) set(id string, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.items[id]
	it.Tenant = doc(id, v, "a")
	f.items[id] = it
}

func (f *fakeRegion) set(id string, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[id] = doc(id, v, "a")
}

func findingKeys(fs []Finding) []string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s %s %s", f.Region, f.Kind, dash(f.TenantID), dash(f.Hostname)))
	}
	sort.Strings(out)
	return out
}

// TestVerifyRechecks: what a write in flight looks like is not drift;
// what stays is.
func TestVerifyRechecks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// onPass changes the world at the start of each pass's truth read.
		onPass        func(tr *fakeTruth, rg *fakeRegion, pass int)
		want          []string
		wantUnsettled []string
	}{
		{"clean", func(*fakeTruth, *fakeRegion, int) {}, nil, nil},
		{"replication lag, caught up by the re-check", func(tr *fakeTruth, rg *fakeRegion, pass int) {
			if pass == 1 {
				tr.set("xxx", 3) // committed; the region has not applied it yet
			} else {
				rg.set("xxx", 3)
			}
		}, nil, nil},
		{"written during the scan: the region is ahead of the snapshot", func(tr *fakeTruth, rg *fakeRegion, pass int) {
			if pass == 1 {
				rg.set("xxx", 3) // applied after the truth was read
			}
			if pass == 2 {
				tr.set("xxx", 3)
			}
		}, nil, nil},
		{"lost write stays: reported", func(tr *fakeTruth, rg *fakeRegion, pass int) {
			if pass == 1 {
				tr.set("xxx", 3)
			}
		}, []string{"r1 stale_version xxx -"}, nil},
		{"keeps moving through every re-check: not judged", func(tr *fakeTruth, rg *fakeRegion, pass int) {
			tr.set("xxx", int64(2+pass))
			rg.set("xxx", int64(1+pass))
		}, nil, []string{"xxx"}},
		{"moved once, then found stale again: reported", func(tr *fakeTruth, rg *fakeRegion, pass int) {
			if pass <= 2 {
				tr.set("xxx", int64(2+pass))
			}
		}, []string{"r1 stale_version xxx -"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr, rg := world()
			tr.onPass = func(pass int) { tc.onPass(tr, rg, pass) }
			v := &Verifier{Truth: tr, Regions: []Region{{Name: "r1", Scanner: rg}}, PageSize: 1, Rechecks: 3}
			rep, err := v.Verify(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, findingKeys(rep.Findings)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantUnsettled, rep.Unsettled); diff != "" {
				t.Errorf("unsettled (-want +got):\n%s", diff)
			}
			if rep.Clean != (len(tc.want) == 0) {
				t.Errorf("clean = %v", rep.Clean)
			}
		})
	}
}

// TestVerifyKinds: each kind of drift, made in a region of its own, is
// found as that kind and nothing else, with the fields repair reads.
func TestVerifyKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(rg *fakeRegion)
		want   Finding
	}{
		{"missing tenant", func(rg *fakeRegion) { delete(rg.docs, "xxx") },
			Finding{Kind: MissingTenant, TenantID: "xxx", TruthVersion: 2}},
		{"stale version", func(rg *fakeRegion) { rg.docs["xxx"] = doc("xxx", 1, "a") },
			Finding{Kind: StaleVersion, TenantID: "xxx", TruthVersion: 2, RegionVersion: 1}},
		{"ahead version", func(rg *fakeRegion) { rg.docs["xxx"] = doc("xxx", 5, "a") },
			Finding{Kind: AheadVersion, TenantID: "xxx", TruthVersion: 2, RegionVersion: 5}},
		{"content mismatch", func(rg *fakeRegion) { rg.docs["xxx"] = doc("xxx", 2, "b") },
			Finding{Kind: ContentMismatch, TenantID: "xxx", TruthVersion: 2, RegionVersion: 2, Fields: []string{"labels"}}},
		{"unknown tenant", func(rg *fakeRegion) { rg.docs["zzz"] = doc("zzz", 1, "a") },
			Finding{Kind: UnknownTenant, TenantID: "zzz", RegionVersion: 1}},
		{"unmapped hostname", func(rg *fakeRegion) { delete(rg.hosts, "xxx.example.com") },
			Finding{Kind: UnmappedHostname, TenantID: "xxx", Hostname: "xxx.example.com", TruthOwner: "xxx", TruthClaim: 1}},
		{"released in the region", func(rg *fakeRegion) { rg.hosts["xxx.example.com"] = tcs.HostRecord{ClaimVersion: 1} },
			Finding{Kind: UnmappedHostname, TenantID: "xxx", Hostname: "xxx.example.com", TruthOwner: "xxx", TruthClaim: 1, RegionClaim: 1}},
		{"wrong owner", func(rg *fakeRegion) { rg.hosts["xxx.example.com"] = tcs.HostRecord{TenantID: "yyy", ClaimVersion: 1} },
			Finding{Kind: WrongOwner, TenantID: "xxx", Hostname: "xxx.example.com", TruthOwner: "xxx", RegionOwner: "yyy", TruthClaim: 1, RegionClaim: 1}},
		{"claim version", func(rg *fakeRegion) { rg.hosts["xxx.example.com"] = tcs.HostRecord{TenantID: "xxx", ClaimVersion: 4} },
			Finding{Kind: ClaimVersion, TenantID: "xxx", Hostname: "xxx.example.com", TruthOwner: "xxx", RegionOwner: "xxx", TruthClaim: 1, RegionClaim: 4}},
		{"orphaned hostname", func(rg *fakeRegion) { rg.hosts["old.example.com"] = tcs.HostRecord{TenantID: "yyy", ClaimVersion: 3} },
			Finding{Kind: OrphanedHostname, Hostname: "old.example.com", RegionOwner: "yyy", RegionClaim: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr, clean := world()
			_, damaged := world()
			tc.damage(damaged)
			v := &Verifier{Truth: tr, Regions: []Region{{Name: "ok", Scanner: clean}, {Name: "r1", Scanner: damaged}}}
			rep, err := v.Verify(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Clean || len(rep.Findings) != 1 {
				t.Fatalf("clean %v, findings %v; want exactly one", rep.Clean, findingKeys(rep.Findings))
			}
			got := rep.Findings[0]
			if got.Detail == "" {
				t.Error("finding has no detail")
			}
			got.Detail = ""
			tc.want.Region = "r1"
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("finding (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"ok", "r1"}, rep.Regions); diff != "" {
				t.Errorf("regions (-want +got):\n%s", diff)
			}
			if rep.Tenants != 2 || rep.Hostnames != 2 || rep.Passes != 1 {
				t.Errorf("tenants %d, hostnames %d, passes %d; want 2, 2, 1", rep.Tenants, rep.Hostnames, rep.Passes)
			}
		})
	}
}

// TestVerifyCountsProgress: every record read, truth and regions, is
// counted once.
func TestVerifyCountsProgress(t *testing.T) {
	t.Parallel()
	tr, rg := world()
	var mu sync.Mutex
	n := 0
	v := &Verifier{Truth: tr, Regions: []Region{{Name: "r1", Scanner: rg}, {Name: "r2", Scanner: rg}},
		Progress: func(k int) { mu.Lock(); n += k; mu.Unlock() }}
	if _, err := v.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := 2 + 2*(2+2); n != want { // truth docs, then each region's docs and hostnames
		t.Errorf("progress counted %d records, want %d", n, want)
	}
}

// TestVerifyBadInput: a Verifier that cannot work says why, before reading.
func TestVerifyBadInput(t *testing.T) {
	t.Parallel()
	tr, rg := world()
	for _, tc := range []struct {
		v    Verifier
		want string
	}{
		{Verifier{Regions: []Region{{Name: "r1", Scanner: rg}}}, "no Truth"},
		{Verifier{Truth: tr, PageSize: MaxPageSize + 1}, "page size 1001"},
		{Verifier{Truth: tr, PageSize: -1}, "page size -1"},
		{Verifier{Truth: tr, Rechecks: -1}, "rechecks -1"},
	} {
		_, err := tc.v.Verify(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Verify(%+v) = %v, want an error containing %q", tc.v, err, tc.want)
		}
	}
	if tr.passes != 0 {
		t.Errorf("the truth was read %d times", tr.passes)
	}
}

// TestVerifyErrors: a failing truth or region fails the run, naming which.
func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	tr, rg := world()
	boom := fmt.Errorf("boom")
	v := &Verifier{Truth: truthFunc(func(context.Context, string, int) (catalog.ExportPage, error) { return catalog.ExportPage{}, boom }),
		Regions: []Region{{Name: "r1", Scanner: rg}}}
	if _, err := v.Verify(context.Background()); err == nil || !strings.Contains(err.Error(), "source of truth") {
		t.Errorf("failing truth: %v", err)
	}
	v = &Verifier{Truth: tr, Regions: []Region{{Name: "r1", Scanner: rg}, {Name: "bad", Scanner: failingScanner{boom}}}}
	if _, err := v.Verify(context.Background()); err == nil || !strings.Contains(err.Error(), "region bad: boom") {
		t.Errorf("failing region: %v", err)
	}
}

type truthFunc func(ctx context.Context, token string, size int) (catalog.ExportPage, error)

func (f truthFunc) Export(ctx context.Context, token string, size int) (catalog.ExportPage, error) {
	return f(ctx, token, size)
}

type failingScanner struct{ err error }

func (f failingScanner) ScanDocs(context.Context, string, int) ([]*tenant.Tenant, string, error) {
	return nil, "", f.err
}

func (f failingScanner) ScanHosts(context.Context, string, int) ([]tcs.HostEntry, string, error) {
	return nil, "", f.err
}

// TestStoreTruth: a catalog store is read with the page token as After and
// the page size as Limit.
func TestStoreTruth(t *testing.T) {
	t.Parallel()
	var got []catalog.ListOptions
	st := exporterFunc(func(_ context.Context, o catalog.ListOptions) (catalog.ExportPage, error) {
		got = append(got, o)
		if o.After == "" {
			return catalog.ExportPage{Items: []catalog.ExportItem{{Tenant: doc("xxx", 1, "a")}}, Next: "xxx"}, nil
		}
		return catalog.ExportPage{}, nil
	})
	v := &Verifier{Truth: StoreTruth(st), PageSize: 7}
	rep, err := v.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]catalog.ListOptions{{Limit: 7}, {After: "xxx", Limit: 7}}, got); diff != "" {
		t.Errorf("store reads (-want +got):\n%s", diff)
	}
	if rep.Tenants != 1 {
		t.Errorf("tenants = %d, want 1", rep.Tenants)
	}
}

type exporterFunc func(context.Context, catalog.ListOptions) (catalog.ExportPage, error)

func (f exporterFunc) Export(ctx context.Context, o catalog.ListOptions) (catalog.ExportPage, error) {
	return f(ctx, o)
}
