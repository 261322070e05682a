package cache_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// TestRejectedFillKeptForStale: a read that raced with an invalidation of a
// newer version is answered but not served fresh; it replaces the older
// entry kept for stale-if-error, so that when the replica then fails the
// node answers what it last answered, not the version before it.
func TestRejectedFillKeptForStale(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 5, host))
	mustLookup(t, c, host, "acme", 5)
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 6, Hostnames: []string{host}})

	r.setHold(true)
	out := make(chan cache.Result, 1)
	go func() {
		res, err := c.Lookup(context.Background(), host)
		if err != nil {
			t.Error(err)
		}
		out <- res
	}()
	rd := r.nextRead(t)
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 7, Hostnames: []string{host}})
	rd.answer(makeTenant("acme", 6, host))
	if res := <-out; res.Version != 6 || res.Stale {
		t.Fatalf("racing lookup = v%d stale %v, want v6 not stale", res.Version, res.Stale)
	}
	if _, ok := c.Peek(host); ok {
		t.Fatal("a read older than an invalidation that arrived during it is served fresh")
	}
	id, v, _, outdated, ok := c.Kept(host)
	if !ok || id != "acme" || v != 6 || !outdated {
		t.Fatalf("kept entry = %s v%d outdated %v (present %v), want acme v6 out of date", id, v, outdated, ok)
	}

	r.setHold(false)
	r.setErr(errReplica)
	clk.Advance(time.Second)
	res := mustLookup(t, c, host, "acme", 6)
	if !res.Stale {
		t.Error("the kept answer was not marked stale")
	}
	if s := c.Stats(); s.Rejected != 1 {
		t.Errorf("Rejected = %d, want 1", s.Rejected)
	}

	// The next read that succeeds replaces it, fresh.
	r.setErr(nil)
	r.set(makeTenant("acme", 7, host))
	mustLookup(t, c, host, "acme", 7)
	if res, ok := c.Peek(host); !ok || res.Version != 7 {
		t.Errorf("Peek = %+v, %v; want v7 fresh", res, ok)
	}
}

// TestRejectedFillKeepsNewerVersion: a read rejected because its tenant is
// cached at a newer version does not replace that entry.
func TestRejectedFillKeepsNewerVersion(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache(t, cache.Options{})
	older := c.Begin()
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 5, Hostnames: []string{host}})
	if !c.Put(host, makeTenant("acme", 5, host)) {
		t.Fatal("fill not installed")
	}
	if c.Finish(host, makeTenant("acme", 4, host), older) {
		t.Fatal("an older read that raced with an invalidation was installed")
	}
	if id, v, _, outdated, ok := c.Kept(host); !ok || id != "acme" || v != 5 || outdated {
		t.Errorf("kept = %s v%d outdated %v (%v), want acme v5 fresh", id, v, outdated, ok)
	}
}

// TestMissRetriesOnce: a miss with nothing cached whose read fails reads
// the replica a second time before it gives up; with a kept entry (served
// stale instead) or a Fallback (the second path) it does not.
func TestMissRetriesOnce(t *testing.T) {
	t.Parallel()
	t.Run("second read answers", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{})
		r.setHold(true)
		out := make(chan error, 1)
		go func() {
			res, err := c.Lookup(context.Background(), host)
			if err == nil && res.Version != 1 {
				t.Errorf("answer v%d, want v1", res.Version)
			}
			out <- err
		}()
		r.nextRead(t).reply <- reply{err: errReplica}
		r.nextRead(t).answer(makeTenant("acme", 1, host))
		if err := <-out; err != nil {
			t.Fatalf("lookup after a failed then a good read: %v", err)
		}
		if s := c.Stats(); s.Reads != 2 || s.ReadErrors != 1 || s.Retries != 1 {
			t.Errorf("stats %+v: want 2 reads, 1 error, 1 retry", s)
		}
		if res, ok := c.Peek(host); !ok || res.Version != 1 {
			t.Errorf("the second read was not installed: %+v, %v", res, ok)
		}
	})
	t.Run("both fail", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{})
		r.setErr(errReplica)
		_, err := c.Lookup(context.Background(), host)
		wantCode(t, err, tenant.Unavailable)
		if s := c.Stats(); s.Reads != 2 || s.ReadErrors != 2 || s.Retries != 1 {
			t.Errorf("stats %+v: want 2 reads, 2 errors, 1 retry", s)
		}
	})
	t.Run("slow twice", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{ReadTimeout: 10 * time.Millisecond})
		r.setHold(true) // never answered: both reads time out
		_, err := c.Lookup(context.Background(), host)
		wantCode(t, err, tenant.Unavailable)
		if s := c.Stats(); s.Reads != 2 || s.Retries != 1 {
			t.Errorf("stats %+v: want 2 reads, 1 retry", s)
		}
		for range 2 {
			if rd := r.nextRead(t); !errors.Is(rd.ctx.Err(), context.DeadlineExceeded) {
				t.Errorf("read context: %v, want deadline exceeded", rd.ctx.Err())
			}
		}
	})
	t.Run("kept entry served instead", func(t *testing.T) {
		t.Parallel()
		c, r, clk := newCache(t, cache.Options{})
		r.set(makeTenant("acme", 1, host))
		mustLookup(t, c, host, "acme", 1)
		clk.Advance(time.Minute)
		r.setErr(errReplica)
		if res := mustLookup(t, c, host, "acme", 1); !res.Stale {
			t.Error("not stale")
		}
		if s := c.Stats(); s.Retries != 0 || s.Reads != 2 {
			t.Errorf("stats %+v: want 2 reads (one per lookup), no retry", s)
		}
	})
	t.Run("fallback is the second path", func(t *testing.T) {
		t.Parallel()
		fb := newFakeReader()
		fb.set(makeTenant("acme", 1, host))
		c, r, _ := newCache(t, cache.Options{Fallback: fb})
		r.setErr(errReplica)
		if res := mustLookup(t, c, host, "acme", 1); !res.Fallback {
			t.Error("not a fallback answer")
		}
		if s := c.Stats(); s.Retries != 0 || s.Reads != 1 {
			t.Errorf("stats %+v: want 1 read, no retry", s)
		}
	})
}

