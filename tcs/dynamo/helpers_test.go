package dynamo_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// scanner is a replica that can list its contents.
type scanner interface {
	tcs.Replica
	tcs.Scanner
}

// wantLookup checks that hostname resolves to want, or to nothing if want is
// nil.
func wantLookup(t testing.TB, r tcs.Replica, hostname string, want *tenant.Tenant) {
	t.Helper()
	got, err := r.LookupHostname(context.Background(), hostname)
	if want == nil {
		if tenant.ErrorCode(err) != tenant.NotFound {
			t.Errorf("LookupHostname(%s) = %v, %v; want NotFound", hostname, got, err)
		}
		return
	}
	if err != nil {
		t.Errorf("LookupHostname(%s): %v; want %s@%d", hostname, err, want.ID, want.Version)
		return
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("LookupHostname(%s) (-want +got):\n%s", hostname, diff)
	}
}

// wantDoc checks that GetTenant(id) returns want, or NotFound if want is nil.
func wantDoc(t testing.TB, r tcs.Replica, id string, want *tenant.Tenant) {
	t.Helper()
	got, err := r.GetTenant(context.Background(), id)
	if want == nil {
		if tenant.ErrorCode(err) != tenant.NotFound {
			t.Errorf("GetTenant(%s) = %v, %v; want NotFound", id, got, err)
		}
		return
	}
	if err != nil {
		t.Errorf("GetTenant(%s): %v", id, err)
		return
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("GetTenant(%s) (-want +got):\n%s", id, diff)
	}
}

// allHosts returns every hostname record of r, scanning in pages of limit.
func allHosts(t testing.TB, r tcs.Scanner, limit int) map[string]tcs.HostRecord {
	t.Helper()
	out := map[string]tcs.HostRecord{}
	for cursor, pages := "", 0; ; pages++ {
		page, next, err := r.ScanHosts(context.Background(), cursor, limit)
		if err != nil {
			t.Fatalf("ScanHosts(%q, %d): %v", cursor, limit, err)
		}
		if limit > 0 && len(page) > limit {
			t.Fatalf("ScanHosts(%q, %d) returned %d records", cursor, limit, len(page))
		}
		for _, e := range page {
			if _, dup := out[e.Hostname]; dup {
				t.Fatalf("ScanHosts returned %s twice", e.Hostname)
			}
			out[e.Hostname] = e.HostRecord
		}
		if next == "" {
			return out
		}
		if pages > 10_000 {
			t.Fatalf("ScanHosts does not end")
		}
		cursor = next
	}
}

// allDocs returns every document of r by id, scanning in pages of limit.
func allDocs(t testing.TB, r tcs.Scanner, limit int) map[string]*tenant.Tenant {
	t.Helper()
	out := map[string]*tenant.Tenant{}
	for cursor, pages := "", 0; ; pages++ {
		page, next, err := r.ScanDocs(context.Background(), cursor, limit)
		if err != nil {
			t.Fatalf("ScanDocs(%q, %d): %v", cursor, limit, err)
		}
		if limit > 0 && len(page) > limit {
			t.Fatalf("ScanDocs(%q, %d) returned %d documents", cursor, limit, len(page))
		}
		for _, d := range page {
			if _, dup := out[d.ID]; dup {
				t.Fatalf("ScanDocs returned %s twice", d.ID)
			}
			out[d.ID] = d
		}
		if next == "" {
			return out
		}
		if pages > 10_000 {
			t.Fatalf("ScanDocs does not end")
		}
		cursor = next
	}
}

// wantHosts checks r's hostname records.
func wantHosts(t testing.TB, r tcs.Scanner, want map[string]tcs.HostRecord) {
	t.Helper()
	if diff := cmp.Diff(want, allHosts(t, r, 0), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("hostname records (-want +got):\n%s", diff)
	}
}

func mustApply(t testing.TB, r tcs.Replica, ev *tenant.ChangeEvent) tcs.ApplyResult {
	t.Helper()
	res, err := r.Apply(context.Background(), ev)
	if err != nil {
		t.Fatalf("Apply(%s@%d): %v", ev.TenantID, ev.Version, err)
	}
	return res
}
