package cache_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

const host = "acme.example.com"

func TestHitMissAndTTL(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{})
	want := makeTenant("acme", 1, host, "acme.example.org")
	r.set(want)

	res := mustLookup(t, c, host, "acme", 1)
	if res.Stale || res.Age(clk.Now()) != 0 {
		t.Errorf("fresh read: stale %v, age %v; want false, 0", res.Stale, res.Age(clk.Now()))
	}
	got, err := res.Tenant()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tcsv1.TenantToProto(want), got, protocmp.Transform()); diff != "" {
		t.Errorf("cached tenant (-want +got):\n%s", diff)
	}

	clk.Advance(29 * time.Second)
	res = mustLookup(t, c, host, "acme", 1)
	if n := r.calls.Load(); n != 1 {
		t.Errorf("replica reads after a hit = %d, want 1", n)
	}
	if age := res.Age(clk.Now()); age != 29*time.Second {
		t.Errorf("age of a hit = %v, want 29s", age)
	}
	if p, ok := c.Peek(host); !ok || p.Version != 1 {
		t.Errorf("Peek = %+v, %v; want version 1, true", p, ok)
	}

	clk.Advance(2 * time.Second) // past the TTL
	if _, ok := c.Peek(host); ok {
		t.Error("Peek found an expired entry")
	}
	r.set(makeTenant("acme", 2, host, "acme.example.org"))
	mustLookup(t, c, host, "acme", 2)
	if n := r.calls.Load(); n != 2 {
		t.Errorf("replica reads after expiry = %d, want 2", n)
	}
	s := c.Stats()
	if s.PositiveHits != 2 || s.Misses != 2 || s.Reads != 2 {
		t.Errorf("stats = %+v, want 2 hits (one Lookup, one Peek), 2 misses, 2 reads", s)
	}
}

func TestNegativeCaching(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{})
	for range 3 {
		_, err := c.Lookup(context.Background(), host)
		wantCode(t, err, tenant.NotFound)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("replica reads for a cached unknown hostname = %d, want 1", n)
	}
	if _, ok := c.Peek(host); ok {
		t.Error("Peek returned a negative entry as a tenant")
	}
	clk.Advance(5 * time.Second) // the negative TTL
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.NotFound)
	if n := r.calls.Load(); n != 2 {
		t.Errorf("replica reads after the negative TTL = %d, want 2", n)
	}
}

func TestNegativeCachingOff(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{NegativeTTL: -1})
	for range 2 {
		_, err := c.Lookup(context.Background(), host)
		wantCode(t, err, tenant.NotFound)
	}
	if n := r.calls.Load(); n != 2 {
		t.Errorf("replica reads = %d, want 2 with negative caching off", n)
	}
}

func TestInvalidationOfCreateDropsNegativeEntry(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.NotFound)

	r.set(makeTenant("acme", 1, host))
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{host}})
	mustLookup(t, c, host, "acme", 1)
}

// TestInvalidationRules checks each rule of the Invalidation comment in
// tcs.proto against an entry of acme at version 5.
func TestInvalidationRules(t *testing.T) {
	t.Parallel()
	other := "other.example.com"
	tests := []struct {
		name string
		inv  tcs.Invalidation
		kept bool
	}{
		{"older version of the same tenant", tcs.Invalidation{TenantID: "acme", Version: 4, Hostnames: []string{host}}, true},
		{"same version of the same tenant", tcs.Invalidation{TenantID: "acme", Version: 5, Hostnames: []string{host}}, true},
		{"newer version of the same tenant", tcs.Invalidation{TenantID: "acme", Version: 6, Hostnames: []string{host}}, false},
		{"another tenant names the hostname", tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{host}}, false},
		{"newer version without the hostname", tcs.Invalidation{TenantID: "acme", Version: 6, Hostnames: []string{other}}, false},
		{"same version without the hostname", tcs.Invalidation{TenantID: "acme", Version: 5, Hostnames: []string{other}}, true},
		{"another tenant, another hostname", tcs.Invalidation{TenantID: "zeta", Version: 9, Hostnames: []string{other}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, r, clk := newCache(t, cache.Options{})
			r.set(makeTenant("acme", 5, host))
			mustLookup(t, c, host, "acme", 5)

			c.Invalidate(tt.inv)
			// An entry made out of date is kept, for stale-if-error only.
			if n := c.Len(); n != 1 {
				t.Errorf("Len after the invalidation = %d, want 1", n)
			}
			if _, ok := c.Peek(host); ok != tt.kept {
				t.Errorf("entry kept = %v, want %v", ok, tt.kept)
			}
			if _, _, _, ok := c.Fresh(host); ok != tt.kept {
				t.Errorf("entry fresh = %v, want %v", ok, tt.kept)
			}
			// With the replica down, both are served, marked stale.
			clk.Advance(time.Minute)
			r.setErr(errReplica)
			res, err := c.Lookup(context.Background(), host)
			if err != nil || !res.Stale || res.Version != 5 || res.Age(clk.Now()) != time.Minute {
				t.Errorf("replica down: %+v, %v; want stale version 5, a minute old", res, err)
			}
			// Once the replica answers, the read is what is served, and
			// installed.
			r.setErr(nil)
			r.set(makeTenant("acme", 6, host))
			mustLookup(t, c, host, "acme", 6)
			if _, ok := c.Peek(host); !ok {
				t.Error("the read after the outage was not installed")
			}
		})
	}
}

