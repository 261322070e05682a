package cache_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/internal/benchsize"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// benchEntries is how many tenants benchCache holds: 1,000,000; under
// -short 10,000 (a smoke run: its figures mean nothing).
func benchEntries() int { return benchsize.Pick(1_000_000, 10_000) }

// benchRoom is a cache Size that holds n tenants without evicting any. Each
// of the 64 shards holds Size/64, and hostnames spread over them unevenly:
// 10% more than n is 12 standard deviations of a shard's share at a
// million, but little more than one at the smoke runs' 10,000, so under
// -short it is twice n.
func benchRoom(n int) int { return benchsize.Pick(n*11/10, 2*n) }

var bench struct {
	once  sync.Once
	c     *cache.Cache
	hosts []string
}

// benchCache returns a cache holding benchEntries tenants, built once per
// test binary (it takes a few seconds and about 600 MB).
func benchCache(b *testing.B) (*cache.Cache, []string) {
	b.Helper()
	bench.once.Do(func() {
		// Shards fill unevenly: leave room so that none evicts.
		c := cache.New(newFakeReader(), cache.Options{Size: benchRoom(benchEntries()), TTL: time.Hour})
		hosts := make([]string, benchEntries())
		for i := range hosts {
			hosts[i] = hostOf(i)
			if !c.Put(hosts[i], makeTenant(fmt.Sprintf("t%07d", i), 1, hosts[i])) {
				panic("Put failed")
			}
		}
		bench.c, bench.hosts = c, hosts
		runtime.GC()
	})
	return bench.c, bench.hosts
}

// BenchmarkGCMark (first in this file, so that it runs before BenchmarkHit
// builds its big cache) measures what the garbage collector pays per cycle
// for 200,000 tenants held by the Cache, or by a plain LRU as serialised
// bytes or as *tcsv1.Tenant messages (the alternative): the time of a forced
// full collection, the live heap and the heap objects per entry. -short:
// 10,000 tenants, a smoke run: its figures mean nothing.
func BenchmarkGCMark(b *testing.B) {
	n := benchsize.Pick(200_000, 10_000)
	for _, kind := range []string{"cache", "bytes", "proto"} {
		b.Run(kind, func(b *testing.B) {
			var keep any
			switch kind {
			case "cache": // the real thing
				c := cache.New(newFakeReader(), cache.Options{Size: 2 * n, TTL: time.Hour})
				for i := range n {
					c.Put(hostOf(i), makeTenant(fmt.Sprintf("t%07d", i), 1, hostOf(i)))
				}
				keep = c
			case "bytes":
				l, _ := simplelru.NewLRU[string, []byte](n, nil)
				for i := range n {
					buf, _ := proto.Marshal(tcsv1.TenantToProto(makeTenant(fmt.Sprintf("t%07d", i), 1, hostOf(i))))
					l.Add(hostOf(i), buf)
				}
				keep = l
			case "proto":
				l, _ := simplelru.NewLRU[string, *tcsv1.Tenant](n, nil)
				for i := range n {
					l.Add(hostOf(i), tcsv1.TenantToProto(makeTenant(fmt.Sprintf("t%07d", i), 1, hostOf(i))))
				}
				keep = l
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			for b.Loop() {
				runtime.GC()
			}
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MB")
			b.ReportMetric(float64(ms.HeapObjects)/float64(n), "objects/entry")
			runtime.KeepAlive(keep)
		})
	}
}

// BenchmarkHit is a hit through Lookup, Peek and Lookup on every core, over
// a hot set of 1,000 or 10,000 of benchCache's 1,000,000 tenants. -short:
// 10,000 tenants (benchEntries), a smoke run: its figures mean nothing.
func BenchmarkHit(b *testing.B) {
	c, hosts := benchCache(b)
	ctx := context.Background()
	for i := range 1000 {
		// Remembered invalidations of other tenants, so that every hit
		// also consults the invalidation window, as in production.
		c.Invalidate(invalidationOf(i))
	}
	for _, hotSet := range []int{1000, 10_000} {
		// hot returns the i'th hostname of the hot set, spread over the
		// whole cache (and so over the heap).
		hot := func(i int) string { return hosts[(i%hotSet)*(len(hosts)/hotSet)] }
		b.Run(fmt.Sprintf("hot=%d/Lookup", hotSet), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.Lookup(ctx, hot(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("hot=%d/Peek", hotSet), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := c.Peek(hot(i)); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("hot=%d/LookupParallel", hotSet), func(b *testing.B) {
			b.ReportAllocs()
			var seed atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(7919))
				for pb.Next() {
					if _, err := c.Lookup(ctx, hot(i)); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

func invalidationOf(i int) tcs.Invalidation {
	return tcs.Invalidation{
		TenantID:  fmt.Sprintf("other%d", i),
		Version:   1,
		Hostnames: []string{fmt.Sprintf("other%d.example.com", i)},
	}
}
