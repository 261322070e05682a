package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// TestStaleOutdatedEntry: an entry made out of date by an invalidation is
// never served fresh, is served stale while the replica fails, and never
// wins over a read that succeeded.
func TestStaleOutdatedEntry(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)
	clk.Advance(2 * time.Second)
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}})

	// The replica lags behind the broadcast: the read is what the caller
	// gets (not stale), but it is not installed fresh, only kept (it
	// replaces the entry read 2 s earlier) for stale-if-error.
	mustLookup(t, c, host, "acme", 1)
	if _, ok := c.Peek(host); ok {
		t.Fatal("an out-of-date entry is served fresh")
	}

	r.setErr(errReplica)
	clk.Advance(3 * time.Second)
	res := mustLookup(t, c, host, "acme", 1)
	if !res.Stale || res.Fallback || res.Age(clk.Now()) != 3*time.Second {
		t.Errorf("replica down: stale %v, fallback %v, age %v; want stale, 3s old (the second read)", res.Stale, res.Fallback, res.Age(clk.Now()))
	}

	r.setErr(nil)
	r.set(makeTenant("acme", 2, host))
	if res := mustLookup(t, c, host, "acme", 2); res.Stale {
		t.Error("a successful read is marked stale")
	}
	if p, ok := c.Peek(host); !ok || p.Version != 2 {
		t.Errorf("Peek = %+v, %v; want the newer version installed", p, ok)
	}
	if s := c.Stats(); s.StaleServes != 1 {
		t.Errorf("StaleServes = %d, want 1", s.StaleServes)
	}
}

// TestStaleOutdatedByTenant: an entry superseded by an invalidation of its
// tenant that does not name its hostname is kept for stale-if-error too,
// and stays out of date after the invalidation has left the window.
func TestStaleOutdatedByTenant(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{InvalidationWindow: time.Second, ReadTimeout: 100 * time.Millisecond, TTL: time.Hour})
	r.set(makeTenant("acme", 1, host, "acme.example.org"))
	mustLookup(t, c, host, "acme", 1)
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{"acme.example.org"}})
	if _, ok := c.Peek(host); ok {
		t.Fatal("an entry of a superseded version is served fresh")
	}
	clk.Advance(2 * time.Second)
	c.Invalidate(tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{"zeta.example.com"}}) // acme's leaves the window
	if _, ok := c.Peek(host); ok {
		t.Fatal("an out-of-date entry became fresh again when its invalidation left the window")
	}
	r.setErr(errReplica)
	if res := mustLookup(t, c, host, "acme", 1); !res.Stale {
		t.Error("not marked stale")
	}
}

// TestStaleNegative: negative answers are served stale within MaxStale
// when the replica fails, expired or made out of date (the hostname was
// claimed), with their age.
func TestStaleNegative(t *testing.T) {
	t.Parallel()
	for _, claimed := range []bool{false, true} {
		c, r, clk := newCache(t, cache.Options{})
		res, err := c.Lookup(context.Background(), host)
		wantCode(t, err, tenant.NotFound)
		if res.Stale || res.TenantID != "" || !res.ReadAt.Equal(clk.Now()) {
			t.Errorf("fresh NotFound: %+v; want not stale, read now", res)
		}
		if claimed {
			c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{host}})
		}
		r.setErr(errReplica)
		clk.Advance(10 * time.Second) // past the negative TTL
		res, err = c.Lookup(context.Background(), host)
		wantCode(t, err, tenant.NotFound)
		if !res.Stale || res.Age(clk.Now()) != 10*time.Second {
			t.Errorf("claimed %v, replica down: %+v; want a stale NotFound 10s old", claimed, res)
		}
		clk.Advance(5 * time.Minute) // past max-stale
		_, err = c.Lookup(context.Background(), host)
		wantCode(t, err, tenant.Unavailable)
		if s := c.Stats(); s.StaleServes != 1 || s.NegativeHits != 0 {
			t.Errorf("claimed %v: stats %+v, want 1 stale serve and no hit", claimed, s)
		}
	}
}

// TestReadNotFoundDropsKeptEntry: with negative caching off, a read that
// finds the hostname unknown removes the kept entry, so that it is not
// served stale afterwards.
func TestReadNotFoundDropsKeptEntry(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{NegativeTTL: -1})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}})
	r.mu.Lock()
	delete(r.byHost, host)
	r.mu.Unlock()
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.NotFound)
	if n := c.Len(); n != 0 {
		t.Errorf("Len = %d after a NotFound read, want 0", n)
	}
	r.setErr(errReplica)
	_, err = c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.Unavailable)
}

