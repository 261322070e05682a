package replicatest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// RunScanner runs the conformance suite of tcs.Scanner. Run calls it for
// replicas that implement tcs.Scanner; open must return a new, empty
// replica (which must be a tcs.Scanner) and close it when t ends.
//
// The suite holds a backend to the Scanner contract only: pages of at most
// the limit asked for, in any order, possibly short or empty before the
// end; cursors that are opaque strings; a scan of a table nobody writes
// sees every record exactly once; a scan that runs while events are applied
// sees every record that existed before it began at least once.
func RunScanner(t *testing.T, open func(t *testing.T) tcs.Replica) {
	scanner := func(t *testing.T) (tcs.Replica, tcs.Scanner) {
		r := open(t)
		sc, ok := r.(tcs.Scanner)
		if !ok {
			t.Fatalf("%T is not a tcs.Scanner", r)
		}
		return r, sc
	}
	tests := []struct {
		name string
		test func(t *testing.T, r tcs.Replica, sc tcs.Scanner)
	}{
		{"Empty", testScanEmpty},
		{"Paging", testScanPaging},
		{"DefaultLimit", testScanDefaultLimit},
		{"CursorResumes", testScanCursorResumes},
		{"WhileApplying", testScanWhileApplying},
		{"CanceledContext", testScanCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, sc := scanner(t)
			tt.test(t, r, sc)
		})
	}
}

