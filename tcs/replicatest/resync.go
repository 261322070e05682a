package replicatest

import (
	"context"
	"testing"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// resync returns ev marked as a resync (a copy; ev is left alone).
func resync(ev *tenant.ChangeEvent) *tenant.ChangeEvent {
	c := *ev
	c.Tenant = ev.Tenant.Clone()
	c.Resync = true
	return &c
}

// testResyncRepairs checks how resync events repair a replica that holds
// wrong records at the versions the source of truth has: the documents and
// hostname records that no ordinary event can fix, since an ordinary event
// at an equal version is a duplicate.
func testResyncRepairs(t *testing.T, open func(t *testing.T) tcs.Replica) {
	t.Run("ContentAtEqualVersion", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		hosts := map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}
		// A wrong document at the right version (a bug, a bad restore).
		corrupt := Event("acme", 3, hosts, nil)
		corrupt.Tenant.Products["jira"] = tenant.Product{State: tenant.ProductDeactivated}
		corrupt.Tenant.Status = tenant.StatusSuspended
		apply(t, r, corrupt)
		good := Event("acme", 3, hosts, nil)
		wantResult(t, "ordinary event at the stored version", apply(t, r, good), false)
		wantDoc(t, r, "acme", corrupt.Tenant)

		wantResult(t, "resync at the stored version", apply(t, r, resync(good)), true, "acme.example.com", "www.acme.example.com")
		wantDoc(t, r, "acme", good.Tenant)
		wantLookup(t, r, "acme.example.com", good.Tenant)
		wantLookup(t, r, "www.acme.example.com", good.Tenant)

		// Resyncing what is already stored changes no answer: it reports
		// no hostname, so that caches keep their entries.
		wantResult(t, "the same resync again", apply(t, r, resync(good)), true)
		wantDoc(t, r, "acme", good.Tenant)
		wantLookup(t, r, "acme.example.com", good.Tenant)
	})

	t.Run("NeverRollsBack", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		// acme@2 holds a and b; acme@3 dropped b, took c, and moved to
		// eu-west-1; the replica has acme@3. A resync emitted at version 2
		// (delivered late, after the update) must change nothing.
		v2 := Event("acme", 2, map[string]int64{"a.example.com": 1, "b.example.com": 1}, map[string]int64{"old.example.com": 2})
		v3 := Event("acme", 3, map[string]int64{"a.example.com": 1, "c.example.com": 1}, map[string]int64{"b.example.com": 2})
		v3.Tenant.Region = "eu-west-1"
		apply(t, r, v3)
		stale := resync(v2)
		stale.Released = append(stale.Released, tenant.Claim{Hostname: "c.example.com", Version: 0})
		wantResult(t, "resync below the stored version", apply(t, r, stale), false)
		wantDoc(t, r, "acme", v3.Tenant)
		wantLookup(t, r, "a.example.com", v3.Tenant)
		wantLookup(t, r, "b.example.com", nil)
		wantLookup(t, r, "c.example.com", v3.Tenant)

		// Nor does a resync of a tombstone older than the live document.
		tomb := resync(Tombstone("acme", 2, nil))
		wantResult(t, "resync of an older tombstone", apply(t, r, tomb), false)
		wantDoc(t, r, "acme", v3.Tenant)
		wantLookup(t, r, "a.example.com", v3.Tenant)

		// A resync of acme@3 delivered after acme@4 gave c up and beta took
		// it: c stays beta's.
		v4 := Event("acme", 4, map[string]int64{"a.example.com": 1}, map[string]int64{"c.example.com": 2})
		b1 := Event("beta", 1, map[string]int64{"c.example.com": 3}, nil)
		applyAll(t, r, v4, b1)
		wantResult(t, "late resync of an older version", apply(t, r, resync(v3)), false)
		wantDoc(t, r, "acme", v4.Tenant)
		wantLookup(t, r, "c.example.com", b1.Tenant)
		wantLookup(t, r, "a.example.com", v4.Tenant)
	})

	t.Run("ReleasedExtraHostnameClearsOrphan", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		// The replica maps orphan.example.com to acme at claim version 2,
		// though acme's document does not list it and the source of truth
		// released it at claim version 2: a record no lookup answers with,
		// but one verify reports and that blocks nothing else.
		bad := Event("acme", 2, map[string]int64{"acme.example.com": 1}, nil)
		bad.Claims = append(bad.Claims, tenant.Claim{Hostname: "orphan.example.com", Version: 2})
		apply(t, r, bad)
		wantHost(t, r, "orphan.example.com", tcs.HostRecord{TenantID: "acme", ClaimVersion: 2})

		// An ordinary release at the same claim version is a duplicate.
		plain := Event("acme", 2, map[string]int64{"acme.example.com": 1}, map[string]int64{"orphan.example.com": 2})
		wantResult(t, "ordinary release at the stored claim version", apply(t, r, plain), false, "acme.example.com")
		wantHost(t, r, "orphan.example.com", tcs.HostRecord{TenantID: "acme", ClaimVersion: 2})

		// Another tenant's resync releasing it leaves it to acme's resync.
		other := resync(Event("beta", 1, map[string]int64{"beta.example.com": 1}, map[string]int64{"orphan.example.com": 2}))
		wantResult(t, "another tenant's resync", apply(t, r, other), true, "beta.example.com")
		wantHost(t, r, "orphan.example.com", tcs.HostRecord{TenantID: "acme", ClaimVersion: 2})

		// acme's resync with the hostname as an extra release clears it.
		fix := resync(plain)
		wantResult(t, "resync releasing the orphan", apply(t, r, fix), true, "orphan.example.com")
		wantHost(t, r, "orphan.example.com", tcs.HostRecord{ClaimVersion: 2})
		wantLookup(t, r, "orphan.example.com", nil)
		wantLookup(t, r, "acme.example.com", plain.Tenant)
		wantResult(t, "the same resync again", apply(t, r, fix), true)

		// A resync releasing at an older claim version than the record's
		// changes nothing.
		c3 := Event("carol", 1, map[string]int64{"orphan.example.com": 3}, nil)
		apply(t, r, c3)
		wantResult(t, "resync releasing at an older claim version", apply(t, r, fix), true)
		wantLookup(t, r, "orphan.example.com", c3.Tenant)
	})

	t.Run("ClaimsFixWrongTenantAtSameClaimVersion", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		// The source of truth: acme holds shared at claim version 3. The
		// replica maps shared to beta at claim version 3, and beta's
		// document lists it too, so lookups answer beta: wrong.
		a1 := Event("acme", 1, map[string]int64{"acme.example.com": 1, "shared.example.com": 3}, nil)
		bBad := Event("beta", 1, map[string]int64{"beta.example.com": 1, "shared.example.com": 3}, nil)
		apply(t, r, bBad)
		wantResult(t, "acme's ordinary event", apply(t, r, a1), true, "acme.example.com", "shared.example.com")
		wantLookup(t, r, "shared.example.com", bBad.Tenant)

		// acme's document is stored as it should be: only the repaired
		// record changes an answer.
		wantResult(t, "acme's resync", apply(t, r, resync(a1)), true, "shared.example.com")
		wantLookup(t, r, "shared.example.com", a1.Tenant)
		wantHost(t, r, "shared.example.com", tcs.HostRecord{TenantID: "acme", ClaimVersion: 3})

		// beta's resync (its true document lacks shared) leaves acme's record.
		bGood := Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil)
		wantResult(t, "beta's resync", apply(t, r, resync(bGood)), true, "beta.example.com", "shared.example.com")
		wantLookup(t, r, "shared.example.com", a1.Tenant)
		wantLookup(t, r, "beta.example.com", bGood.Tenant)
	})

	t.Run("TombstoneAtEqualVersion", func(t *testing.T) {
		t.Parallel()
		r := open(t)
		// The replica has acme live at version 2, which the source of truth
		// says is its tombstone.
		apply(t, r, Event("acme", 2, map[string]int64{"acme.example.com": 1}, nil))
		tomb := Tombstone("acme", 2, map[string]int64{"acme.example.com": 2})
		wantResult(t, "resync of the tombstone", apply(t, r, resync(tomb)), true, "acme.example.com")
		wantDoc(t, r, "acme", tomb.Tenant)
		wantLookup(t, r, "acme.example.com", nil)
	})
}

