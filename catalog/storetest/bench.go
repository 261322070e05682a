package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
)

// BenchmarkCreates runs b.N creates of distinct tenants (two hostnames
// each) on s from writers goroutines at once and reports creates/s. A
// failed create fails the benchmark, naming its error code: a store that
// gives up under its own writers' contention shows here.
func BenchmarkCreates(b *testing.B, s catalog.Store, writers int) {
	b.Helper()
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
		prefix = fmt.Sprintf("b%d-", time.Now().UnixNano()%1_000_000)
	)
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) || failed.Load() != nil {
					return
				}
				id := fmt.Sprintf("%s%07d", prefix, i)
				if _, err := s.Create(context.Background(), NewTenant(id, id+".example.com", "www."+id+".example.com"), "bench"); err != nil {
					err = fmt.Errorf("create %s: %w", id, err)
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "creates/s")
}
