package client

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/internal/testclock"
)

func monotonicCache(remember int) *cache {
	clk := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newCache(cacheConfig{size: 1000, ttl: time.Minute, negTTL: 5 * time.Second, maxStale: 10 * time.Minute,
		discTTL: time.Second, window: time.Minute, now: clk.Now, monotonic: remember})
	c.setWatching(true)
	return c
}

// TestRaiseDropsOlderEntries: returning a newer version of a tenant drops
// its older entries under the hostnames of the new document, of the one it
// replaces, and those it was cached under that neither lists; an older
// version is not installed afterwards.
func TestRaiseDropsOlderEntries(t *testing.T) {
	t.Parallel()
	c := monotonicCache(10)
	put := func(h string, e entry) bool { return c.put(h, e, c.begin()) }
	a1 := doc("a", 1, "a1.example.com", "a2.example.com")
	for _, h := range []string{"a1.example.com", "a2.example.com", "moved.example.com"} {
		if !put(h, entry{t: a1, readAt: c.clock()}) {
			t.Fatalf("put %s refused", h)
		}
	}
	put("b.example.com", entry{t: doc("b", 1, "b.example.com"), readAt: c.clock()})

	if !c.accept("a3.example.com", entry{t: doc("a", 2, "a3.example.com"), readAt: c.clock()}) {
		t.Fatal("a newer version was not accepted")
	}
	for _, h := range []string{"a1.example.com", "a2.example.com", "moved.example.com"} {
		if _, st := c.state(h); st != absent {
			t.Errorf("%s after version 2 was accepted: %v, want absent", h, st)
		}
	}
	if v, st := c.state("b.example.com"); v != 1 || st != fresh {
		t.Errorf("other tenant: %d %v", v, st)
	}
	if put("a1.example.com", entry{t: a1, readAt: c.clock()}) {
		t.Error("version 1 was installed after version 2 was returned")
	}
	if c.accept("a1.example.com", entry{t: a1, readAt: c.clock()}) {
		t.Error("version 1 was accepted after version 2 was returned")
	}
	if e, ok := c.remembered("a3.example.com", "a", c.clock()); !ok || e.t.Version != 2 {
		t.Errorf("remembered: %+v %v; want version 2", e, ok)
	}
	if _, ok := c.remembered("a1.example.com", "a", c.clock()); ok {
		t.Error("version 2 remembered for a hostname it does not list")
	}
}

// TestForgottenTenantReseeded: a tenant the memory dropped is remembered
// again from what the cache still holds of it under the hostnames of the
// next answer, so a lagging answer is still refused then.
func TestForgottenTenantReseeded(t *testing.T) {
	t.Parallel()
	c := monotonicCache(1)
	a2 := doc("a", 2, "a1.example.com", "a2.example.com")
	c.put("a1.example.com", entry{t: a2, readAt: c.clock()}, c.begin())
	c.put("b.example.com", entry{t: doc("b", 1, "b.example.com"), readAt: c.clock()}, c.begin())
	if n := c.rememberedTenants(); n != 1 {
		t.Fatalf("%d tenants remembered, want 1", n)
	}
	if c.accept("a2.example.com", entry{t: doc("a", 1, "a1.example.com", "a2.example.com"), readAt: c.clock()}) {
		t.Error("an older version was accepted while the cache holds version 2 under a hostname it lists")
	}
	e, ok := c.remembered("a2.example.com", "a", c.clock())
	if !ok {
		t.Fatal("nothing remembered after reseeding; want version 2")
	}
	if diff := cmp.Diff(a2, e.t); diff != "" {
		t.Errorf("remembered after reseeding (-want +got):\n%s", diff)
	}
}

// TestMonotonicMemoryBounded: the memory holds at most its size of
// tenants, and nothing when off.
func TestMonotonicMemoryBounded(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 3} {
		c := monotonicCache(size)
		for i := range 10 {
			id := string(rune('a' + i))
			c.put(id+".example.com", entry{t: doc(id, 1, id+".example.com"), readAt: c.clock()}, c.begin())
		}
		if n := c.rememberedTenants(); n != size {
			t.Errorf("memory of %d: %d tenants remembered", size, n)
		}
	}
}
