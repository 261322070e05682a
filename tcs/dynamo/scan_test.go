package dynamo_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

func TestScanEmpty(t *testing.T) {
	t.Parallel()
	r := openFresh(t, newClient(t))
	docs, next, err := r.ScanDocs(t.Context(), "", 0)
	if err != nil || len(docs) != 0 || next != "" {
		t.Errorf("ScanDocs of an empty table = %d docs, next %q, %v; want none, complete", len(docs), next, err)
	}
	hosts, next, err := r.ScanHosts(t.Context(), "", 10)
	if err != nil || len(hosts) != 0 || next != "" {
		t.Errorf("ScanHosts of an empty table = %d records, next %q, %v; want none, complete", len(hosts), next, err)
	}
}

// TestScanPaging fills a table with documents (one a tombstone) and
// hostname records (some released) and pages through them with several
// page sizes: every item comes back exactly once, of its kind only, in pages
// no bigger than asked for.
func TestScanPaging(t *testing.T) {
	t.Parallel()
	r := openFresh(t, newClient(t))
	ctx := t.Context()
	wantDocs := map[string]*tenant.Tenant{}
	wantHosts := map[string]tcs.HostRecord{}
	for i := range 12 {
		id := fmt.Sprintf("t-%02d", i)
		hosts := map[string]int64{id + ".example.com": 1, "www." + id + ".example.com": 1}
		ev := replicatest.Event(id, 1, hosts, nil)
		if i%4 == 3 {
			// Drops its www hostname: released, record kept.
			ev = replicatest.Event(id, 2, map[string]int64{id + ".example.com": 1}, map[string]int64{"www." + id + ".example.com": 2})
			wantHosts["www."+id+".example.com"] = tcs.HostRecord{ClaimVersion: 2}
		} else {
			wantHosts["www."+id+".example.com"] = tcs.HostRecord{TenantID: id, ClaimVersion: 1}
		}
		wantHosts[id+".example.com"] = tcs.HostRecord{TenantID: id, ClaimVersion: 1}
		if _, err := r.Apply(ctx, ev); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		wantDocs[id] = ev.Tenant
	}
	del := replicatest.Tombstone("t-05", 2, map[string]int64{"t-05.example.com": 2, "www.t-05.example.com": 2})
	if _, err := r.Apply(ctx, del); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantDocs["t-05"] = del.Tenant
	wantHosts["t-05.example.com"] = tcs.HostRecord{ClaimVersion: 2}
	wantHosts["www.t-05.example.com"] = tcs.HostRecord{ClaimVersion: 2}

	for _, limit := range []int{1, 5, 12, 13, 24, 0} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			if diff := cmp.Diff(wantDocs, allDocs(t, r, limit)); diff != "" {
				t.Errorf("ScanDocs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantHosts, allHosts(t, r, limit)); diff != "" {
				t.Errorf("ScanHosts (-want +got):\n%s", diff)
			}
		})
	}

	// A page that holds everything says the scan is complete.
	docs, next, err := r.ScanDocs(ctx, "", 100)
	if err != nil || len(docs) != len(wantDocs) || next != "" {
		t.Errorf("ScanDocs(limit 100) = %d docs, next %q, %v; want %d, complete", len(docs), next, err, len(wantDocs))
	}
	// Pages resume where the cursor says: the first page of 5 and the rest
	// are disjoint and make the whole.
	first, next, err := r.ScanHosts(ctx, "", 5)
	if err != nil || len(first) != 5 || next == "" {
		t.Fatalf("ScanHosts(limit 5) = %d records, next %q, %v", len(first), next, err)
	}
	rest, last, err := r.ScanHosts(ctx, next, 100)
	if err != nil || last != "" {
		t.Fatalf("ScanHosts(%q, 100) = next %q, %v", next, last, err)
	}
	var got []string
	for _, e := range slices.Concat(first, rest) {
		got = append(got, e.Hostname)
	}
	slices.Sort(got)
	if want := slices.Sorted(maps.Keys(wantHosts)); !slices.Equal(got, want) {
		t.Errorf("ScanHosts first page + rest = %v, want %v", got, want)
	}
}

func TestScanBadCursor(t *testing.T) {
	t.Parallel()
	r := openFresh(t, newClient(t))
	ctx := t.Context()
	for i := range 3 {
		id := fmt.Sprintf("t-%d", i)
		if _, err := r.Apply(ctx, replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1}, nil)); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	_, docCursor, err := r.ScanDocs(ctx, "", 1)
	if err != nil || docCursor == "" {
		t.Fatalf("ScanDocs(limit 1) = next %q, %v", docCursor, err)
	}
	_, hostCursor, err := r.ScanHosts(ctx, "", 1)
	if err != nil || hostCursor == "" {
		t.Fatalf("ScanHosts(limit 1) = next %q, %v", hostCursor, err)
	}
	if _, _, err := r.ScanHosts(ctx, docCursor, 1); tenant.ErrorCode(err) != tenant.Invalid {
		t.Errorf("ScanHosts with a ScanDocs cursor: %v, want Invalid", err)
	}
	if _, _, err := r.ScanDocs(ctx, hostCursor, 1); tenant.ErrorCode(err) != tenant.Invalid {
		t.Errorf("ScanDocs with a ScanHosts cursor: %v, want Invalid", err)
	}
	if _, _, err := r.ScanDocs(ctx, "not base64!", 1); tenant.ErrorCode(err) != tenant.Invalid {
		t.Errorf("ScanDocs with a garbled cursor: %v, want Invalid", err)
	}
}