// TestNoGoingBackProperty: whatever the interleaving of changes, deliveries,
// losses, gaps and fills (one at a time per hostname, as Lookup's
// singleflight runs them), the entry a node holds for a hostname, which it
// serves fresh or, when the replica fails, stale, is never of a tenant at a
// version older than one a fill of that hostname has answered before.
func TestNoGoingBackProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		c, _, _ := newCache(t, cache.Options{
			MaxRemembered: rapid.SampledFrom([]int{2, 1000}).Draw(rt, "maxRemembered"),
		})
		m := newModel()
		fills := map[string]*propFill{} // at most one per hostname
		answered := map[string]map[string]int64{}
		for _, h := range propHosts {
			answered[h] = map[string]int64{}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"change": func(rt *rapid.T) {
				h := rapid.SampledFrom(propHosts).Draw(rt, "hostname")
				switch id := m.owner[h]; {
				case id != "":
					m.owner[h] = ""
					m.change(id, h)
				case rapid.Bool().Draw(rt, "claim"):
					id := rapid.SampledFrom(propTenants).Draw(rt, "tenant")
					m.owner[h] = id
					m.change(id)
				default:
					m.change(rapid.SampledFrom(propTenants).Draw(rt, "tenant"))
				}
			},
			"deliver": func(rt *rapid.T) {
				if rapid.IntRange(0, 3).Draw(rt, "kind") == 0 {
					c.Gap()
					return
				}
				if len(m.pending) == 0 {
					rt.Skip("nothing pending")
				}
				p := m.pending[0]
				m.pending = m.pending[1:]
				c.Invalidate(p.inv)
			},
			"fill": func(rt *rapid.T) {
				h := rapid.SampledFrom(propHosts).Draw(rt, "hostname")
				f := fills[h]
				switch {
				case f == nil:
					fills[h] = &propFill{hostname: h, ticket: c.Begin()}
				case f.read == nil:
					a := m.history[m.now()][h]
					f.read = &a
				default:
					delete(fills, h)
					if f.read.tenantID == "" {
						c.Finish(h, nil, f.ticket)
						return
					}
					c.Finish(h, makeTenant(f.read.tenantID, f.read.version, h), f.ticket)
					answered[h][f.read.tenantID] = max(answered[h][f.read.tenantID], f.read.version)
				}
			},
			"": func(rt *rapid.T) {
				for _, h := range propHosts {
					id, v, negative, _, ok := c.Kept(h)
					if !ok || negative {
						continue
					}
					if hi := answered[h][id]; v < hi {
						rt.Fatalf("%s: the node holds %s@%d after a fill answered %s@%d (history %s)", h, id, v, id, hi, fmtHistory(m.history, h))
					}
					if !slices.ContainsFunc(m.history, func(s map[string]answer) bool { return s[h] == answer{id, v} }) {
						rt.Fatalf("%s: the node holds %s@%d, which the replica never answered", h, id, v)
					}
				}
			},
		})
	})
}

