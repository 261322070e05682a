package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
)

// newClient returns a client of the regions, closed at the end of the test,
// and waits for its Watch stream unless the regions are all down.
func newClient(tb testing.TB, regions []*regionServer, opts ...client.Option) *client.Client {
	tb.Helper()
	opts = append([]client.Option{
		client.WithRegions(addrs(regions...)...),
		client.WithLookupTimeout(3 * time.Second),
	}, opts...)
	c, err := client.New(testwait.Context(tb), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	testwait.For(tb, "the watch stream", c.Watching)
	return c
}

func TestHitMiss(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com", "www.acme.example.com"}, r)
	var hits, misses counter
	c := newClient(t, []*regionServer{r}, client.WithTTL(time.Hour),
		client.WithMetrics(client.Hooks{Hit: hits.inc, Miss: misses.inc}))
	ctx := testwait.Context(t)

	tn, meta, err := c.LookupMeta(ctx, "acme.example.com")
	if err != nil || tn.ID != "acme" || tn.Version != 1 {
		t.Fatalf("first lookup: %+v, %v", tn, err)
	}
	if meta.Cached || meta.Stale || meta.Region != "eu-west-1" {
		t.Errorf("first lookup meta = %+v, want a fresh answer from eu-west-1", meta)
	}
	tn2, meta, err := c.LookupMeta(ctx, "acme.example.com")
	if err != nil || tn2 != tn {
		t.Fatalf("second lookup: %+v, %v; want the cached tenant", tn2, err)
	}
	if !meta.Cached || meta.Stale {
		t.Errorf("second lookup meta = %+v, want cached", meta)
	}
	// Not normalised: normalised, then found in the cache.
	if tn3, err := c.Lookup(ctx, "ACME.Example.COM."); err != nil || tn3 != tn {
		t.Errorf("lookup of an unnormalised hostname: %+v, %v", tn3, err)
	}
	if got := r.lookups.Load(); got != 1 {
		t.Errorf("%d Lookup RPCs, want 1", got)
	}

	// Negative answers are cached too.
	for range 3 {
		if _, err := c.Lookup(ctx, "nobody.example.com"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("unknown hostname: %v, want ErrNotFound", err)
		}
	}
	if got := r.lookups.Load(); got != 2 {
		t.Errorf("%d Lookup RPCs, want 2", got)
	}
	// Invalid hostnames never reach a region.
	for _, h := range []string{"", "a..b", "exa mple.com", "-x-.com:99999"} {
		if _, err := c.Lookup(ctx, h); !errors.Is(err, client.ErrInvalidHostname) {
			t.Errorf("Lookup(%q): %v, want ErrInvalidHostname", h, err)
		}
	}
	if got := r.lookups.Load(); got != 2 {
		t.Errorf("%d Lookup RPCs, want 2", got)
	}
	if hits.get() != 4 || misses.get() != 2 {
		t.Errorf("hits, misses = %d, %d; want 4, 2", hits.get(), misses.get())
	}
}

func TestInvalidationViaWatch(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, r)
	put(t, "other", 1, []string{"other.example.com"}, r)
	var invs counter
	c := newClient(t, []*regionServer{r}, client.WithTTL(time.Hour),
		client.WithMetrics(client.Hooks{Invalidation: invs.inc}))
	ctx := testwait.Context(t)
	for _, h := range []string{"acme.example.com", "other.example.com"} {
		if _, err := c.Lookup(ctx, h); err != nil {
			t.Fatal(err)
		}
	}

	put(t, "acme", 2, []string{"acme.example.com"}, r)
	testwait.For(t, "the invalidation", func() bool { return invs.get() >= 1 })
	tn, meta, err := c.LookupMeta(ctx, "acme.example.com")
	if err != nil || tn.Version != 2 || meta.Cached {
		t.Fatalf("after the change: %+v %+v %v; want version 2 from the region", tn, meta, err)
	}
	// The other tenant's entry is untouched.
	if _, meta, err := c.LookupMeta(ctx, "other.example.com"); err != nil || !meta.Cached {
		t.Errorf("other tenant: %+v %v; want still cached", meta, err)
	}

	// A hostname that moves to another tenant: the old owner's entry goes.
	r.apply(t, replicatestTake("other", 2, "acme.example.com", "other.example.com"))
	testwait.For(t, "the move's invalidation", func() bool { return invs.get() >= 2 })
	if tn, err := c.Lookup(ctx, "acme.example.com"); err != nil || tn.ID != "other" {
		t.Errorf("after the move: %+v %v; want tenant other", tn, err)
	}
}