// wantHost checks a hostname record through tcs.Scanner, if r is one;
// replicas that are not have no other way to show a record no lookup
// answers with.
func wantHost(t *testing.T, r tcs.Replica, hostname string, want tcs.HostRecord) {
	t.Helper()
	sc, ok := r.(tcs.Scanner)
	if !ok {
		return
	}
	for _, e := range scanAllHosts(t, sc, 0) {
		if e.Hostname == hostname {
			if e.HostRecord != want {
				t.Fatalf("record of %s is %+v, want %+v", hostname, e.HostRecord, want)
			}
			return
		}
	}
	t.Fatalf("no record of %s, want %+v", hostname, want)
}

// maxScanPages bounds a scan in the tests, so that a cursor that never ends
// fails instead of hanging.
const maxScanPages = 10000

func scanAllHosts(t *testing.T, sc tcs.Scanner, limit int) []tcs.HostEntry {
	t.Helper()
	return scanAll(t, "ScanHosts", sc.ScanHosts, limit)
}

func scanAllDocs(t *testing.T, sc tcs.Scanner, limit int) []*tenant.Tenant {
	t.Helper()
	return scanAll(t, "ScanDocs", sc.ScanDocs, limit)
}

// scanAll reads every page of one of a Scanner's scans (named what),
// checking that no page is over limit.
func scanAll[T any](t *testing.T, what string, scan func(ctx context.Context, cursor string, limit int) ([]T, string, error), limit int) []T {
	t.Helper()
	var out []T
	cursor := ""
	for range maxScanPages {
		page, next, err := scan(context.Background(), cursor, limit)
		if err != nil {
			t.Fatalf("%s(%q, %d): %v", what, cursor, limit, err)
		}
		if limit > 0 && len(page) > limit {
			t.Fatalf("%s(%q, %d) returned %d entries", what, cursor, limit, len(page))
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		cursor = next
	}
	t.Fatalf("%s did not end after %d pages", what, maxScanPages)
	return nil
}