// scanFixture applies n tenants to r, each holding two hostnames; every
// third is then deleted (a tombstone releasing both), and every fifth live
// one gives its www hostname up (a released record). It returns the
// documents and hostname records r must hold, sorted.
func scanFixture(t *testing.T, r tcs.Replica, n int) ([]*tenant.Tenant, []tcs.HostEntry) {
	t.Helper()
	docs := map[string]*tenant.Tenant{}
	hosts := map[string]tcs.HostRecord{}
	for i := range n {
		id := fmt.Sprintf("scan-%03d", i)
		h, www := id+".example.com", "www."+id+".example.com"
		ev := Event(id, 1, map[string]int64{h: 1, www: 1}, nil)
		switch {
		case i%3 == 0:
			applyAll(t, r, ev)
			ev = Tombstone(id, 2, map[string]int64{h: 2, www: 2})
			hosts[h], hosts[www] = tcs.HostRecord{ClaimVersion: 2}, tcs.HostRecord{ClaimVersion: 2}
		case i%5 == 1:
			applyAll(t, r, ev)
			ev = Event(id, 2, map[string]int64{h: 1}, map[string]int64{www: 2})
			hosts[h], hosts[www] = tcs.HostRecord{TenantID: id, ClaimVersion: 1}, tcs.HostRecord{ClaimVersion: 2}
		default:
			hosts[h], hosts[www] = tcs.HostRecord{TenantID: id, ClaimVersion: 1}, tcs.HostRecord{TenantID: id, ClaimVersion: 1}
		}
		apply(t, r, ev)
		docs[id] = ev.Tenant
	}
	var wantDocs []*tenant.Tenant
	for _, id := range slices.Sorted(mapsKeys(docs)) {
		wantDocs = append(wantDocs, docs[id])
	}
	var wantHosts []tcs.HostEntry
	for _, h := range slices.Sorted(mapsKeys(hosts)) {
		wantHosts = append(wantHosts, tcs.HostEntry{Hostname: h, HostRecord: hosts[h]})
	}
	return wantDocs, wantHosts
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkScanned checks that a scan of a table nobody wrote returned want,
// each record exactly once, in any order.
func checkScanned(t *testing.T, what string, wantDocs []*tenant.Tenant, gotDocs []*tenant.Tenant, wantHosts, gotHosts []tcs.HostEntry) {
	t.Helper()
	if gotDocs != nil || wantDocs != nil {
		got := slices.SortedStableFunc(slices.Values(gotDocs), func(a, b *tenant.Tenant) int { return cmp.Compare(a.ID, b.ID) })
		if diff := gocmp.Diff(wantDocs, got, equateEmpty); diff != "" {
			t.Fatalf("%s: ScanDocs, each document once (-want +got):\n%s", what, diff)
		}
	}
	if gotHosts != nil || wantHosts != nil {
		got := slices.SortedStableFunc(slices.Values(gotHosts), func(a, b tcs.HostEntry) int { return cmp.Compare(a.Hostname, b.Hostname) })
		if diff := gocmp.Diff(wantHosts, got, equateEmpty); diff != "" {
			t.Fatalf("%s: ScanHosts, each record once (-want +got):\n%s", what, diff)
		}
	}
}

func testScanEmpty(t *testing.T, _ tcs.Replica, sc tcs.Scanner) {
	for _, limit := range []int{0, 1, 10} {
		if docs := scanAllDocs(t, sc, limit); len(docs) != 0 {
			t.Fatalf("ScanDocs of an empty replica (limit %d) returned %d documents", limit, len(docs))
		}
		if hosts := scanAllHosts(t, sc, limit); len(hosts) != 0 {
			t.Fatalf("ScanHosts of an empty replica (limit %d) returned %d records", limit, len(hosts))
		}
	}
}

func testScanPaging(t *testing.T, r tcs.Replica, sc tcs.Scanner) {
	wantDocs, wantHosts := scanFixture(t, r, 23)
	for _, limit := range []int{1, 4, 23, 100} {
		checkScanned(t, fmt.Sprintf("limit %d", limit), wantDocs, scanAllDocs(t, sc, limit), wantHosts, scanAllHosts(t, sc, limit))
	}
	// Tombstones come back whole, and released hostnames with no tenant.
	var tombs, released int
	for _, d := range scanAllDocs(t, sc, 5) {
		if d.Deleted() {
			tombs++
		}
	}
	for _, h := range scanAllHosts(t, sc, 5) {
		if h.TenantID == "" {
			released++
		}
	}
	if tombs != 8 || released != 19 {
		t.Fatalf("scans returned %d tombstones and %d released hostnames, want 8 and 19", tombs, released)
	}
}

func testScanDefaultLimit(t *testing.T, r tcs.Replica, sc tcs.Scanner) {
	wantDocs, wantHosts := scanFixture(t, r, 12)
	checkScanned(t, "limit 0", wantDocs, scanAllDocs(t, sc, 0), wantHosts, scanAllHosts(t, sc, 0))
	checkScanned(t, "limit -1", wantDocs, scanAllDocs(t, sc, -1), wantHosts, scanAllHosts(t, sc, -1))
}

// testScanCursorResumes takes a cursor from the middle of a scan and
// continues from it twice, as a tool resuming after a restart would: both
// continuations, each with the pages before the cursor, see everything.
func testScanCursorResumes(t *testing.T, r tcs.Replica, sc tcs.Scanner) {
	wantDocs, wantHosts := scanFixture(t, r, 15)
	ctx := context.Background()
	var head []*tenant.Tenant
	cursor := ""
	for range maxScanPages {
		page, next, err := sc.ScanDocs(ctx, cursor, 3)
		if err != nil {
			t.Fatalf("ScanDocs(%q): %v", cursor, err)
		}
		head = append(head, page...)
		cursor = next
		if len(head) >= 6 || next == "" {
			break
		}
	}
	if cursor == "" {
		t.Fatalf("a scan of 15 documents by 3 ended after %d", len(head))
	}
	for round := range 2 {
		got := slices.Clone(head)
		c := cursor
		for range maxScanPages {
			page, next, err := sc.ScanDocs(ctx, c, 3)
			if err != nil {
				t.Fatalf("ScanDocs(%q): %v", c, err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			c = next
		}
		checkScanned(t, fmt.Sprintf("resumed scan %d", round), wantDocs, got, nil, nil)
	}

	var hostHead []tcs.HostEntry
	cursor = ""
	for range maxScanPages {
		page, next, err := sc.ScanHosts(ctx, cursor, 4)
		if err != nil {
			t.Fatalf("ScanHosts(%q): %v", cursor, err)
		}
		hostHead = append(hostHead, page...)
		cursor = next
		if len(hostHead) >= 8 || next == "" {
			break
		}
	}
	got := slices.Clone(hostHead)
	for c := cursor; c != ""; {
		page, next, err := sc.ScanHosts(ctx, c, 4)
		if err != nil {
			t.Fatalf("ScanHosts(%q): %v", c, err)
		}
		got = append(got, page...)
		c = next
	}
	checkScanned(t, "resumed host scan", nil, nil, wantHosts, got)
}

// testScanWhileApplying scans while another goroutine applies events: new
// tenants, updates and deletes. Every record that existed before the scan
// began is seen at least once, in a state it had during the scan.
func testScanWhileApplying(t *testing.T, r tcs.Replica, sc tcs.Scanner) {
	before, beforeHosts := scanFixture(t, r, 20)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var ev *tenant.ChangeEvent
			switch id := fmt.Sprintf("scan-%03d", i%20); {
			case i < 40:
				nid := fmt.Sprintf("new-%03d", i)
				ev = Event(nid, 1, map[string]int64{nid + ".example.com": 1}, nil)
			default:
				ev = Event(id, int64(10+i), map[string]int64{id + ".example.com": 5}, nil)
			}
			if _, err := r.Apply(context.Background(), ev); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
		}
	})
	docs := scanAllDocs(t, sc, 3)
	hosts := scanAllHosts(t, sc, 3)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("Apply during the scan: %v", err)
	default:
	}
	seen := map[string]bool{}
	for _, d := range docs {
		seen[d.ID] = true
	}
	for _, d := range before {
		if !seen[d.ID] {
			t.Errorf("ScanDocs during applies missed %s", d.ID)
		}
	}
	seenHosts := map[string]bool{}
	for _, h := range hosts {
		seenHosts[h.Hostname] = true
	}
	for _, h := range beforeHosts {
		if !seenHosts[h.Hostname] {
			t.Errorf("ScanHosts during applies missed %s", h.Hostname)
		}
	}
}

func testScanCanceled(t *testing.T, r tcs.Replica, sc tcs.Scanner) {
	scanFixture(t, r, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := sc.ScanDocs(ctx, "", 10); err == nil {
		t.Errorf("ScanDocs with a canceled context succeeded")
	}
	if _, _, err := sc.ScanHosts(ctx, "", 10); err == nil {
		t.Errorf("ScanHosts with a canceled context succeeded")
	}
}
