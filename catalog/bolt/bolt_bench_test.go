package bolt_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
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
