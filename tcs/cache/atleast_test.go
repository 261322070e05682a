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

// atLeast runs LookupAtLeast without admission control.
func atLeast(tb testing.TB, c *cache.Cache, hostname string, w cache.Want) (cache.Result, bool, error) {
	tb.Helper()
	return c.LookupAtLeast(context.Background(), hostname, w, nil)
}

func TestWantMet(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 5, host))
	res := mustLookup(t, c, host, "acme", 5)
	notFound := tenant.Errorf(tenant.NotFound, "no tenant")
	for _, tc := range []struct {
		name string
		w    cache.Want
		res  cache.Result
		err  error
		want bool
	}{
		{"same version", cache.Want{MinVersion: 5}, res, nil, true},
		{"older", cache.Want{MinVersion: 6}, res, nil, false},
		{"its tenant", cache.Want{TenantID: "acme", MinVersion: 5}, res, nil, true},
		{"another tenant", cache.Want{TenantID: "globex", MinVersion: 1}, res, nil, false},
		{"not found", cache.Want{MinVersion: 0}, cache.Result{}, notFound, false},
		{"an error", cache.Want{MinVersion: 1}, res, errReplica, false},
	} {
		if got := tc.w.Met(tc.res, tc.err); got != tc.want {
			t.Errorf("%s: Met = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLookupAtLeastHitOrRead: a fresh entry that is new enough is a hit,
// with no read; one that is not is read through, and the newer answer
// installed.
func TestLookupAtLeastHitOrRead(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 5, host))
	mustLookup(t, c, host, "acme", 5)
	reads := r.calls.Load()

	res, hit, err := atLeast(t, c, host, cache.Want{TenantID: "acme", MinVersion: 5})
	if err != nil || !hit || res.Version != 5 {
		t.Fatalf("at least v5 = v%d hit %v err %v, want v5 from the cache", res.Version, hit, err)
	}
	if n := r.calls.Load() - reads; n != 0 {
		t.Fatalf("a hit read the replica %d times", n)
	}

	r.set(makeTenant("acme", 6, host)) // applied, its invalidation not yet here
	res, hit, err = atLeast(t, c, host, cache.Want{MinVersion: 6})
	if err != nil || hit || res.Version != 6 || res.Stale {
		t.Fatalf("at least v6 = v%d hit %v stale %v err %v, want v6 read through", res.Version, hit, res.Stale, err)
	}
	if id, v, _, ok := c.Fresh(host); !ok || id != "acme" || v != 6 {
		t.Fatalf("fresh entry after the read = %s v%d (%v), want acme v6", id, v, ok)
	}
	if res, _ := c.Peek(host); res.Version != 6 {
		t.Fatalf("a plain lookup after it gets v%d, want v6", res.Version)
	}
}

// TestLookupAtLeastWaitsForALaterRead: a read in flight that began before
// the call is not its answer (it may predate the write the caller made);
// the call waits for it and then reads again.
func TestLookupAtLeastWaitsForALaterRead(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	r.setHold(true)
	plain := make(chan cache.Result, 1)
	go func() {
		res, err := c.Lookup(context.Background(), host)
		if err != nil {
			t.Error(err)
		}
		plain <- res
	}()
	first := r.nextRead(t) // began before LookupAtLeast was called

	type outcome struct {
		res cache.Result
		hit bool
		err error
	}
	out := make(chan outcome, 1)
	go func() {
		res, hit, err := atLeast(t, c, host, cache.Want{MinVersion: 1})
		out <- outcome{res, hit, err}
	}()
	// Wait until the call has joined the read in flight (it counts a miss).
	testwait.For(t, "LookupAtLeast to join the read in flight", func() bool { return c.Stats().Misses == 2 })
	first.answer(makeTenant("acme", 1, host))
	if res := <-plain; res.Version != 1 {
		t.Fatalf("plain lookup = v%d, want v1", res.Version)
	}
	second := r.nextRead(t)
	second.answer(makeTenant("acme", 2, host))
	o := <-out
	if o.err != nil || o.hit || o.res.Version != 2 {
		t.Fatalf("LookupAtLeast = v%d hit %v err %v, want v2 from the second read", o.res.Version, o.hit, o.err)
	}
}

// TestLookupAtLeastOlderReadKeepsNewerEntry: a read through that finds the
// replica behind the entry cached (a replica that lags the invalidation
// that refreshed the entry, say) is returned for the caller to judge, but
// does not replace the newer entry.
func TestLookupAtLeastOlderReadKeepsNewerEntry(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	c.Put(host, makeTenant("acme", 7, host))
	r.set(makeTenant("acme", 5, host))
	res, hit, err := atLeast(t, c, host, cache.Want{MinVersion: 8})
	if err != nil || hit || res.Version != 5 {
		t.Fatalf("at least v8 = v%d hit %v err %v, want the replica's v5", res.Version, hit, err)
	}
	if (cache.Want{MinVersion: 8}).Met(res, err) {
		t.Fatal("v5 meets min_version 8")
	}
	if id, v, _, ok := c.Fresh(host); !ok || id != "acme" || v != 7 {
		t.Fatalf("entry after an older read = %s v%d (fresh %v), want acme v7 still", id, v, ok)
	}
}

// TestLookupAtLeastRacingInvalidation: an invalidation of a newer version
// that arrives while the read through runs makes its answer not fresh: it
// is returned (it meets the caller's version) but not served fresh later.
func TestLookupAtLeastRacingInvalidation(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	c.Put(host, makeTenant("acme", 7, host))
	r.setHold(true)
	type outcome struct {
		res cache.Result
		err error
	}
	out := make(chan outcome, 1)
	go func() {
		res, _, err := atLeast(t, c, host, cache.Want{TenantID: "acme", MinVersion: 8})
		out <- outcome{res, err}
	}()
	rd := r.nextRead(t)
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 9, Hostnames: []string{host}})
	rd.answer(makeTenant("acme", 8, host))
	o := <-out
	if o.err != nil || o.res.Version != 8 {
		t.Fatalf("LookupAtLeast = v%d err %v, want v8", o.res.Version, o.err)
	}
	if _, ok := c.Peek(host); ok {
		t.Fatal("a read older than an invalidation that arrived during it is served fresh")
	}
	if id, v, _, outdated, ok := c.Kept(host); !ok || id != "acme" || v != 8 || !outdated {
		t.Fatalf("kept = %s v%d outdated %v (%v), want acme v8 out of date", id, v, outdated, ok)
	}
}

