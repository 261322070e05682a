package digest_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/digest"
	"github.com/tcs-dev/tcs/tcs"
)

func sample() *tenant.Tenant {
	return &tenant.Tenant{
		ID: "acme", Hostnames: []string{"acme.example.com", "www.acme.example.com"}, Status: tenant.StatusActive,
		Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: 25, Edition: "premium"}, "confluence": {State: tenant.ProductActive, Users: 3}},
		Database: &tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: "acme", Region: "us-east-1", SecretRef: "vault:db/acme"},
		Region:   "us-east-1", Labels: map[string]string{"tier": "gold", "team": "x"},
		Version: 3, UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), UpdatedBy: "alice",
	}
}

// TestDocHashCoversEveryField: DocHash encodes the fields by hand; a field
// added to a document must be added to it (and to tenant.Equal).
func TestDocHashCoversEveryField(t *testing.T) {
	t.Parallel()
	for typ, want := range map[reflect.Type]int{
		reflect.TypeFor[tenant.Tenant]():    11,
		reflect.TypeFor[tenant.Migration](): 6,
		reflect.TypeFor[tenant.Product]():   3,
		reflect.TypeFor[tenant.Database]():  6,
	} {
		if got := typ.NumField(); got != want {
			t.Errorf("%v has %d fields, DocHash knows %d: hash the new ones in DocHash, then update this test", typ, got, want)
		}
	}
}

// TestDocHashSeesEveryChange: each change a replica could suffer changes
// the hash; equal documents (another map order, another time zone) hash
// alike.
func TestDocHashSeesEveryChange(t *testing.T) {
	t.Parallel()
	base := digest.DocHash(sample())
	same := sample()
	same.UpdatedAt = same.UpdatedAt.In(time.FixedZone("X", 3600))
	if !tenant.Equal(same, sample()) || digest.DocHash(same) != base {
		t.Error("an equal document hashes differently")
	}
	for name, change := range map[string]func(*tenant.Tenant){
		"id":              func(x *tenant.Tenant) { x.ID = "acme2" },
		"version":         func(x *tenant.Tenant) { x.Version++ },
		"status":          func(x *tenant.Tenant) { x.Status = tenant.StatusSuspended },
		"hostname":        func(x *tenant.Tenant) { x.Hostnames = x.Hostnames[:1] },
		"hostname order":  func(x *tenant.Tenant) { x.Hostnames[0], x.Hostnames[1] = x.Hostnames[1], x.Hostnames[0] },
		"product users":   func(x *tenant.Tenant) { p := x.Products["jira"]; p.Users++; x.Products["jira"] = p },
		"product edition": func(x *tenant.Tenant) { p := x.Products["jira"]; p.Edition = ""; x.Products["jira"] = p },
		"product state": func(x *tenant.Tenant) {
			p := x.Products["jira"]
			p.State = tenant.ProductDeactivated
			x.Products["jira"] = p
		},
		"no products":      func(x *tenant.Tenant) { x.Products = nil },
		"database host":    func(x *tenant.Tenant) { x.Database.Host = "db-666.internal" },
		"database port":    func(x *tenant.Tenant) { x.Database.Port++ },
		"database engine":  func(x *tenant.Tenant) { x.Database.Engine = "mysql" },
		"database name":    func(x *tenant.Tenant) { x.Database.Name = "other" },
		"database region":  func(x *tenant.Tenant) { x.Database.Region = "" },
		"database secret":  func(x *tenant.Tenant) { x.Database.SecretRef = "vault:other" },
		"no database":      func(x *tenant.Tenant) { x.Database = nil },
		"region":           func(x *tenant.Tenant) { x.Region = "eu-west-1" },
		"label value":      func(x *tenant.Tenant) { x.Labels["tier"] = "silver" },
		"label moved":      func(x *tenant.Tenant) { x.Labels = map[string]string{"tier": "goldteam", "": "x"} },
		"updated at":       func(x *tenant.Tenant) { x.UpdatedAt = x.UpdatedAt.Add(time.Microsecond) },
		"updated at unset": func(x *tenant.Tenant) { x.UpdatedAt = time.Time{} },
		"updated by":       func(x *tenant.Tenant) { x.UpdatedBy = "mallory" },
		"migration": func(x *tenant.Tenant) {
			x.Migration = &tenant.Migration{Step: tenant.MovePrepared, ReadOnly: true, From: *x.Database, To: *x.Database}
		},
	} {
		x := sample()
		change(x)
		if digest.DocHash(x) == base {
			t.Errorf("%s: the hash did not change", name)
		}
	}
}