// TestLimitTTL: a limit applies at once to the entries already cached, and
// lifting it restores the TTLs.
func TestLimitTTL(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)
	_, err := c.Lookup(context.Background(), "nobody.example.com")
	wantCode(t, err, tenant.NotFound)
	clk.Advance(3 * time.Second)

	c.LimitTTL(2 * time.Second)
	if _, ok := c.Peek(host); ok {
		t.Error("an entry read 3s ago is fresh under a 2s limit")
	}
	if _, _, _, ok := c.Fresh("nobody.example.com"); ok {
		t.Error("a negative entry read 3s ago is fresh under a 2s limit")
	}
	mustLookup(t, c, host, "acme", 1) // read again
	clk.Advance(time.Second)
	if _, ok := c.Peek(host); !ok {
		t.Error("an entry read 1s ago is not fresh under a 2s limit")
	}
	clk.Advance(time.Second)
	if _, ok := c.Peek(host); ok {
		t.Error("an entry read 2s ago is fresh under a 2s limit")
	}

	c.LimitTTL(0)
	if _, ok := c.Peek(host); !ok {
		t.Error("lifting the limit did not restore the 30s TTL")
	}
	if _, _, _, ok := c.Fresh("nobody.example.com"); ok {
		t.Error("a negative entry 5s old is fresh with the 5s negative TTL")
	}
	if n := r.calls.Load(); n != 3 {
		t.Errorf("replica reads = %d, want 3", n)
	}
}

// fallbackReader is a Fallback whose answer the test sets.
type fallbackReader struct{ *fakeReader }

func TestFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup runs on a cache whose replica then fails; fb is what the
		// fallback holds (nil: NotFound), fbErr its error.
		setup  func(t *testing.T, c *cache.Cache, r *fakeReader)
		fb     *tenant.Tenant
		fbErr  error
		wantID string // "": NotFound
		wantV  int64
		// wantFallback: the answer is the fallback's; else the kept one.
		wantFallback bool
		wantCode     tenant.Code // for a failure
		fbReads      int64
		discarded    uint64
	}{
		{
			name:         "cold miss: the fallback's tenant",
			setup:        func(*testing.T, *cache.Cache, *fakeReader) {},
			fb:           makeTenant("acme", 3, host),
			wantID:       "acme",
			wantV:        3,
			wantFallback: true,
			fbReads:      1,
		},
		{
			name:         "cold miss: the fallback's NotFound",
			setup:        func(*testing.T, *cache.Cache, *fakeReader) {},
			wantFallback: true,
			fbReads:      1,
		},
		{
			name:     "cold miss, the fallback fails too",
			setup:    func(*testing.T, *cache.Cache, *fakeReader) {},
			fbErr:    errors.New("fallback down"),
			wantCode: tenant.Unavailable,
			fbReads:  1,
		},
		{
			name: "cold miss: the fallback is older than a remembered invalidation",
			setup: func(_ *testing.T, c *cache.Cache, _ *fakeReader) {
				c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 4, Hostnames: []string{"acme.example.org"}})
			},
			fb:        makeTenant("acme", 3, host),
			wantCode:  tenant.Unavailable,
			fbReads:   1,
			discarded: 1,
		},
		{
			name: "merely expired entry: served without asking the fallback",
			setup: func(t *testing.T, c *cache.Cache, r *fakeReader) {
				r.set(makeTenant("acme", 2, host))
				mustLookup(t, c, host, "acme", 2)
			},
			fb:     makeTenant("acme", 3, host),
			wantID: "acme",
			wantV:  2,
		},
		{
			name: "out-of-date entry: the fallback has the newer version",
			setup: func(t *testing.T, c *cache.Cache, r *fakeReader) {
				r.set(makeTenant("acme", 2, host))
				mustLookup(t, c, host, "acme", 2)
				c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 3, Hostnames: []string{host}})
			},
			fb:           makeTenant("acme", 3, host),
			wantID:       "acme",
			wantV:        3,
			wantFallback: true,
			fbReads:      1,
		},
		{
			name: "out-of-date entry: the fallback is behind",
			setup: func(t *testing.T, c *cache.Cache, r *fakeReader) {
				r.set(makeTenant("acme", 2, host))
				mustLookup(t, c, host, "acme", 2)
				c.Invalidate(tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{host}})
			},
			fb:        makeTenant("acme", 2, host),
			wantID:    "acme",
			wantV:     2,
			fbReads:   1,
			discarded: 1,
		},
		{
			name: "out-of-date entry: the fallback has the new owner",
			setup: func(t *testing.T, c *cache.Cache, r *fakeReader) {
				r.set(makeTenant("acme", 2, host))
				mustLookup(t, c, host, "acme", 2)
				c.Invalidate(tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{host}})
			},
			fb:           makeTenant("zeta", 1, host),
			wantID:       "zeta",
			wantV:        1,
			wantFallback: true,
			fbReads:      1,
		},
		{
			name: "out-of-date entry: a fallback NotFound cannot be compared",
			setup: func(t *testing.T, c *cache.Cache, r *fakeReader) {
				r.set(makeTenant("acme", 2, host))
				mustLookup(t, c, host, "acme", 2)
				c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 3, Hostnames: []string{host}})
			},
			wantID:    "acme",
			wantV:     2,
			fbReads:   1,
			discarded: 1,
		},
		{
			name: "out-of-date negative entry: the fallback has the claim",
			setup: func(t *testing.T, c *cache.Cache, _ *fakeReader) {
				_, err := c.Lookup(context.Background(), host)
				wantCode(t, err, tenant.NotFound)
				c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{host}})
			},
			fb:           makeTenant("acme", 1, host),
			wantID:       "acme",
			wantV:        1,
			wantFallback: true,
			fbReads:      1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fb := fallbackReader{newFakeReader()}
			if tt.fb != nil {
				fb.set(tt.fb)
			}
			fb.setErr(tt.fbErr)
			c, r, clk := newCache(t, cache.Options{Fallback: fb})
			tt.setup(t, c, r)
			clk.Advance(time.Minute)
			r.setErr(errReplica)
			before := c.Len()

			res, err := c.Lookup(context.Background(), host)
			if tt.wantCode != "" {
				wantCode(t, err, tt.wantCode)
			} else {
				if tt.wantID == "" {
					wantCode(t, err, tenant.NotFound)
				} else if err != nil || res.TenantID != tt.wantID || res.Version != tt.wantV {
					t.Fatalf("Lookup = %s@%d, %v; want %s@%d", res.TenantID, res.Version, err, tt.wantID, tt.wantV)
				}
				if !res.Stale || res.Fallback != tt.wantFallback {
					t.Errorf("stale %v, fallback %v; want stale, fallback %v", res.Stale, res.Fallback, tt.wantFallback)
				}
				if tt.wantFallback && res.Age(clk.Now()) != 0 {
					t.Errorf("fallback answer age %v, want 0", res.Age(clk.Now()))
				}
			}
			if n := fb.calls.Load(); n != tt.fbReads {
				t.Errorf("fallback reads = %d, want %d", n, tt.fbReads)
			}
			if n := c.Len(); n != before {
				t.Errorf("Len %d → %d: a fallback answer was installed", before, n)
			}
			s := c.Stats()
			if s.FallbackDiscarded != tt.discarded {
				t.Errorf("FallbackDiscarded = %d, want %d", s.FallbackDiscarded, tt.discarded)
			}
			if want := map[bool]uint64{true: 1}[tt.wantFallback]; s.FallbackServes != want {
				t.Errorf("FallbackServes = %d, want %d", s.FallbackServes, want)
			}
		})
	}
}

