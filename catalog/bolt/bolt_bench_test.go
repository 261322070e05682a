package bolt_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/internal/benchsize"
)

// BenchmarkCreate measures one committed create: tenant, two hostname
// claims, audit record and outbox entry in one fsynced transaction.
func BenchmarkCreate(b *testing.B) {
	benchmarkCreate(b, open(b, filepath.Join(b.TempDir(), "catalog.db"), bolt.Options{}))
}

// BenchmarkCreateNoSync is BenchmarkCreate without the fsync: the CPU cost
// of a write.
func BenchmarkCreateNoSync(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "catalog.db"), bolt.Options{})
	bolt.SkipSync(s)
	benchmarkCreate(b, s)
}

func benchmarkCreate(b *testing.B, s *bolt.Store) {
	ctx := b.Context()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("tenant-%07d", i)
		i++
		if _, err := s.Create(ctx, storetest.NewTenant(id, id+".example.com", "www."+id+".example.com"), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func seeded(b *testing.B, n int) *bolt.Store {
	b.Helper()
	s := open(b, filepath.Join(b.TempDir(), "catalog.db"), bolt.Options{})
	bolt.SkipSync(s) // reads do not care, and seeding stays fast
	for i := range n {
		id := fmt.Sprintf("tenant-%07d", i)
		if _, err := s.Create(b.Context(), storetest.NewTenant(id), "bench"); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

const seededTenants = 1000

func BenchmarkGet(b *testing.B) {
	s := seeded(b, seededTenants)
	ctx := b.Context()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, fmt.Sprintf("tenant-%07d", i%seededTenants)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGetParallel(b *testing.B) {
	s := seeded(b, seededTenants)
	ctx := b.Context()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Get(ctx, fmt.Sprintf("tenant-%07d", i%seededTenants)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkLookupHostname(b *testing.B) {
	s := seeded(b, seededTenants)
	ctx := b.Context()
	i := 0
	for b.Loop() {
		if _, err := s.LookupHostname(ctx, fmt.Sprintf("tenant-%07d.example.com", i%seededTenants)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkList50(b *testing.B) {
	s := seeded(b, seededTenants)
	ctx := b.Context()
	for b.Loop() {
		if _, err := s.List(ctx, catalog.ListOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResync10k resyncs 10,000 tenants as tcsctl resync --all does: in
// requests of catalog.MaxResyncTenants, each one fsynced transaction
// appending an outbox entry per tenant. -short: 1,500 tenants (two
// requests), a smoke run: its figures mean nothing.
func BenchmarkResync10k(b *testing.B) {
	n := benchsize.Pick(10_000, 1_500)
	s := seeded(b, n)
	bolt.Sync(s)
	reqs := make([]catalog.ResyncRequest, n)
	for i := range reqs {
		reqs[i] = catalog.ResyncRequest{ID: fmt.Sprintf("tenant-%07d", i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		for chunk := range slices.Chunk(reqs, catalog.MaxResyncTenants) {
			res, err := s.Resync(b.Context(), chunk, nil)
			if err != nil || len(res.Resynced) != len(chunk) {
				b.Fatalf("Resync: %d resynced, %v", len(res.Resynced), err)
			}
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tenants/s")
}

// BenchmarkExport10k reads 10,000 tenants with their claims in pages of
// catalog.MaxExportPageSize. -short: 1,500 tenants (two pages), a smoke
// run: its figures mean nothing.
func BenchmarkExport10k(b *testing.B) {
	n := benchsize.Pick(10_000, 1_500)
	s := seeded(b, n)
	b.ReportAllocs()
	for b.Loop() {
		got, after := 0, ""
		for {
			page, err := s.Export(b.Context(), catalog.ListOptions{After: after, Limit: catalog.MaxExportPageSize})
			if err != nil {
				b.Fatal(err)
			}
			got += len(page.Items)
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if got != n {
			b.Fatalf("exported %d tenants, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tenants/s")
}

// BenchmarkCreateWriters measures fsynced creates/s with 1, 8 and 32
// concurrent writers: concurrent writes share commits (group commit).
func BenchmarkCreateWriters(b *testing.B) {
	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			storetest.BenchmarkCreates(b, open(b, filepath.Join(b.TempDir(), "catalog.db"), bolt.Options{}), writers)
		})
	}
}
