package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/internal/testclock"
)

func withoutWatch() Option { return func(c *config) { c.noWatch = true } }

func testCache(size int) (*cache, *testclock.Clock) {
	clk := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newCache(cacheConfig{size: size, ttl: time.Minute, negTTL: 5 * time.Second, maxStale: 10 * time.Minute,
		discTTL: time.Second, window: time.Minute, now: clk.Now})
	c.setWatching(true)
	return c, clk
}

func doc(id string, version int64, hostnames ...string) *tenant.Tenant {
	return &tenant.Tenant{ID: id, Version: version, Hostnames: hostnames, Status: tenant.StatusActive}
}

func (c *cache) state(h string) (int64, state) {
	e, st := c.get(h, c.clock())
	if e.t == nil {
		return -1, st
	}
	return e.t.Version, st
}

func TestCacheInvalidateByVersion(t *testing.T) {
	t.Parallel()
	c, _ := testCache(1000)
	put := func(h string, d *tenant.Tenant) { c.put(h, entry{t: d, readAt: c.clock()}, c.begin()) }
	a2 := doc("a", 2, "a1.example.com", "a2.example.com")
	put("a1.example.com", a2)
	put("a2.example.com", a2)
	put("b.example.com", doc("b", 5, "b.example.com"))

	// Already as new: kept.
	c.invalidate("a", 2, []string{"a1.example.com"})
	if v, st := c.state("a1.example.com"); v != 2 || st != fresh {
		t.Errorf("after an invalidation at its own version: %d %v", v, st)
	}
	// Newer: every entry of the tenant goes, named or not.
	c.invalidate("a", 3, []string{"a1.example.com"})
	for _, h := range []string{"a1.example.com", "a2.example.com"} {
		if _, st := c.state(h); st != absent {
			t.Errorf("%s after a newer invalidation: %v, want absent", h, st)
		}
	}
	if _, st := c.state("b.example.com"); st != fresh {
		t.Errorf("other tenant: %v", st)
	}
}

func TestCacheNoStaleFill(t *testing.T) {
	t.Parallel()
	c, _ := testCache(1000)
	tk := c.begin()                                 // a fill starts...
	c.invalidate("a", 3, []string{"a.example.com"}) // ...an invalidation arrives...
	if c.put("a.example.com", entry{t: doc("a", 2, "a.example.com"), readAt: c.clock()}, tk) {
		t.Error("a fill older than an invalidation it raced with was installed")
	}
	if c.put("a.example.com", entry{readAt: c.clock()}, tk) {
		t.Error("a negative fill that raced with an invalidation was installed")
	}
	if !c.put("a.example.com", entry{t: doc("a", 3, "a.example.com"), readAt: c.clock()}, tk) {
		t.Error("a fill as new as the invalidation was not installed")
	}
	// A later fill of an older version of the tenant is refused too.
	if c.put("x.example.com", entry{t: doc("a", 1, "x.example.com"), readAt: c.clock()}, c.begin()) {
		t.Error("an older version of an invalidated tenant was installed")
	}
}

func TestCacheResyncAndStale(t *testing.T) {
	t.Parallel()
	c, clk := testCache(1000)
	tk := c.begin()
	c.put("a.example.com", entry{t: doc("a", 1, "a.example.com"), readAt: c.clock()}, c.begin())
	c.resync()
	e, st := c.get("a.example.com", c.clock())
	if st != expired || !c.staleOK(e, c.clock()) {
		t.Errorf("after a resync: %v, want expired but servable stale", st)
	}
	// A fill that began before the resync is installed already expired.
	c.put("b.example.com", entry{t: doc("b", 1, "b.example.com"), readAt: c.clock()}, tk)
	if _, st := c.state("b.example.com"); st != expired {
		t.Errorf("fill across a resync: %v, want expired", st)
	}
	// Disconnected: the short TTL applies.
	c.put("c.example.com", entry{t: doc("c", 1, "c.example.com"), readAt: c.clock()}, c.begin())
	c.setWatching(false)
	if _, st := c.state("c.example.com"); st != fresh {
		t.Errorf("young entry while disconnected: %v", st)
	}
	clk.Advance(2 * time.Second)
	if _, st := c.state("c.example.com"); st != expired {
		t.Errorf("entry older than the disconnected TTL: %v", st)
	}
	clk.Advance(time.Hour)
	if e, _ := c.get("c.example.com", c.clock()); c.staleOK(e, c.clock()) {
		t.Error("an entry past max-stale may be served")
	}
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	c, _ := testCache(10_000)
	for i := range 50_000 {
		h := fmt.Sprintf("h%d.example.com", i)
		c.put(h, entry{readAt: c.clock()}, c.begin())
	}
	if n := c.len(); n > 11_000+len(c.shards) || n < 9_000 { // 10% of room per shard
		t.Errorf("%d entries in a cache of 10,000", n)
	}
}

// newBenchClient returns a client whose region is never asked, with n
// hostnames cached (sharing 1,000 tenant documents).
func newBenchClient(tb testing.TB, n int) (*Client, []string) {
	c, names, err := filledClient(n)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, names
}