func TestWatchCutAndRestored(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, r)
	var ups, downs counter
	clk := newClock()
	c := newClient(t, []*regionServer{r}, client.WithTTL(time.Hour), client.WithMaxStale(time.Hour),
		client.WithDisconnectedTTL(200*time.Millisecond), client.WithClock(clk.Now),
		client.WithMetrics(client.Hooks{WatchState: func(_ string, up bool) {
			if up {
				ups.inc()
			} else {
				downs.inc()
			}
		}}))
	ctx := testwait.Context(t)
	if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
		t.Fatal(err)
	}

	r.down()
	testwait.For(t, "the client to see the stream gone", func() bool { return !c.Watching() })
	// Changed while the client cannot hear of it.
	rep := r.replica
	if _, err := rep.Apply(ctx, replicatestEvent("acme", 2, "acme.example.com")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(250 * time.Millisecond) // past the disconnected TTL
	tn, meta, err := c.LookupMeta(ctx, "acme.example.com")
	if err != nil || tn.Version != 1 || !meta.Stale {
		t.Fatalf("while down: %+v %+v %v; want version 1, stale", tn, meta, err)
	}

	r.start(t)
	testwait.For(t, "the stream back", c.Watching)
	tn, meta, err = c.LookupMeta(ctx, "acme.example.com")
	if err != nil || tn.Version != 2 || meta.Cached {
		t.Fatalf("after reconnecting: %+v %+v %v; want version 2 from the region", tn, meta, err)
	}
	if ups.get() < 2 || downs.get() < 1 {
		t.Errorf("watch ups, downs = %d, %d", ups.get(), downs.get())
	}
}

func TestOneRegionDown(t *testing.T) {
	t.Parallel()
	us := startRegion(t, "us-east-1")
	eu := startRegion(t, "eu-west-1")
	const n = 30
	for i := range n {
		put(t, fmt.Sprintf("t%03d", i), 1, []string{fmt.Sprintf("h%d.example.com", i)}, us, eu)
	}
	var failovers, opens counter
	c := newClient(t, []*regionServer{us, eu}, client.WithCircuitBreaker(3, time.Hour),
		client.WithMetrics(client.Hooks{Failover: failovers.incS, BreakerOpen: opens.incS}))
	ctx := testwait.Context(t)
	us.down()
	for i := range n {
		tn, meta, err := c.LookupMeta(ctx, fmt.Sprintf("h%d.example.com", i))
		if err != nil || tn.ID != fmt.Sprintf("t%03d", i) {
			t.Fatalf("lookup %d: %+v %v", i, tn, err)
		}
		if meta.Region != "eu-west-1" {
			t.Errorf("lookup %d answered by %q", i, meta.Region)
		}
	}
	if opens.get() != 1 || failovers.get() < n {
		t.Errorf("breaker opens, failovers = %d, %d; want 1, >= %d", opens.get(), failovers.get(), n)
	}
	if got := eu.lookups.Load(); got != n {
		t.Errorf("eu-west-1 got %d lookups, want %d", got, n)
	}
}

func TestAllRegionsDown(t *testing.T) {
	t.Parallel()
	us := startRegion(t, "us-east-1")
	eu := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, us, eu)
	clk := newClock()
	var stales counter
	c := newClient(t, []*regionServer{us, eu}, client.WithClock(clk.Now),
		client.WithTTL(time.Minute), client.WithMaxStale(10*time.Minute), client.WithHedgeDelay(0),
		client.WithMetrics(client.Hooks{StaleServe: stales.inc}))
	ctx := testwait.Context(t)
	if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
		t.Fatal(err)
	}
	us.down()
	eu.down()

	clk.Advance(2 * time.Minute)
	tn, meta, err := c.LookupMeta(ctx, "acme.example.com")
	if err != nil || tn.ID != "acme" || !meta.Stale || meta.Age < 2*time.Minute || meta.Age > 2*time.Minute+time.Second {
		t.Fatalf("within max-stale: %+v %+v %v; want acme, stale, 2m old", tn, meta, err)
	}
	clk.Advance(9 * time.Minute)
	if tn, err := c.Lookup(ctx, "acme.example.com"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("past max-stale: %+v %v; want ErrUnavailable", tn, err)
	}
	if _, err := c.Lookup(ctx, "never.example.com"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("never cached: %v; want ErrUnavailable", err)
	}
	if stales.get() != 1 {
		t.Errorf("%d stale serves, want 1", stales.get())
	}
}

func TestSlowRegionHedged(t *testing.T) {
	t.Parallel()
	us := startRegion(t, "us-east-1")
	eu := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, us, eu)
	us.replica.delay.Store(int64(time.Second))
	var hedges counter
	c := newClient(t, []*regionServer{us, eu}, client.WithHedgeDelay(20*time.Millisecond),
		client.WithMetrics(client.Hooks{Hedge: hedges.incS}))
	start := time.Now()
	tn, meta, err := c.LookupMeta(testwait.Context(t), "acme.example.com")
	took := time.Since(start)
	if err != nil || tn.ID != "acme" || meta.Region != "eu-west-1" {
		t.Fatalf("%+v %+v %v; want acme from eu-west-1", tn, meta, err)
	}
	if took > 500*time.Millisecond {
		t.Errorf("took %v: the hedge did not win", took)
	}
	if hedges.get() != 1 || us.lookups.Load() != 1 || eu.lookups.Load() != 1 {
		t.Errorf("hedges %d, lookups us %d eu %d; want 1 each", hedges.get(), us.lookups.Load(), eu.lookups.Load())
	}
}