// TestSiblingAnswer: with the replica down and nothing kept for a hostname
// its tenant claimed just before, the tenant's document kept under another
// of its hostnames answers it (stale) if that document lists it and is at
// least the claiming version; not otherwise.
func TestSiblingAnswer(t *testing.T) {
	t.Parallel()
	const a, b = "acme.example.com", "b.acme.example.com"
	setup := func(t *testing.T) (*cache.Cache, *fakeReader, *clock) {
		c, r, clk := newCache(t, cache.Options{})
		r.set(makeTenant("acme", 1, a))
		mustLookup(t, c, a, "acme", 1)
		return c, r, clk
	}
	t.Run("claimed, sibling read after the claim", func(t *testing.T) {
		t.Parallel()
		c, r, clk := setup(t)
		r.set(makeTenant("acme", 2, a, b))
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{a, b}})
		mustLookup(t, c, a, "acme", 2)
		r.setErr(errReplica)
		clk.Advance(time.Second)
		res := mustLookup(t, c, b, "acme", 2)
		if !res.Stale || res.Age(clk.Now()) != time.Second {
			t.Errorf("sibling answer stale %v age %v, want stale, 1s", res.Stale, res.Age(clk.Now()))
		}
		if s := c.Stats(); s.SiblingServes != 1 {
			t.Errorf("SiblingServes = %d, want 1", s.SiblingServes)
		}
		// Kept for b from now on (served at once while the replica fails).
		if id, v, _, outdated, ok := c.Kept(b); !ok || id != "acme" || v != 2 || !outdated {
			t.Errorf("kept for b: %s v%d outdated %v (%v), want acme v2 out of date", id, v, outdated, ok)
		}
		mustLookup(t, c, b, "acme", 2)
		if _, ok := c.Peek(b); ok {
			t.Error("a sibling answer is served fresh")
		}
	})
	t.Run("sibling older than the claim", func(t *testing.T) {
		t.Parallel()
		c, r, _ := setup(t)
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{a, b}})
		r.setErr(errReplica)
		_, err := c.Lookup(context.Background(), b)
		wantCode(t, err, tenant.Unavailable)
	})
	t.Run("released", func(t *testing.T) {
		t.Parallel()
		c, r, _ := setup(t)
		r.set(makeTenant("acme", 2, a, b))
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{a, b}})
		mustLookup(t, c, a, "acme", 2)
		r.set(makeTenant("acme", 3, a))
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 3, Hostnames: []string{a, b}})
		mustLookup(t, c, a, "acme", 3)
		r.setErr(errReplica)
		_, err := c.Lookup(context.Background(), b)
		wantCode(t, err, tenant.Unavailable)
		if s := c.Stats(); s.SiblingServes != 0 {
			t.Errorf("SiblingServes = %d, want 0", s.SiblingServes)
		}
	})
	t.Run("another tenant's document", func(t *testing.T) {
		t.Parallel()
		c, r, _ := setup(t)
		r.set(makeTenant("zeta", 1, "zeta.example.com", b))
		c.Invalidate(tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{"zeta.example.com", b}})
		r.set(makeTenant("acme", 2, a, b)) // a replica that disagrees: not zeta's document
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{a}})
		mustLookup(t, c, a, "acme", 2)
		r.setErr(errReplica)
		_, err := c.Lookup(context.Background(), b)
		wantCode(t, err, tenant.Unavailable)
	})
}

// TestRefresh: with Options.Refresh an invalidation reads the hostnames it
// names again in the background, a hostname just claimed included, so the
// next lookups are hits; at most RefreshConcurrency at once.
func TestRefresh(t *testing.T) {
	t.Parallel()
	const a, b = "acme.example.com", "b.acme.example.com"
	t.Run("reads the named hostnames", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{Refresh: true})
		r.set(makeTenant("acme", 1, a))
		mustLookup(t, c, a, "acme", 1)
		if _, err := c.Lookup(context.Background(), b); tenant.ErrorCode(err) != tenant.NotFound {
			t.Fatalf("lookup %s = %v, want NotFound", b, err)
		}
		r.set(makeTenant("acme", 2, a, b, "new.acme.example.com"))
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{a, b, "new.acme.example.com"}})
		testwait.For(t, "both looked-up hostnames cached at version 2", func() bool {
			ra, oka := c.Peek(a)
			rb, okb := c.Peek(b)
			return oka && okb && ra.Version == 2 && rb.Version == 2
		})
		// The hostname nobody looked up is not read: a bulk change must not
		// fill the cache with tenants nobody asks for.
		if s := c.Stats(); s.Refreshes != 2 || s.Reads != 4 || s.Misses != 2 || s.Entries != 2 {
			t.Errorf("stats %+v: want 2 refreshes, 4 reads, 2 misses, 2 entries", s)
		}
		c.Invalidate(tcs.Invalidation{CommittedAt: time.Now()}) // a heartbeat
		if s := c.Stats(); s.Refreshes != 2 {
			t.Errorf("a heartbeat refreshed: %+v", s)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{Refresh: true})
		var hosts []string
		for i := range cache.RefreshConcurrency + 2 {
			hosts = append(hosts, hostOf(i))
			if _, err := c.Lookup(context.Background(), hostOf(i)); tenant.ErrorCode(err) != tenant.NotFound {
				t.Fatalf("lookup %s = %v, want NotFound", hostOf(i), err)
			}
		}
		r.setHold(true)
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: hosts})
		if s := c.Stats(); s.Refreshes != cache.RefreshConcurrency || s.RefreshSkipped != 2 {
			t.Errorf("stats %+v: want %d refreshes, 2 skipped", s, cache.RefreshConcurrency)
		}
		for range cache.RefreshConcurrency {
			r.nextRead(t).answer(nil)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{})
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{a}})
		if s := c.Stats(); s.Refreshes != 0 || r.calls.Load() != 0 {
			t.Errorf("stats %+v, %d reads: want none", s, r.calls.Load())
		}
	})
}
