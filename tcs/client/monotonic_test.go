package client_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

var acmeHosts = []string{"acme.example.com", "www.acme.example.com"}

// lagging starts us-east-1 with acme at version 2 and eu-west-1 behind it,
// with acme at version 1 (its applier stopped after version 1); beta is at
// version 1 in both.
func lagging(t *testing.T) (us, eu *regionServer) {
	t.Helper()
	us = startRegion(t, "us-east-1")
	eu = startRegion(t, "eu-west-1")
	put(t, "acme", 1, acmeHosts, us, eu)
	put(t, "acme", 2, acmeHosts, us)
	put(t, "beta", 1, []string{"beta.example.com"}, us, eu)
	return us, eu
}

// TestMonotonicFailover: after returning acme at version 2 from us-east-1,
// a client that can only reach eu-west-1, which holds version 1, returns
// version 2 again (remembered), for Lookup and BatchLookup and for a
// hostname of acme it never looked up, and never version 1.
func TestMonotonicFailover(t *testing.T) {
	t.Parallel()
	us, eu := lagging(t)
	clk := newClock()
	var behind, remembered, stales counter
	c := newClient(t, []*regionServer{us, eu}, client.WithClock(clk.Now), client.WithTTL(time.Minute),
		client.WithMaxStale(10*time.Minute), client.WithHedgeDelay(0), client.WithCircuitBreaker(1000, time.Second),
		client.WithMetrics(client.Hooks{Behind: behind.incS, Remembered: remembered.inc, StaleServe: stales.inc}))
	ctx := testwait.Context(t)
	tn, meta, err := c.LookupMeta(ctx, "acme.example.com")
	if err != nil || tn.Version != 2 || meta.Region != "us-east-1" {
		t.Fatalf("from us-east-1: %+v %+v %v; want version 2", tn, meta, err)
	}

	us.down()
	clk.Advance(2 * time.Minute) // past the TTL: every lookup asks a region
	for _, h := range acmeHosts {
		tn, meta, err := c.LookupMeta(ctx, h)
		if err != nil || tn.Version != 2 || !meta.Remembered || !meta.Cached || meta.Stale || meta.Region != "us-east-1" {
			t.Errorf("%s from eu-west-1 only: %+v %+v %v; want version 2, remembered, read by us-east-1", h, tn, meta, err)
		}
	}
	if eu.lookups.Load() != 2 || behind.get() != 2 || remembered.get() != 2 || stales.get() != 0 {
		t.Errorf("eu-west-1 lookups %d, behind %d, remembered %d, stale %d; want 2, 2, 2, 0",
			eu.lookups.Load(), behind.get(), remembered.get(), stales.get())
	}

	res, err := c.BatchLookup(ctx, []string{"www.acme.example.com", "beta.example.com", "acme.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		want := int64(2)
		if r.Hostname == "beta.example.com" {
			want = 1
		}
		if r.Err != nil || r.Tenant.Version != want || r.Meta.Remembered != (want == 2) {
			t.Errorf("batch %s: %+v %+v %v; want version %d", r.Hostname, r.Tenant, r.Meta, r.Err, want)
		}
	}
	if eu.batches.Load() != 1 {
		t.Errorf("%d BatchLookup RPCs to eu-west-1, want 1", eu.batches.Load())
	}

	// Back: the region that is up to date answers again.
	us.start(t)
	clk.Advance(2 * time.Minute)
	testwait.For(t, "us-east-1 to answer again", func() bool {
		tn, meta, err := c.LookupMeta(ctx, "acme.example.com")
		if err != nil || tn.Version != 2 {
			t.Fatalf("after us-east-1 is back: %+v %+v %v", tn, meta, err)
		}
		return meta.Region == "us-east-1" && !meta.Remembered
	})
}

// TestMonotonicHedge: a hedge to a lagging region that answers first with
// an older version is set aside, and the slow region's newer answer
// returned.
func TestMonotonicHedge(t *testing.T) {
	t.Parallel()
	us, eu := lagging(t)
	var behind, hedges counter
	c := newClient(t, []*regionServer{us, eu}, client.WithHedgeDelay(20*time.Millisecond),
		client.WithMetrics(client.Hooks{Behind: behind.incS, Hedge: hedges.incS}))
	ctx := testwait.Context(t)
	eu.replica.delay.Store(int64(time.Second)) // us-east-1 answers first, hedged or not
	if tn, err := c.Lookup(ctx, "acme.example.com"); err != nil || tn.Version != 2 {
		t.Fatalf("from us-east-1: %+v %v; want version 2", tn, err)
	}
	// A hostname of acme not yet cached, with us-east-1 slow: the hedge
	// reaches eu-west-1, which answers version 1 long before us-east-1.
	eu.replica.delay.Store(0)
	us.replica.delay.Store(int64(300 * time.Millisecond))
	hedged, euLookups := hedges.get(), eu.lookups.Load()
	tn, meta, err := c.LookupMeta(ctx, "www.acme.example.com")
	if err != nil || tn.Version != 2 || meta.Region != "us-east-1" || meta.Remembered {
		t.Fatalf("hedged: %+v %+v %v; want version 2 from us-east-1", tn, meta, err)
	}
	if hedges.get()-hedged != 1 || behind.get() != 1 || eu.lookups.Load()-euLookups != 1 {
		t.Errorf("hedges %d, behind %d, eu-west-1 lookups %d; want 1 each",
			hedges.get()-hedged, behind.get(), eu.lookups.Load()-euLookups)
	}
}

// TestMonotonicCachedHostname: an older version cached under one hostname
// (from a lagging region that answered a hedge first) is not served once a
// newer version has been returned for another hostname of the tenant.
func TestMonotonicCachedHostname(t *testing.T) {
	t.Parallel()
	us, eu := lagging(t)
	c := newClient(t, []*regionServer{us, eu}, client.WithTTL(time.Hour), client.WithHedgeDelay(20*time.Millisecond))
	ctx := testwait.Context(t)
	us.replica.delay.Store(int64(time.Second))
	if tn, meta, err := c.LookupMeta(ctx, "www.acme.example.com"); err != nil || tn.Version != 1 || meta.Region != "eu-west-1" {
		t.Fatalf("from eu-west-1: %+v %+v %v; want version 1", tn, meta, err)
	}
	if _, meta, err := c.LookupMeta(ctx, "www.acme.example.com"); err != nil || !meta.Cached {
		t.Fatalf("again: %+v %v; want cached", meta, err)
	}
	us.replica.delay.Store(0)
	eu.replica.delay.Store(int64(time.Second))
	if tn, meta, err := c.LookupMeta(ctx, "acme.example.com"); err != nil || tn.Version != 2 || meta.Region != "us-east-1" {
		t.Fatalf("from us-east-1: %+v %+v %v; want version 2", tn, meta, err)
	}
	tn, meta, err := c.LookupMeta(ctx, "www.acme.example.com")
	if err != nil || tn.Version != 2 || meta.Cached {
		t.Fatalf("the other hostname after version 2 was returned: %+v %+v %v; want version 2, asked again", tn, meta, err)
	}
	res, err := c.BatchLookup(ctx, acmeHosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Tenant.Version != 2 || !r.Meta.Cached {
			t.Errorf("batch %s: %+v %+v %v; want version 2 from the cache", r.Hostname, r.Tenant, r.Meta, r.Err)
		}
	}
}

// TestMonotonicMemoryBound shows the documented limit: a client that
// remembers one tenant forgets acme once it has answered beta, and then
// returns the lagging region's older version; one that remembers two does
// not. (The cache is off, so only the memory of versions can tell.)
func TestMonotonicMemoryBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		remember int
		want     int64
	}{{1, 1}, {2, 2}, {0, 1}} {
		t.Run(fmt.Sprintf("remember=%d", tc.remember), func(t *testing.T) {
			us, eu := lagging(t)
			c := newClient(t, []*regionServer{us, eu}, client.WithCacheSize(0), client.WithHedgeDelay(0),
				client.WithMonotonicReads(tc.remember))
			ctx := testwait.Context(t)
			for _, h := range []string{"acme.example.com", "beta.example.com"} {
				if _, err := c.Lookup(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			us.down()
			tn, meta, err := c.LookupMeta(ctx, "acme.example.com")
			if err != nil || tn.Version != tc.want || meta.Remembered != (tc.want == 2) {
				t.Errorf("from eu-west-1: %+v %+v %v; want version %d", tn, meta, err, tc.want)
			}
		})
	}
}

// TestMonotonicMovedHostname: when the newest version of a tenant returned
// no longer lists a hostname, a lagging region that still gives the
// hostname to that tenant's older version gets no answer through: the
// lookup serves the hostname's stale answer, or fails.
func TestMonotonicMovedHostname(t *testing.T) {
	t.Parallel()
	us := startRegion(t, "us-east-1")
	eu := startRegion(t, "eu-west-1")
	put(t, "acme", 1, acmeHosts, us, eu)
	// Version 2 drops www (us-east-1 only).
	us.apply(t, replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 2}, map[string]int64{"www.acme.example.com": 2}))
	clk := newClock()
	c := newClient(t, []*regionServer{us, eu}, client.WithClock(clk.Now), client.WithTTL(time.Minute),
		client.WithMaxStale(10*time.Minute), client.WithHedgeDelay(0))
	ctx := testwait.Context(t)
	if tn, err := c.Lookup(ctx, "acme.example.com"); err != nil || tn.Version != 2 {
		t.Fatalf("from us-east-1: %+v %v; want version 2", tn, err)
	}
	if _, err := c.Lookup(ctx, "www.acme.example.com"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("www from us-east-1: %v; want not found", err)
	}
	us.down()
	clk.Advance(2 * time.Minute)
	tn, meta, err := c.LookupMeta(ctx, "www.acme.example.com")
	if !errors.Is(err, client.ErrNotFound) || !meta.Stale {
		t.Errorf("www from eu-west-1, with a stale answer: %+v %+v %v; want the stale not found", tn, meta, err)
	}
	clk.Advance(10 * time.Minute) // past max-stale
	if tn, err := c.Lookup(ctx, "www.acme.example.com"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("www from eu-west-1, nothing stale: %+v %v; want ErrUnavailable", tn, err)
	}
}