// TestLookupAtLeastStale: when the replica cannot be read, the kept answer
// comes back marked stale; it meets the caller's version only if its own
// version does.
func TestLookupAtLeastStale(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{TTL: time.Second, FailingAfter: -1})
	r.set(makeTenant("acme", 5, host))
	mustLookup(t, c, host, "acme", 5)
	clk.Advance(2 * time.Second)
	r.setErr(errReplica)
	for _, min := range []int64{5, 6} {
		w := cache.Want{TenantID: "acme", MinVersion: min}
		res, hit, err := atLeast(t, c, host, w)
		if err != nil || hit || !res.Stale || res.Version != 5 {
			t.Fatalf("at least v%d with the replica down = v%d stale %v hit %v err %v, want v5 stale", min, res.Version, res.Stale, hit, err)
		}
		if got, want := w.Met(res, err), min == 5; got != want {
			t.Errorf("stale v5 meets min_version %d: %v, want %v", min, got, want)
		}
	}
}

// TestLookupAtLeastAdmit: every read through asks admit as for an unknown
// hostname (a caller could otherwise force a read of a hot hostname on
// every call); a refused call gets the kept entry only if it meets the
// version asked for.
func TestLookupAtLeastAdmit(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{TTL: time.Second})
	r.set(makeTenant("acme", 5, host))
	mustLookup(t, c, host, "acme", 5)
	clk.Advance(2 * time.Second)
	refuse := errors.New("over budget")
	var asked []bool
	admit := func(known bool) error { asked = append(asked, known); return refuse }
	reads := r.calls.Load()

	res, _, err := c.LookupAtLeast(context.Background(), host, cache.Want{MinVersion: 5}, admit)
	if err != nil || !res.Stale || res.Version != 5 {
		t.Fatalf("refused, kept v5 meets v5: v%d stale %v err %v, want v5 stale", res.Version, res.Stale, err)
	}
	_, _, err = c.LookupAtLeast(context.Background(), host, cache.Want{MinVersion: 6}, admit)
	if !errors.Is(err, refuse) {
		t.Fatalf("refused, kept v5 below v6: err %v, want admit's", err)
	}
	if len(asked) != 2 || asked[0] || asked[1] {
		t.Fatalf("admit asked with known = %v, want [false false]", asked)
	}
	if n := r.calls.Load() - reads; n != 0 {
		t.Fatalf("refused calls read the replica %d times", n)
	}
}

// TestLookupAtLeastNotFound: NOT_FOUND is read through too (it has no
// version) and returned as it is.
func TestLookupAtLeastNotFound(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	if _, err := c.Lookup(context.Background(), host); tenant.ErrorCode(err) != tenant.NotFound {
		t.Fatalf("Lookup of an unknown hostname: %v", err)
	}
	r.set(makeTenant("acme", 1, host))
	res, hit, err := atLeast(t, c, host, cache.Want{MinVersion: 1})
	if err != nil || hit || res.TenantID != "acme" {
		t.Fatalf("at least v1 after a cached NOT_FOUND = %q hit %v err %v, want acme read through", res.TenantID, hit, err)
	}
}