func TestConcurrentMissesMakeOneRead(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 1, host))
	r.setHold(true)

	const n = 1000
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Go(func() {
			started.Done()
			res, err := c.Lookup(context.Background(), host)
			if err == nil && res.Version != 1 {
				err = errors.New("wrong version")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	rd := r.nextRead(t)
	started.Wait()
	// Every lookup has missed and is joining the read (a miss is counted
	// just before joining) before the read returns.
	testwait.For(t, "every lookup to miss", func() bool { return c.Stats().Misses == n })
	rd.answer(makeTenant("acme", 1, host))
	done.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := r.calls.Load(); got != 1 {
		t.Errorf("replica reads = %d, want 1", got)
	}
}

// TestFillRacingInvalidation reproduces the race of invariant 4 step by step:
// a read starts, an invalidation arrives, then the read returns.
func TestFillRacingInvalidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// read is what the read returns (nil: NotFound), after inv arrived.
		read      *tenant.Tenant
		inv       tcs.Invalidation
		installed bool
	}{
		{
			name:      "read returns the old version",
			read:      makeTenant("acme", 1, host),
			inv:       tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}},
			installed: false,
		},
		{
			name:      "read returns the new version",
			read:      makeTenant("acme", 2, host),
			inv:       tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}},
			installed: true,
		},
		{
			name:      "read returns a newer version still",
			read:      makeTenant("acme", 3, host),
			inv:       tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}},
			installed: true,
		},
		{
			name:      "read returns NotFound while the hostname is being created",
			read:      nil,
			inv:       tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{host}},
			installed: false,
		},
		{
			name:      "read returns the old owner while the hostname moves",
			read:      makeTenant("zeta", 4, host),
			inv:       tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}},
			installed: false,
		},
		{
			name:      "old version, invalidation names only another hostname of the tenant",
			read:      makeTenant("acme", 1, host, "acme.example.org"),
			inv:       tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{"acme.example.org"}},
			installed: false,
		},
		{
			name:      "invalidation of an unrelated hostname",
			read:      makeTenant("acme", 1, host),
			inv:       tcs.Invalidation{TenantID: "zeta", Version: 2, Hostnames: []string{"zeta.example.com"}},
			installed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, r, _ := newCache(t, cache.Options{})
			r.setHold(true)
			type outcome struct {
				res cache.Result
				err error
			}
			out := make(chan outcome, 1)
			go func() {
				res, err := c.Lookup(context.Background(), host)
				out <- outcome{res, err}
			}()
			rd := r.nextRead(t)  // the read has started...
			c.Invalidate(tt.inv) // ...the invalidation arrives...
			rd.answer(tt.read)   // ...and the read returns.
			o := <-out
			// The caller gets what was read: its lookup began before the
			// change, so either answer is a correct one for it.
			if tt.read != nil && (o.err != nil || o.res.Version != tt.read.Version) {
				t.Fatalf("racing lookup = %+v, %v; want version %d", o.res, o.err, tt.read.Version)
			}

			p, ok := c.Peek(host)
			if ok != (tt.installed && tt.read != nil) {
				t.Fatalf("Peek after the race = %+v, %v; want installed %v", p, ok, tt.installed)
			}
			r.setHold(false)
			fresh := makeTenant("acme", 9, host)
			r.set(fresh)
			before := r.calls.Load()
			res, err := c.Lookup(context.Background(), host)
			reads := r.calls.Load() - before
			switch {
			case tt.installed && tt.read != nil:
				if err != nil || res.Version != tt.read.Version || reads != 0 {
					t.Errorf("next lookup = %+v, %v after %d reads; want the installed version %d from cache", res, err, reads, tt.read.Version)
				}
			default:
				if err != nil || res.Version != 9 || reads != 1 {
					t.Errorf("next lookup = %+v, %v after %d reads; want a new read (version 9)", res, err, reads)
				}
			}
		})
	}
}

