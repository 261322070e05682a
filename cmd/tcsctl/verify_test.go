package main

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// fakeTruth is an in-memory source of truth; onPass runs at the start of
// every full read (the first page), so a test can change the world between
// a pass's truth snapshot and its region scan, or between passes.
type fakeTruth struct {
	mu     sync.Mutex
	items  map[string]exportItem
	passes int
	onPass func(pass int)
}

func (f *fakeTruth) Export(_ context.Context, token string, size int) (exportPage, error) {
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
	var p exportPage
	for _, id := range ids {
		if len(p.Items) == size {
			p.NextPageToken = p.Items[len(p.Items)-1].Tenant.ID
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

// world is a truth and one region agreeing on tenants x and y.
func world() (*fakeTruth, *fakeRegion) {
	tr := &fakeTruth{items: map[string]exportItem{}}
	rg := &fakeRegion{docs: map[string]*tenant.Tenant{}, hosts: map[string]tcs.HostRecord{}}
	for _, id := range []string{"xxx", "yyy"} {
		d := doc(id, 2, "a")
		tr.items[id] = exportItem{Tenant: d, Claims: []tenant.Claim{{Hostname: id + ".example.com", Version: 1}}}
		rg.docs[id] = d.Clone()
		rg.hosts[id+".example.com"] = tcs.HostRecord{TenantID: id, ClaimVersion: 1}
	}
	return tr, rg
}

// set moves tenant id to version v in the truth and/or the region.
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
			v := &verifier{truth: tr, regions: []regionReader{{name: "r1", Scanner: rg}}, pageSize: 1, rechecks: 3}
			rep, err := v.verify(context.Background())
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

// TestPlanRepair: each kind of drift maps to the resync that fixes it, or
// to the reason it cannot be fixed.
func TestPlanRepair(t *testing.T) {
	t.Parallel()
	fs := []driftFinding{
		{Region: "r1", Kind: kindStaleVersion, TenantID: "aaa"},
		{Region: "r2", Kind: kindContentMismatch, TenantID: "aaa"},
		{Region: "r1", Kind: kindWrongOwner, TenantID: "bbb", Hostname: "b.example.com", TruthOwner: "bbb", RegionOwner: "ccc", TruthClaim: 3, RegionClaim: 3},
		{Region: "r1", Kind: kindWrongOwner, TenantID: "bbb", Hostname: "c.example.com", TruthOwner: "bbb", RegionOwner: "ccc", TruthClaim: 3, RegionClaim: 4},
		{Region: "r2", Kind: kindOrphanedHostname, Hostname: "old.example.com", RegionOwner: "ddd", RegionClaim: 2},
		{Region: "r1", Kind: kindAheadVersion, TenantID: "eee"},
		{Region: "r1", Kind: kindUnknownTenant, TenantID: "fff"},
	}
	actions, skipped := planRepair(fs)
	want := []repairAction{
		{TenantID: "aaa", Regions: []string{"r1", "r2"}, Reasons: []string{"r1 stale_version", "r2 content_mismatch"}},
		{TenantID: "bbb", Regions: []string{"r1"}, Reasons: []string{"r1 wrong_owner b.example.com"}},
		{TenantID: "ddd", Regions: []string{"r2"}, Hostnames: []string{"old.example.com"}, Reasons: []string{"r2 orphaned_hostname old.example.com"}},
	}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	var got []string
	for _, u := range skipped {
		got = append(got, u.Kind+" "+dash(u.TenantID)+" "+dash(u.Hostname))
	}
	if diff := cmp.Diff([]string{"wrong_owner bbb c.example.com", "ahead_version eee -", "unknown_tenant fff -"}, got); diff != "" {
		t.Errorf("unrepairable (-want +got):\n%s", diff)
	}
}