// TestBucketsAreStable: digests computed in different processes and
// versions compare, so the bucket of an id and the hashes never change.
func TestBucketsAreStable(t *testing.T) {
	t.Parallel()
	golden := map[string]uint64{
		"bucket acme":  uint64(digest.Bucket("acme")),
		"host":         digest.HostHash("acme.example.com", "acme", 1),
		"doc (sample)": digest.DocHash(sample()),
	}
	want := map[string]uint64{"bucket acme": 0x7ef, "host": 0xbe5b660b28a17eb6, "doc (sample)": 0xc614c26174218e29}
	for k, v := range golden {
		if v != want[k] {
			t.Errorf("%s = %#x, want %#x: the digest encoding changed, and digests of older builds no longer compare", k, v, want[k])
		}
	}
	spread := map[int]bool{}
	for i := range 1000 {
		spread[digest.Bucket("tenant-"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)))] = true
	}
	if len(spread) < 700 {
		t.Errorf("1000 ids fell in %d buckets: the bucket hash does not spread", len(spread))
	}
}

// fakeScanner serves fixed pages.
type fakeScanner struct {
	docs  []*tenant.Tenant
	hosts []tcs.HostEntry
}

func (f fakeScanner) ScanDocs(_ context.Context, cursor string, _ int) ([]*tenant.Tenant, string, error) {
	if cursor == "" {
		return f.docs[:1], "1", nil
	}
	return f.docs[1:], "", nil
}

func (f fakeScanner) ScanHosts(context.Context, string, int) ([]tcs.HostEntry, string, error) {
	return f.hosts, "", nil
}

// TestScanRegionMatchesEntries: a region holding exactly the truth's
// documents and held hostnames has the truth's digests (released records
// count for nothing), and the scan keeps the records of the buckets asked.
func TestScanRegionMatchesEntries(t *testing.T) {
	t.Parallel()
	a := sample()
	b := sample()
	b.ID, b.Hostnames = "globex", []string{"globex.example.com"}
	claimsA := []tenant.Claim{{Hostname: "www.acme.example.com", Version: 2}, {Hostname: "acme.example.com", Version: 1}}
	claimsB := []tenant.Claim{{Hostname: "globex.example.com", Version: 4}}
	var want digest.Table
	for _, it := range []struct {
		t  *tenant.Tenant
		cs []tenant.Claim
	}{{a, claimsA}, {b, claimsB}} {
		e := digest.NewEntry(it.t, it.cs)
		want[digest.Bucket(it.t.ID)] ^= e.Sum(it.t.ID)
	}
	sc := fakeScanner{docs: []*tenant.Tenant{a, b}, hosts: []tcs.HostEntry{
		{Hostname: "acme.example.com", HostRecord: tcs.HostRecord{TenantID: "acme", ClaimVersion: 1}},
		{Hostname: "globex.example.com", HostRecord: tcs.HostRecord{TenantID: "globex", ClaimVersion: 4}},
		{Hostname: "old.example.com", HostRecord: tcs.HostRecord{ClaimVersion: 9}},
		{Hostname: "www.acme.example.com", HostRecord: tcs.HostRecord{TenantID: "acme", ClaimVersion: 2}},
	}}
	got, err := digest.ScanRegion(context.Background(), sc, digest.ScanOptions{Keep: map[int]bool{digest.Bucket("acme"): true}, KeepHosts: map[string]bool{"old.example.com": true}})
	if err != nil {
		t.Fatal(err)
	}
	if d := digest.Diff(&want, &got.Table); len(d) != 0 {
		t.Errorf("buckets %v differ", d)
	}
	if got.Reads != 6 || len(got.Docs) != 1 || got.Docs["acme"].Version != 3 || len(got.Hosts) != 3 || !got.Newest.Equal(a.UpdatedAt) {
		t.Errorf("scan: reads %d, docs %v, hosts %v, newest %v; want 6 reads, acme's document, acme's two hostnames and old.example.com", got.Reads, got.Docs, got.Hosts, got.Newest)
	}
	// One claim version off: the bucket differs.
	sc.hosts[0].ClaimVersion = 0
	got, err = digest.ScanRegion(context.Background(), sc, digest.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := digest.Diff(&want, &got.Table); len(d) != 1 || d[0] != digest.Bucket("acme") {
		t.Errorf("buckets %v differ, want only acme's (%d)", d, digest.Bucket("acme"))
	}
}
