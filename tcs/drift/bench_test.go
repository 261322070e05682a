package drift

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// sliceTruth and sliceRegion serve sorted slices a page at a time: the
// engine's own cost, with no I/O.
type sliceTruth struct{ items []catalog.ExportItem }

func (s *sliceTruth) Export(_ context.Context, token string, size int) (catalog.ExportPage, error) {
	i := sort.Search(len(s.items), func(i int) bool { return s.items[i].Tenant.ID > token })
	end := min(i+size, len(s.items))
	p := catalog.ExportPage{Items: s.items[i:end]}
	if end < len(s.items) {
		p.Next = s.items[end-1].Tenant.ID
	}
	return p, nil
}

type sliceRegion struct {
	docs  []*tenant.Tenant
	hosts []tcs.HostEntry
}

func (s *sliceRegion) ScanDocs(_ context.Context, cursor string, limit int) ([]*tenant.Tenant, string, error) {
	i := sort.Search(len(s.docs), func(i int) bool { return s.docs[i].ID > cursor })
	end := min(i+limit, len(s.docs))
	next := ""
	if end < len(s.docs) {
		next = s.docs[end-1].ID
	}
	return s.docs[i:end], next, nil
}

func (s *sliceRegion) ScanHosts(_ context.Context, cursor string, limit int) ([]tcs.HostEntry, string, error) {
	i := sort.Search(len(s.hosts), func(i int) bool { return s.hosts[i].Hostname > cursor })
	end := min(i+limit, len(s.hosts))
	next := ""
	if end < len(s.hosts) {
		next = s.hosts[end-1].Hostname
	}
	return s.hosts[i:end], next, nil
}

// BenchmarkVerify: one pass over n tenants (two hostnames each) in three
// regions that agree with the truth, pages of MaxPageSize, records read
// from memory: the engine's CPU and memory per verify, for sizing
// continuous checks.
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			truth := &sliceTruth{}
			region := &sliceRegion{}
			at := time.Unix(1_700_000_000, 0).UTC()
			for i := range n {
				id := fmt.Sprintf("t%07d", i)
				d := &tenant.Tenant{ID: id, Hostnames: []string{id + ".example.com", "www." + id + ".example.com"}, Status: tenant.StatusActive,
					Region: "us-east-1", Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: int64(i % 500)}},
					Database: &tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: id}, Version: 3, UpdatedAt: at, UpdatedBy: "bench"}
				var claims []tenant.Claim
				for _, h := range d.Hostnames {
					claims = append(claims, tenant.Claim{Hostname: h, Version: 1})
					region.hosts = append(region.hosts, tcs.HostEntry{Hostname: h, HostRecord: tcs.HostRecord{TenantID: id, ClaimVersion: 1}})
				}
				truth.items = append(truth.items, catalog.ExportItem{Tenant: d, Claims: claims})
				region.docs = append(region.docs, d)
			}
			sort.Slice(region.hosts, func(i, j int) bool { return strings.Compare(region.hosts[i].Hostname, region.hosts[j].Hostname) < 0 })
			v := &Verifier{Truth: truth, Regions: []Region{{Name: "r1", Scanner: region}, {Name: "r2", Scanner: region}, {Name: "r3", Scanner: region}}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				rep, err := v.Verify(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if !rep.Clean || rep.Tenants != n {
					b.Fatalf("verify: clean %v, %d tenants, want clean and %d", rep.Clean, rep.Tenants, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/tenant")
		})
	}
}
