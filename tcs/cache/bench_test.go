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

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

const benchEntries = 1_000_000

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
		c := cache.New(newFakeReader(), cache.Options{Size: benchEntries * 11 / 10, TTL: time.Hour})
		hosts := make([]string, benchEntries)
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
// full collection, the live heap and the heap objects per entry.
func BenchmarkGCMark(b *testing.B) {
	const n = 200_000
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
			b.ReportMetric(float64(ms.HeapObjects)/n, "objects/entry")
			runtime.KeepAlive(keep)
		})
	}
}

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