// TestFailingReplicaServesAtOnce: once FailingAfter reads in a row have
// failed, kept entries are served without waiting for a read, one probe
// at a time reads the replica, and the first probe that succeeds ends it.
func TestFailingReplicaServesAtOnce(t *testing.T) {
	t.Parallel()
	const n = 50
	c, r, clk := newCache(t, cache.Options{FailingAfter: 2, ReadTimeout: time.Hour})
	for i := range n {
		r.set(makeTenant("acme", 1, hostOf(i)))
		mustLookup(t, c, hostOf(i), "acme", 1)
	}
	clk.Advance(time.Minute)
	r.setHold(true) // the replica freezes: reads wait until answered

	// Two lookups wait for their reads, which fail.
	for i := range 2 {
		done := make(chan cache.Result, 1)
		go func() {
			res, _ := c.Lookup(context.Background(), hostOf(i))
			done <- res
		}()
		r.nextRead(t).reply <- reply{err: errReplica}
		if res := <-done; !res.Stale {
			t.Fatalf("lookup %d: not stale", i)
		}
	}
	if !c.Stats().ReplicaFailing {
		t.Fatal("two failed reads in a row: the replica does not count as failing")
	}
	// The rest are answered at once, while one probe waits on the replica.
	for i := 2; i < n; i++ {
		if res := mustLookup(t, c, hostOf(i), "acme", 1); !res.Stale {
			t.Fatalf("lookup %d: not stale", i)
		}
	}
	probe := r.nextRead(t)
	select {
	case extra := <-r.reads:
		t.Fatalf("a second probe (%s) while one is in flight", extra.hostname)
	default:
	}
	if s := c.Stats(); s.StaleAtOnce != n-2 || s.StaleServes != n {
		t.Errorf("stats %+v: want %d stale at once, %d stale", s, n-2, n)
	}
	// The replica is back: the probe succeeds, and lookups read again.
	r.setHold(false)
	probe.answer(makeTenant("acme", 1, probe.hostname))
	testwait.For(t, "the probe to end the failing state", func() bool { return !c.Stats().ReplicaFailing })
	r.set(makeTenant("acme", 2, hostOf(n-1)))
	if res := mustLookup(t, c, hostOf(n-1), "acme", 2); res.Stale {
		t.Error("a read after the replica came back is stale")
	}
}
