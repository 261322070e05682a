package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// atLeastClient is a client of regions whose hooks count regions behind,
// failovers and breakers opened.
func atLeastClient(tb testing.TB, regions []string, behind, failover, breaker *counter) *client.Client {
	tb.Helper()
	return newFakeClient(tb, regions, client.WithMetrics(client.Hooks{
		Behind: behind.incS, Failover: failover.incS, BreakerOpen: breaker.incS,
	}), client.WithHedgeDelay(time.Second))
}

// TestLookupAtLeastFromCache: a cached answer at the version asked for is
// returned without an RPC.
func TestLookupAtLeastFromCache(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 3, []string{"acme.example.com"}, r)
	var behind, failover, breaker counter
	c := atLeastClient(t, addrs(r), &behind, &failover, &breaker)
	ctx := testwait.Context(t)
	if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
		t.Fatal(err)
	}
	rpcs := r.lookups.Load()
	for _, tc := range []struct {
		name string
		get  func() (*tenant.Tenant, error)
	}{
		{"LookupAtLeast", func() (*tenant.Tenant, error) { return c.LookupAtLeast(ctx, "acme.example.com", 3) }},
		{"LookupTenantAtLeast", func() (*tenant.Tenant, error) {
			return c.LookupTenantAtLeast(ctx, "acme.example.com", "acme", 2)
		}},
		{"not normalised", func() (*tenant.Tenant, error) { return c.LookupAtLeast(ctx, "ACME.example.com", 3) }},
	} {
		got, err := tc.get()
		if err != nil || got.Version != 3 {
			t.Fatalf("%s: %v, %v; want v3", tc.name, got, err)
		}
	}
	if n := r.lookups.Load() - rpcs; n != 0 {
		t.Errorf("answers from the cache made %d RPCs", n)
	}
}

// TestLookupAtLeastOtherRegion: when the local region is behind the version
// asked for, the next region answers at once; the local region's breaker
// does not count it as a failure, and the newer answer is cached.
func TestLookupAtLeastOtherRegion(t *testing.T) {
	t.Parallel()
	local, remote := startRegion(t, "eu-west-1"), startRegion(t, "us-east-1")
	put(t, "acme", 1, []string{"acme.example.com"}, local, remote)
	put(t, "acme", 2, []string{"acme.example.com"}, remote) // local lags
	var behind, failover, breaker counter
	c := atLeastClient(t, addrs(local, remote), &behind, &failover, &breaker)
	ctx := testwait.Context(t)
	if got, err := c.Lookup(ctx, "acme.example.com"); err != nil || got.Version != 1 {
		t.Fatalf("Lookup: %v, %v; want the local v1", got, err)
	}
	for i := range 10 { // more than the breaker's failures in a row
		got, err := c.LookupAtLeast(ctx, "acme.example.com", 2)
		if err != nil || got.Version != 2 {
			t.Fatalf("LookupAtLeast #%d: %v, %v; want v2 from us-east-1", i, got, err)
		}
		if i == 0 {
			// The answer was cached: the next ones are hits.
			if got, err := c.Lookup(ctx, "acme.example.com"); err != nil || got.Version != 2 {
				t.Fatalf("Lookup after it: %v, %v; want the cached v2", got, err)
			}
		}
	}
	if behind.get() != 1 || breaker.get() != 0 || failover.get() != 0 {
		t.Errorf("hooks: behind %d, breaker opened %d, failovers %d; want 1, 0, 0", behind.get(), breaker.get(), failover.get())
	}
}

