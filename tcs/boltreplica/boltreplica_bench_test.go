package boltreplica_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// seeded returns a replica holding n tenants, tenant-N with hostnames
// tenant-N.example.com and www.tenant-N.example.com, and the www hostnames.
func seeded(b *testing.B, n int) (*boltreplica.Replica, []string) {
	b.Helper()
	r := open(b, filepath.Join(b.TempDir(), "replica.db"), boltreplica.Options{})
	boltreplica.SkipSync(r) // seeding only: reads do not care
	var hosts []string
	for i := range n {
		id := fmt.Sprintf("tenant-%07d", i)
		ev := replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1, "www." + id + ".example.com": 1}, nil)
		if _, err := r.Apply(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
		hosts = append(hosts, "www."+id+".example.com")
	}
	return r, hosts
}

// BenchmarkLookupHostname measures the lookup server's cache-miss path: one
// read transaction, the hostname record and the tenant document decoded, in
// a replica of 10,000 tenants.
func BenchmarkLookupHostname(b *testing.B) {
	const n = 10_000
	r, hosts := seeded(b, n)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h := hosts[i%n]
		i++
		if _, err := r.LookupHostname(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupHostnameParallel is BenchmarkLookupHostname from
// GOMAXPROCS goroutines: reads do not serialise.
func BenchmarkLookupHostnameParallel(b *testing.B) {
	const n = 10_000
	r, hosts := seeded(b, n)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h := hosts[i%n]
			i++
			if _, err := r.LookupHostname(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkApply measures one applied event (a new version of a tenant with
// two hostnames) in one fsynced write transaction.
func BenchmarkApply(b *testing.B) {
	benchmarkApply(b, open(b, filepath.Join(b.TempDir(), "replica.db"), boltreplica.Options{}))
}

// BenchmarkApplyNoSync is BenchmarkApply without the fsync: the CPU cost of
// an apply.
func BenchmarkApplyNoSync(b *testing.B) {
	r := open(b, filepath.Join(b.TempDir(), "replica.db"), boltreplica.Options{})
	boltreplica.SkipSync(r)
	benchmarkApply(b, r)
}

func benchmarkApply(b *testing.B, r *boltreplica.Replica) {
	ctx := b.Context()
	const tenants = 1000
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("tenant-%07d", i%tenants)
		ev := replicatest.Event(id, int64(i/tenants+1), map[string]int64{id + ".example.com": 1, "www." + id + ".example.com": 1}, nil)
		i++
		res, err := r.Apply(ctx, ev)
		if err != nil || !res.Applied {
			b.Fatalf("Apply = %+v, %v", res, err)
		}
	}
}

// resyncEvents returns n resync events, one per tenant, as a resync --all
// emits them.
func resyncEvents(n int) []*tenant.ChangeEvent {
	evs := make([]*tenant.ChangeEvent, n)
	for i := range evs {
		id := fmt.Sprintf("tenant-%07d", i)
		evs[i] = replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1, "www." + id + ".example.com": 1}, nil)
		evs[i].Resync = true
	}
	return evs
}

// BenchmarkApplyOneByOne applies resync events one Apply (one transaction,
// one fsync) each, on a disk file: the applier's path before ApplyBatch.
func BenchmarkApplyOneByOne(b *testing.B) {
	r := open(b, filepath.Join(b.TempDir(), "replica.db"), boltreplica.Options{})
	evs := resyncEvents(1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := r.Apply(b.Context(), evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkApplyBatch applies the same events in batches of 256 (the
// embedded stream's batch size), one transaction and fsync per batch.
func BenchmarkApplyBatch(b *testing.B) {
	r := open(b, filepath.Join(b.TempDir(), "replica.db"), boltreplica.Options{})
	evs := resyncEvents(256 * 40)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		batch := evs[(i%40)*256 : (i%40+1)*256]
		if _, err := r.ApplyBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "events/s")
}