// TestMonotonicReleasedHostname: a hostname the client never looked up,
// whose tenant released it in the newest version the client returned, is
// NOT_FOUND (stale, remembered) when the only region left is behind the
// release, not a failure; past max-stale it fails rather than go back.
func TestMonotonicReleasedHostname(t *testing.T) {
	t.Parallel()
	us := startRegion(t, "us-east-1")
	eu := startRegion(t, "eu-west-1")
	put(t, "acme", 1, acmeHosts, us, eu)
	// Version 2 drops www (us-east-1 only).
	us.apply(t, replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 2}, map[string]int64{"www.acme.example.com": 2}))
	clk := newClock()
	c := newClient(t, []*regionServer{us, eu}, client.WithClock(clk.Now), client.WithTTL(time.Minute),
		client.WithMaxStale(10*time.Minute), client.WithHedgeDelay(0))
	ctx := testwait.Context(t)
	if tn, err := c.Lookup(ctx, "acme.example.com"); err != nil || tn.Version != 2 {
		t.Fatalf("from us-east-1: %+v %v; want version 2", tn, err)
	}
	us.down()
	clk.Advance(2 * time.Minute)
	tn, meta, err := c.LookupMeta(ctx, "www.acme.example.com")
	if !errors.Is(err, client.ErrNotFound) || !meta.Stale || !meta.Remembered || meta.Region != "us-east-1" || meta.Age < 2*time.Minute {
		t.Errorf("www from eu-west-1 (acme v1): %+v %+v %v; want not found, stale and remembered, read 2m ago in us-east-1", tn, meta, err)
	}
	// Not cached: the next lookup asks again.
	clk.Advance(10 * time.Minute) // past max-stale
	if tn, err := c.Lookup(ctx, "www.acme.example.com"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("www from eu-west-1 past max-stale: %+v %v; want ErrUnavailable", tn, err)
	}
}