// TestLookupAtLeastRetries: when every region is behind, the lookup asks
// again with backoff until one catches up.
func TestLookupAtLeastRetries(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, r)
	var behind, failover, breaker counter
	c := atLeastClient(t, addrs(r), &behind, &failover, &breaker)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type outcome struct {
		t   *tenant.Tenant
		err error
	}
	out := make(chan outcome, 1)
	go func() {
		got, err := c.LookupTenantAtLeast(ctx, "acme.example.com", "acme", 2)
		out <- outcome{got, err}
	}()
	testwait.For(t, "the lookup to ask twice", func() bool { return r.lookups.Load() >= 2 })
	select {
	case o := <-out:
		t.Fatalf("returned %v, %v before the region caught up", o.t, o.err)
	default:
	}
	put(t, "acme", 2, []string{"acme.example.com"}, r)
	o := <-out
	if o.err != nil || o.t.Version != 2 {
		t.Fatalf("LookupTenantAtLeast: %v, %v; want v2", o.t, o.err)
	}
	if breaker.get() != 0 {
		t.Errorf("the breaker opened %d times for a region that was only behind", breaker.get())
	}
}

// TestLookupAtLeastGivesUp: at its deadline the lookup fails naming the
// newest version a region had.
func TestLookupAtLeastGivesUp(t *testing.T) {
	t.Parallel()
	a, b := startRegion(t, "eu-west-1"), startRegion(t, "us-east-1")
	put(t, "acme", 3, []string{"acme.example.com"}, a)
	put(t, "acme", 4, []string{"acme.example.com"}, b)
	var behind, failover, breaker counter
	c := atLeastClient(t, addrs(a, b), &behind, &failover, &breaker)
	// The deadlines leave both regions time to answer at least once on a
	// loaded machine: a deadline that ends before any region answered is
	// ErrUnavailable, not a TooOldError (TestLookupAtLeastUnavailable).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.LookupAtLeast(ctx, "acme.example.com", 7)
	var too *client.TooOldError
	if !errors.Is(err, client.ErrTooOld) || !errors.As(err, &too) {
		t.Fatalf("err %v, want a TooOldError", err)
	}
	if too.Best != 4 || too.Region != "us-east-1" || too.MinVersion != 7 {
		t.Errorf("TooOldError = %+v, want best 4 in us-east-1, min 7", too)
	}
	if !strings.Contains(err.Error(), "was 4 (us-east-1)") {
		t.Errorf("message %q does not name the best version", err)
	}

	// A tenant no region has: version 0, named.
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	put(t, "globex", 1, []string{"globex.example.com"}, a, b)
	_, err = c.LookupTenantAtLeast(ctx, "globex.example.com", "initech", 1)
	if !errors.As(err, &too) || too.Best != 0 || too.TenantID != "initech" {
		t.Fatalf("err %v, want a TooOldError of initech at 0", err)
	}

	// The caller cancelling is not a give-up.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c.LookupAtLeast(ctx, "acme.example.com", 9); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// TestLookupAtLeastUnavailable: a deadline that ends before any region
// answered is ErrUnavailable, naming the failure, not a TooOldError.
func TestLookupAtLeastUnavailable(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	var behind, failover, breaker counter
	c := atLeastClient(t, addrs(r), &behind, &failover, &breaker)
	r.down()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := c.LookupAtLeast(ctx, "acme.example.com", 2)
	if !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrTooOld) {
		t.Fatalf("err %v, want ErrUnavailable and no TooOldError", err)
	}
	if !strings.Contains(err.Error(), "at version 2 or newer") {
		t.Errorf("message %q does not name the version asked for", err)
	}
}

// TestLookupAtLeastAsItIs: NOT_FOUND (without a tenant id) and a hostname
// the named tenant's write released are returned as they are.
func TestLookupAtLeastAsItIs(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com"}, r)
	r.apply(t, replicatest.Event("acme", 2, nil, map[string]int64{"acme.example.com": 2}))   // released
	r.apply(t, replicatest.Event("globex", 1, map[string]int64{"acme.example.com": 3}, nil)) // claimed by another
	var behind, failover, breaker counter
	c := atLeastClient(t, addrs(r), &behind, &failover, &breaker)
	ctx := testwait.Context(t)
	got, err := c.LookupTenantAtLeast(ctx, "acme.example.com", "acme", 2)
	if err != nil || got.ID != "globex" {
		t.Fatalf("LookupTenantAtLeast after acme released it: %v, %v; want globex as it is", got, err)
	}
	if _, err := c.LookupAtLeast(ctx, "nobody.example.com", 5); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("unknown hostname: %v, want ErrNotFound", err)
	}
	if _, err := c.LookupTenantAtLeast(ctx, "acme.example.com", "AB", 1); err == nil || !strings.Contains(err.Error(), "tenant id") {
		t.Fatalf("bad tenant id: %v, want an error naming it", err)
	}
}