// filledClient returns a client whose region is never asked, with n
// hostnames cached. Its cache holds n entries, or 2n under -short: a shard
// has room for 10% more than its share, 6 standard deviations of the
// spread of hostnames over shards at a million entries but less than one at
// the smoke runs' 10,000, where a fill of n would evict some of itself and
// the benchmarks' hits would miss.
func filledClient(n int) (*Client, []string, error) {
	c, err := New(context.Background(), WithRegions("127.0.0.1:1"), WithCacheSize(benchsize.Pick(n, 2*n)), WithTTL(time.Hour), withoutWatch())
	if err != nil {
		return nil, nil, err
	}
	docs := make([]*tenant.Tenant, 1000)
	for i := range docs {
		docs[i] = doc(fmt.Sprintf("tenant-%d", i), 1)
	}
	names := make([]string, n)
	tk := c.cache.begin()
	now := c.cache.clock()
	for i := range names {
		names[i] = fmt.Sprintf("host-%d.tenants.example.com", i)
		c.cache.put(names[i], entry{t: docs[i%len(docs)], readAt: now, region: "eu-west-1"}, tk)
	}
	return c, names, nil
}

func TestHitAllocatesNothing(t *testing.T) {
	c, names := newBenchClient(t, 1000)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Lookup(ctx, names[7]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a hit allocates %v times", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		if _, m, err := c.LookupMeta(ctx, names[7]); err != nil || !m.Cached || m.Region != "eu-west-1" {
			t.Fatal(m, err)
		}
	})
	if allocs != 0 {
		t.Errorf("a hit through LookupMeta allocates %v times", allocs)
	}
	c.cache.put("nobody.example.com", entry{readAt: c.cache.clock()}, c.cache.begin())
	allocs = testing.AllocsPerRun(1000, func() {
		if _, err := c.Lookup(ctx, "nobody.example.com"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a negative hit allocates %v times", allocs)
	}
}

// benchTenants is how many hostnames the benchmarks' clients cache:
// 1,000,000; under -short 10,000 (a smoke run: its figures mean nothing).
func benchTenants() int { return benchsize.Pick(1_000_000, 10_000) }

var benchClient struct {
	c     *Client
	names []string
}

// benchSetup returns a client with benchTenants hostnames cached (built
// once: a million takes seconds).
func benchSetup(b *testing.B) (*Client, []string) {
	if benchClient.c == nil {
		c, names, err := filledClient(benchTenants())
		if err != nil {
			b.Fatal(err)
		}
		benchClient.c, benchClient.names = c, names
	}
	return benchClient.c, benchClient.names
}

// dropBenchClient closes the million-entry client, so that what a benchmark
// measures next (the garbage collector) does not see it.
func dropBenchClient() {
	if benchClient.c != nil {
		benchClient.c.Close()
		benchClient.c, benchClient.names = nil, nil
	}
}

// hotSequence returns 65,536 lookups of a hot set of hot hostnames spread
// evenly over the whole key space (so over every shard and every part of
// each table), in random order. The hot hostnames are copied into one
// small block, as a compute node has the Host header it just parsed in its
// CPU cache: what is measured is what the cache's own data costs.
func hotSequence(names []string, hot int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	set := make([]string, hot)
	for i := range set {
		set[i] = strings.Clone(names[i*(len(names)/hot)])
	}
	seq := make([]string, 1<<16)
	for i := range seq {
		seq[i] = set[r.IntN(hot)]
	}
	return seq
}

var hotSets = []int{100, 1_000, 10_000}

// BenchmarkLookupHit is a cache hit through Client.Lookup, one goroutine,
// over a hot set of 100 to 10,000 of 1,000,000 cached hostnames. -short:
// 10,000 hostnames (benchTenants), a smoke run: its figures mean nothing.
func BenchmarkLookupHit(b *testing.B) {
	c, names := benchSetup(b)
	benchHotHits(b, names, func(ctx context.Context, h string) error { _, err := c.Lookup(ctx, h); return err })
}

// benchHotHits runs lookup (a hit) over each of hotSets of names, one
// goroutine.
func benchHotHits(b *testing.B, names []string, lookup func(ctx context.Context, hostname string) error) {
	ctx := context.Background()
	for _, n := range hotSets {
		b.Run(fmt.Sprintf("hot=%d", n), func(b *testing.B) {
			seq := hotSequence(names, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := lookup(ctx, seq[i&(len(seq)-1)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkLookupHitParallel is BenchmarkLookupHit on every core. -short:
// 10,000 hostnames (benchTenants), a smoke run: its figures mean nothing.
func BenchmarkLookupHitParallel(b *testing.B) {
	c, names := benchSetup(b)
	ctx := context.Background()
	for _, n := range hotSets {
		b.Run(fmt.Sprintf("hot=%d", n), func(b *testing.B) {
			seq := hotSequence(names, n)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(len(seq))
				for pb.Next() {
					if _, err := c.Lookup(ctx, seq[i&(len(seq)-1)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkLookupHitUniform hits hostnames picked uniformly from all
// 1,000,000 (whose strings are themselves spread over ~30 MB): nearly every
// hit misses the CPU caches and the TLB, for its input as for the cache.
// -short: 10,000 hostnames (benchTenants), a smoke run: its figures mean
// nothing.
func BenchmarkLookupHitUniform(b *testing.B) {
	c, names := benchSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			if _, err := c.Lookup(ctx, names[r.IntN(len(names))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// modelKey returns hostname i, of 15 to 255 bytes: most fit in a slot, some
// spill into the table's long bytes, some are as long as a key can be.
func modelKey(i int) string {
	h := fmt.Sprintf("h%d.%s.example.com", i, strings.Repeat("x", i%61))
	if i%97 == 0 {
		h = strings.Repeat("y", maxKey-len(h)) + h
	}
	return h
}

// TestTableModel checks the lock-free tables against a map, through
// inserts, replacements, deletes and the rebuilds they cause.
func TestTableModel(t *testing.T) {
	t.Parallel()
	c, _ := testCache(100_000)
	model := map[string]int64{}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 50_000 {
		h := modelKey(r.IntN(5_000))
		switch r.IntN(3) {
		case 0, 1:
			v := int64(i + 1)
			c.put(h, entry{t: doc("t-"+h, v, h), readAt: c.clock()}, c.begin())
			model[h] = v
		case 2:
			c.invalidate("t-"+h, int64(i+1), []string{h})
			delete(model, h)
		}
	}
	for i := range 5_000 {
		h := modelKey(i)
		v, st := c.state(h)
		want, ok := model[h]
		if ok != (st != absent) || (ok && v != want) {
			t.Fatalf("%s: version %d state %v; model has %d, %v", h, v, st, want, ok)
		}
	}
	if c.len() != len(model) {
		t.Errorf("len %d, model %d", c.len(), len(model))
	}
}

// TestTableConcurrent runs readers against writers, invalidations and
// evictions (run it with -race): a reader only ever sees the entry of the
// key it asked for.
func TestTableConcurrent(t *testing.T) {
	t.Parallel()
	c, _ := testCache(2_000)
	keys := make([]string, 4_000)
	for i := range keys {
		keys[i] = modelKey(i)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				h := keys[r.IntN(len(keys))]
				if i%5 == 0 {
					c.invalidate("t-"+h, int64(i), []string{h})
				} else {
					c.put(h, entry{t: doc("t-"+h, int64(i), h), readAt: c.clock()}, c.begin())
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for range 200_000 {
				h := keys[r.IntN(len(keys))]
				if e, st := c.get(h, c.clock()); st != absent && e.t.ID != "t-"+h {
					t.Errorf("asked for %s, got the entry of %s", h, e.t.ID)
					return
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(done)
	wg.Wait()
	if n := c.len(); n > 2_000+2_000/10+len(c.shards) {
		t.Errorf("%d entries in a cache of 2,000", n)
	}
}

// TestSlotLayout: a slot is one cache line, and a key, its length, its
// region and its entry survive the table rebuilds that a filling cache
// makes.
func TestSlotLayout(t *testing.T) {
	t.Parallel()
	if n := unsafe.Sizeof(slot{}); n != 64 {
		t.Errorf("a slot is %d bytes, want one 64-byte cache line", n)
	}
	c, _ := testCache(50_000)
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	for i := range 20_000 {
		h := modelKey(i)
		e := entry{readAt: c.clock() - int64(i), region: regions[i%3]}
		if i%2 == 0 {
			e.t = doc("t-"+h, int64(i+1), h)
		}
		if !c.put(h, e, c.begin()) {
			t.Fatalf("put %s refused", h)
		}
	}
	for i := range 20_000 {
		h := modelKey(i)
		e, st := c.get(h, c.clock())
		if st != fresh || e.readAt != c.clock()-int64(i) || e.region != regions[i%3] || (e.t == nil) != (i%2 == 1) ||
			(e.t != nil && (e.t.ID != "t-"+h || e.t.Version != int64(i+1))) {
			t.Fatalf("%s (%d bytes): %+v %v", h, len(h), e, st)
		}
	}
	// Longer than any hostname: neither cached nor found.
	long := strings.Repeat("z", maxKey+1)
	if c.put(long, entry{t: doc("x", 1, "x"), readAt: c.clock()}, c.begin()) {
		t.Error("a key of 256 bytes was cached")
	}
	if _, st := c.get(long, c.clock()); st != absent {
		t.Errorf("a key of 256 bytes: %v", st)
	}
	// Prefixes and extensions of cached keys are other keys.
	for _, h := range []string{modelKey(60)[:inlineKey], modelKey(60)[:inlineKey+1], modelKey(60) + "x", modelKey(5)[1:]} {
		if _, st := c.get(h, c.clock()); st != absent {
			t.Errorf("%q: %v, want absent", h, st)
		}
	}
}