func TestFillRacingGapNotInstalled(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	r.setHold(true)
	done := make(chan error, 1)
	go func() {
		_, err := c.Lookup(context.Background(), host)
		done <- err
	}()
	rd := r.nextRead(t)
	c.Gap()
	rd.answer(makeTenant("acme", 1, host))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Peek(host); ok {
		t.Error("a fill that raced with a gap was installed")
	}
	if s := c.Stats(); s.Rejected != 1 {
		t.Errorf("Rejected = %d, want 1", s.Rejected)
	}
}

// TestFillOlderThanRememberedInvalidation covers a replica read that lags
// behind the broadcast (an eventually consistent read): it started after the
// invalidation but returns an older version.
func TestFillOlderThanRememberedInvalidation(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)
	if _, ok := c.Peek(host); ok {
		t.Error("a read older than a remembered invalidation was installed")
	}
	if s := c.Stats(); s.Rejected != 1 {
		t.Errorf("Rejected = %d, want 1 (refused at install, not only when read)", s.Rejected)
	}
}

// TestFillNeverReplacesNewerVersion: of two reads of one tenant, the older
// cannot replace the newer, whatever order they finish in.
func TestFillNeverReplacesNewerVersion(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache(t, cache.Options{})
	older := c.Begin()
	if !c.Put(host, makeTenant("acme", 5, host)) {
		t.Fatal("first fill not installed")
	}
	if c.Finish(host, makeTenant("acme", 4, host), older) {
		t.Error("an older version replaced a newer one")
	}
	if res, ok := c.Peek(host); !ok || res.Version != 5 {
		t.Errorf("Peek = %+v, %v; want version 5", res, ok)
	}
}

func TestInvalidationWindowIsBounded(t *testing.T) {
	t.Parallel()
	c, _, clk := newCache(t, cache.Options{MaxRemembered: 10, InvalidationWindow: time.Second, ReadTimeout: 100 * time.Millisecond})
	for i := range 100 {
		c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: int64(i + 1), Hostnames: []string{hostOf(i)}})
	}
	if n := c.Stats().Remembered; n > 10 {
		t.Errorf("remembered %d hostnames, want at most 10", n)
	}
	clk.Advance(2 * time.Second)
	c.Invalidate(tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{"zeta.example.com"}})
	if n := c.Stats().Remembered; n != 1 {
		t.Errorf("remembered %d hostnames after the window, want 1", n)
	}
}

// TestFillBeginningBeforeForgottenInvalidation: when the window is too small
// to check a fill against everything that arrived during it, the fill is not
// installed.
func TestFillBeginningBeforeForgottenInvalidation(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache(t, cache.Options{MaxRemembered: 2})
	tk := c.Begin()
	for i := range 5 {
		c.Invalidate(tcs.Invalidation{TenantID: "other", Version: int64(i + 1), Hostnames: []string{hostOf(i)}})
	}
	if c.Finish(host, makeTenant("acme", 1, host), tk) {
		t.Error("installed a fill that began before a forgotten invalidation")
	}
	if !c.Put(host, makeTenant("acme", 1, host)) {
		t.Error("a fill begun after that was not installed")
	}
}

func TestStaleIfError(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)

	r.setErr(errors.New("replica down"))
	clk.Advance(31 * time.Second)
	res := mustLookup(t, c, host, "acme", 1)
	if !res.Stale || res.Age(clk.Now()) != 31*time.Second {
		t.Errorf("stale %v, age %v; want true, 31s", res.Stale, res.Age(clk.Now()))
	}

	clk.Advance(5*time.Minute - 31*time.Second) // age = max-stale exactly
	if res := mustLookup(t, c, host, "acme", 1); !res.Stale {
		t.Error("not marked stale")
	}
	clk.Advance(time.Nanosecond)
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.Unavailable)

	// The last lookup, with nothing recent enough to serve, read twice.
	if s := c.Stats(); s.StaleServes != 2 || s.ReadErrors != 4 || s.Retries != 1 {
		t.Errorf("stats %+v: want 2 stale serves, 4 read errors, 1 retry", s)
	}
	// The hidden cause must not reach the caller.
	if msg := tenant.ErrorMessage(err); msg == "" || errors.Is(err, errReplica) {
		t.Errorf("Unavailable error %q exposes its cause", msg)
	}
}