// rywIDs numbers the tenants of TestReadYourWritesProperty's runs.
var rywIDs atomic.Int64

// TestReadYourWritesProperty: after a write acknowledged at version V (the
// catalog answered; appliers and invalidation feeds deliver it to each
// region later, in any order, or lose the invalidation),
// LookupTenantAtLeast(V) returns the tenant at V or newer, whatever the
// client and the regions' caches held before, and so does LookupAtLeast(V)
// unless it answers NOT_FOUND (a region that has not applied the tenant's
// creation, which it cannot tell from a hostname nobody owns): it never
// returns an older version.
func TestReadYourWritesProperty(t *testing.T) {
	regions := []*regionServer{startRegion(t, "eu-west-1"), startRegion(t, "us-east-1"), startRegion(t, "ap-southeast-2")}
	c := newFakeClient(t, addrs(regions...), client.WithHedgeDelay(5*time.Millisecond))
	rapid.Check(t, func(rt *rapid.T) {
		id := fmt.Sprintf("ryw-%d", rywIDs.Add(1))
		h := id + ".example.com"
		writes := rapid.IntRange(1, 4).Draw(rt, "writes")
		named := rapid.Bool().Draw(rt, "tenant id given")
		var wg sync.WaitGroup
		defer wg.Wait()
		for v := int64(1); v <= int64(writes); v++ {
			// Each region applies the write after its own delay, and
			// broadcasts its invalidation after another (or loses it).
			for i, r := range regions {
				applyAfter := time.Duration(rapid.IntRange(0, 40).Draw(rt, fmt.Sprintf("v%d apply delay %d", v, i))) * time.Millisecond
				lost := rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("v%d invalidation lost %d", v, i)) == 0
				invAfter := time.Duration(rapid.IntRange(0, 40).Draw(rt, fmt.Sprintf("v%d invalidation delay %d", v, i))) * time.Millisecond
				ev := replicatest.Event(id, v, map[string]int64{h: 1}, nil)
				wg.Go(func() {
					time.Sleep(applyAfter)
					res, err := r.replica.Apply(context.Background(), ev)
					if err != nil {
						rt.Error(err)
						return
					}
					if lost {
						return
					}
					time.Sleep(invAfter)
					if err := r.hub.Broadcast(context.Background(), tcs.Invalidation{TenantID: id, Version: v, Hostnames: res.Hostnames}); err != nil && !errors.Is(err, fanout.ErrClosed) {
						rt.Error(err)
					}
				})
			}
			// The write is acknowledged: look it up at once, sometimes
			// after a plain lookup that may cache an older answer.
			if rapid.Bool().Draw(rt, fmt.Sprintf("v%d plain lookup first", v)) {
				_, _ = c.Lookup(context.Background(), h)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var got *tenant.Tenant
			var err error
			if named {
				got, err = c.LookupTenantAtLeast(ctx, h, id, v)
			} else {
				got, err = c.LookupAtLeast(ctx, h, v)
			}
			cancel()
			if !named && errors.Is(err, client.ErrNotFound) {
				// Documented: without the tenant id, a region that has
				// not applied the tenant's creation yet answers NOT_FOUND,
				// which has no version to compare.
				continue
			}
			if err != nil {
				rt.Fatalf("after write v%d: %v", v, err)
			}
			if got.ID != id || got.Version < v {
				rt.Fatalf("after write v%d: got %s v%d", v, got.ID, got.Version)
			}
			if rapid.Bool().Draw(rt, fmt.Sprintf("v%d delivered before the next write", v)) {
				wg.Wait()
			}
		}
	})
}