func TestThunderingHerd(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, r)
	r.replica.delay.Store(int64(200 * time.Millisecond))
	c := newClient(t, []*regionServer{r})
	ctx := testwait.Context(t)
	var wg sync.WaitGroup
	errs := make(chan error, herd)
	start := make(chan struct{})
	for range herd {
		wg.Go(func() {
			<-start
			tn, err := c.Lookup(ctx, "acme.example.com")
			if err == nil && tn.ID != "acme" {
				err = fmt.Errorf("got tenant %s", tn.ID)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := r.lookups.Load(); got != 1 {
		t.Errorf("%d concurrent misses made %d Lookup RPCs, want 1", herd, got)
	}
}

func TestBatchLookup(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, r)
	put(t, "beta", 1, []string{"beta.example.com"}, r)
	c := newClient(t, []*regionServer{r}, client.WithTTL(time.Hour))
	ctx := testwait.Context(t)
	if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
		t.Fatal(err)
	}
	res, err := c.BatchLookup(ctx, []string{"acme.example.com", "BETA.example.com", "nobody.example.com", "a..b", "beta.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		id     string
		cached bool
		err    error
	}
	want := []struct {
		id     string
		cached bool
		err    error
	}{{"acme", true, nil}, {"beta", false, nil}, {"", false, client.ErrNotFound}, {"", false, client.ErrInvalidHostname}, {"beta", false, nil}}
	for i, w := range want {
		g := res[i]
		id := ""
		if g.Tenant != nil {
			id = g.Tenant.ID
		}
		if id != w.id || g.Meta.Cached != w.cached || !errors.Is(g.Err, w.err) || (w.err == nil && g.Err != nil) {
			t.Errorf("result %d (%s) = %+v, want %+v", i, g.Hostname, got{id, g.Meta.Cached, g.Err}, w)
		}
	}
	if r.batches.Load() != 1 {
		t.Errorf("%d BatchLookup RPCs, want 1", r.batches.Load())
	}
	// What the batch read is cached.
	if _, meta, err := c.LookupMeta(ctx, "beta.example.com"); err != nil || !meta.Cached {
		t.Errorf("after the batch: %+v %v; want cached", meta, err)
	}
}

func TestBreakerProbesBack(t *testing.T) {
	t.Parallel()
	us := startRegion(t, "us-east-1")
	eu := startRegion(t, "eu-west-1")
	const n = 40
	for i := range n {
		put(t, fmt.Sprintf("t%03d", i), 1, []string{fmt.Sprintf("h%d.example.com", i)}, us, eu)
	}
	var opens counter
	c := newClient(t, []*regionServer{us, eu}, client.WithCircuitBreaker(2, 100*time.Millisecond),
		client.WithNegativeTTL(0), client.WithTTL(time.Nanosecond), // every lookup asks a region
		client.WithMetrics(client.Hooks{BreakerOpen: opens.incS}))
	ctx := testwait.Context(t)
	us.down()
	for i := range 5 {
		if _, meta, err := c.LookupMeta(ctx, fmt.Sprintf("h%d.example.com", i)); err != nil || meta.Region != "eu-west-1" {
			t.Fatalf("while us-east-1 is down: %+v %v", meta, err)
		}
	}
	if opens.get() != 1 {
		t.Fatalf("%d breaker opens, want 1", opens.get())
	}
	before := us.lookups.Load()
	us.start(t)
	// After the cooldown a lookup probes us-east-1, and it is local again.
	testwait.For(t, "us-east-1 to be used again", func() bool {
		_, meta, err := c.LookupMeta(ctx, "h7.example.com")
		return err == nil && meta.Region == "us-east-1"
	})
	if us.lookups.Load() <= before {
		t.Error("us-east-1 got no lookup after coming back")
	}
}

// TestBatchCollapsesWithLookups: a hostname in flight in a BatchLookup is
// not asked again by concurrent Lookups, and one in flight in a Lookup is
// not asked again by a BatchLookup: one RPC in flight per hostname.
func TestBatchCollapsesWithLookups(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	for _, id := range []string{"acme", "beta", "gamma"} {
		put(t, id, 1, []string{id + ".example.com"}, r)
	}
	r.replica.delay.Store(int64(300 * time.Millisecond))
	c := newClient(t, []*regionServer{r}, client.WithTTL(time.Hour), client.WithHedgeDelay(0))
	ctx := testwait.Context(t)

	// A batch in flight, then lookups of its hostnames.
	batchDone := make(chan []client.Result, 1)
	go func() {
		res, err := c.BatchLookup(ctx, []string{"acme.example.com", "beta.example.com"})
		if err != nil {
			t.Error(err)
		}
		batchDone <- res
	}()
	testwait.For(t, "the batch RPC", func() bool { return r.batches.Load() == 1 })
	var wg sync.WaitGroup
	for i := range 50 {
		h := []string{"acme.example.com", "BETA.example.com"}[i%2]
		wg.Go(func() {
			tn, meta, err := c.LookupMeta(ctx, h)
			if err != nil || !strings.EqualFold(tn.ID+".example.com", h) || meta.Region != "eu-west-1" {
				t.Errorf("Lookup(%s) during the batch: %+v %+v %v", h, tn, meta, err)
			}
		})
	}
	wg.Wait()
	for _, res := range <-batchDone {
		if res.Err != nil || res.Tenant.ID+".example.com" != res.Hostname || res.Meta.Cached {
			t.Errorf("batch result %+v, want its tenant from the region", res)
		}
	}
	if got := r.lookups.Load(); got != 0 {
		t.Errorf("%d Lookup RPCs for hostnames a batch had in flight, want 0", got)
	}

	// A lookup in flight, then a batch holding its hostname.
	lookupDone := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctx, "gamma.example.com")
		lookupDone <- err
	}()
	testwait.For(t, "the Lookup RPC", func() bool { return r.lookups.Load() == 1 })
	res, err := c.BatchLookup(ctx, []string{"gamma.example.com", "nobody.example.com", "acme.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-lookupDone; err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Tenant.ID != "gamma" || !errors.Is(res[1].Err, client.ErrNotFound) ||
		res[2].Err != nil || !res[2].Meta.Cached {
		t.Errorf("batch results %+v", res)
	}
	if got := r.batchRequests(); len(got) != 2 || !slices.Equal(got[1], []string{"nobody.example.com"}) {
		t.Errorf("BatchLookup RPCs asked for %q; want the second to ask only for nobody.example.com", got)
	}
	if got := r.lookups.Load(); got != 1 {
		t.Errorf("%d Lookup RPCs, want 1", got)
	}
}

// TestBatchLookupCallerGone: a batch whose caller gives up still lands its
// hostnames (in the cache, and for lookups that joined them).
func TestBatchLookupCallerGone(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, r)
	r.replica.delay.Store(int64(200 * time.Millisecond))
	c := newClient(t, []*regionServer{r}, client.WithTTL(time.Hour), client.WithHedgeDelay(0))
	short, cancel := context.WithTimeout(testwait.Context(t), 50*time.Millisecond)
	defer cancel()
	if _, err := c.BatchLookup(short, []string{"acme.example.com"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("batch past its deadline: %v", err)
	}
	tn, err := c.Lookup(testwait.Context(t), "acme.example.com") // joins the batch's flight
	if err != nil || tn.ID != "acme" {
		t.Fatalf("lookup after the abandoned batch: %+v %v", tn, err)
	}
	if r.lookups.Load() != 0 || r.batches.Load() != 1 {
		t.Errorf("lookups %d, batches %d; want 0, 1", r.lookups.Load(), r.batches.Load())
	}
}

// TestPreciseClock: WithPreciseClock starts no coarse-clock ticker, and
// hits and TTL expiry work as with the coarse clock.
func TestPreciseClock(t *testing.T) {
	t.Parallel()
	for _, precise := range []bool{false, true} {
		// A region of its own: its cache's answers carry their age.
		r := startRegion(t, "eu-west-1")
		put(t, "acme", 1, []string{"acme.example.com"}, r)
		var hits, misses counter
		opts := []client.Option{client.WithTTL(200 * time.Millisecond), client.WithMetrics(client.Hooks{Hit: hits.inc, Miss: misses.inc})}
		if precise {
			opts = append(opts, client.WithPreciseClock())
		}
		c := newClient(t, []*regionServer{r}, opts...)
		if client.CoarseClock(c) == precise {
			t.Errorf("precise %v: coarse clock %v", precise, client.CoarseClock(c))
		}
		ctx := testwait.Context(t)
		for range 2 {
			if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
				t.Fatal(err)
			}
		}
		if hits.get() != 1 || misses.get() != 1 {
			t.Errorf("precise %v: %d hits, %d misses; want a miss then a hit", precise, hits.get(), misses.get())
		}
		time.Sleep(250 * time.Millisecond) // past the TTL: no condition to wait for
		if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
			t.Fatal(err)
		}
		if misses.get() != 2 {
			t.Errorf("precise %v: %d misses after the TTL; want the expired entry missed", precise, misses.get())
		}
	}
}