var errReplica = errors.New("replica down")

func TestStaleIfSlow(t *testing.T) {
	t.Parallel()
	var logged []error
	var mu sync.Mutex
	c, r, clk := newCache(t, cache.Options{
		ReadTimeout: 20 * time.Millisecond,
		OnReadError: func(_ string, err error) { mu.Lock(); logged = append(logged, err); mu.Unlock() },
	})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)
	clk.Advance(time.Minute)
	r.setHold(true) // reads never answer: each times out after ReadTimeout

	start := time.Now()
	res := mustLookup(t, c, host, "acme", 1)
	if !res.Stale {
		t.Error("answer from a slow replica not marked stale")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v; the read timeout is 20ms", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 1 || !errors.Is(logged[0], context.DeadlineExceeded) {
		t.Errorf("OnReadError saw %v, want one deadline exceeded", logged)
	}
}

func TestUnavailableWithoutEntry(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	r.setErr(errReplica)
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.Unavailable)
	if errors.Is(err, errReplica) {
		t.Error("Unavailable wraps the replica's error")
	}
}

func TestMaxStaleOff(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{MaxStale: -1})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)
	clk.Advance(time.Minute)
	r.setErr(errReplica)
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.Unavailable)
}

func TestCallerContextEnds(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{ReadTimeout: time.Second})
	r.setHold(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctx, host)
		done <- err
	}()
	rd := r.nextRead(t)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup after its context ended = %v, want context.Canceled", err)
	}
	// The shared read goes on for the others and still fills the cache.
	rd.answer(makeTenant("acme", 1, host))
	testwait.For(t, "the read of a cancelled caller to fill the cache", func() bool {
		_, ok := c.Peek(host)
		return ok
	})
}

func TestGapExpiresEverything(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	for i := range 10 {
		r.set(makeTenant(hostOf(i)[:8], 1, hostOf(i)))
		mustLookup(t, c, hostOf(i), hostOf(i)[:8], 1)
	}
	c.Gap()
	for i := range 10 {
		if _, ok := c.Peek(hostOf(i)); ok {
			t.Fatalf("%s still fresh after a gap", hostOf(i))
		}
	}
	// Expired by a gap, the entries remain for stale-if-error.
	r.setErr(errReplica)
	res := mustLookup(t, c, hostOf(3), hostOf(3)[:8], 1)
	if !res.Stale {
		t.Error("after a gap, with the replica down: not marked stale")
	}
	r.setErr(nil)
	mustLookup(t, c, hostOf(4), hostOf(4)[:8], 1)
	if n := r.calls.Load(); n != 12 {
		t.Errorf("replica reads = %d, want 12 (10 fills, then one failed and one good read)", n)
	}
}

func TestSizeBound(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{Size: 4, Shards: 1})
	for i := range 10 {
		r.set(makeTenant("acme", 1, hostOf(i)))
		mustLookup(t, c, hostOf(i), "acme", 1)
	}
	if n := c.Len(); n != 4 {
		t.Errorf("Len = %d, want 4", n)
	}
	for i := 6; i < 10; i++ {
		if _, ok := c.Peek(hostOf(i)); !ok {
			t.Errorf("recently used %s was evicted", hostOf(i))
		}
	}
}

func TestDeletedTenantIsNotFound(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{})
	tomb := makeTenant("acme", 3, host)
	tomb.Status = tenant.StatusDeleted
	r.set(tomb)
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.NotFound)
}

func TestHitAllocatesNothing(t *testing.T) {
	c, r, _ := newCache(t, cache.Options{})
	r.set(makeTenant("acme", 1, host))
	mustLookup(t, c, host, "acme", 1)
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { _, _ = c.Lookup(ctx, host) }); n != 0 {
		t.Errorf("Lookup hit: %v allocs/op, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = c.Peek(host) }); n != 0 {
		t.Errorf("Peek hit: %v allocs/op, want 0", n)
	}
	c.Invalidate(tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{"zeta.example.com"}})
	if n := testing.AllocsPerRun(1000, func() { _, _ = c.Lookup(ctx, host) }); n != 0 {
		t.Errorf("Lookup hit with invalidations remembered: %v allocs/op, want 0", n)
	}
}
