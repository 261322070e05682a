package cache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// A flood of unknown hostnames fills the negative LRUs only: no tenant
// entry is evicted, and the negative entries stay within NegativeSize.
func TestNegativeEntriesHaveTheirOwnBound(t *testing.T) {
	t.Parallel()
	c, r, _ := newCache(t, cache.Options{Size: 8, NegativeSize: 4, Shards: 1})
	for i := range 8 {
		r.set(makeTenant(fmt.Sprintf("t%d", i), 1, hostOf(i)))
		mustLookup(t, c, hostOf(i), fmt.Sprintf("t%d", i), 1)
	}
	for i := range 1000 {
		_, err := c.Lookup(context.Background(), fmt.Sprintf("random-%d.example.com", i))
		wantCode(t, err, tenant.NotFound)
	}
	for i := range 8 {
		if _, ok := c.Peek(hostOf(i)); !ok {
			t.Errorf("tenant entry %s was evicted by negative entries", hostOf(i))
		}
	}
	s := c.Stats()
	if s.NegativeEntries != 4 || s.Entries != 12 {
		t.Errorf("entries = %d (negative %d), want 12 (negative 4)", s.Entries, s.NegativeEntries)
	}
	// The most recent negative entries are the ones kept.
	if _, _, neg, ok := c.Fresh("random-999.example.com"); !ok || !neg {
		t.Errorf("latest negative entry: negative %v, ok %v; want both", neg, ok)
	}
}

// A hostname moves between the two lists as its answer changes kind, and is
// never held twice.
func TestEntryMovesBetweenLists(t *testing.T) {
	t.Parallel()
	c, r, clk := newCache(t, cache.Options{Size: 4, NegativeSize: 4, Shards: 1})
	_, err := c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.NotFound)
	r.set(makeTenant("acme", 1, host))
	c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 1, Hostnames: []string{host}})
	mustLookup(t, c, host, "acme", 1)
	if s := c.Stats(); s.Entries != 1 || s.NegativeEntries != 0 {
		t.Fatalf("after the claim: entries %d (negative %d), want 1 (negative 0)", s.Entries, s.NegativeEntries)
	}
	r.mu.Lock()
	delete(r.byHost, host)
	r.mu.Unlock()
	clk.Advance(time.Minute)
	_, err = c.Lookup(context.Background(), host)
	wantCode(t, err, tenant.NotFound)
	if s := c.Stats(); s.Entries != 1 || s.NegativeEntries != 1 {
		t.Fatalf("after the release: entries %d (negative %d), want 1 (negative 1)", s.Entries, s.NegativeEntries)
	}
}

var errOverBudget = errors.New("over budget")

func TestLookupAdmit(t *testing.T) {
	t.Parallel()
	type call struct {
		known  bool
		called bool
	}
	tests := []struct {
		name string
		// prepare leaves the cache holding (or not) an entry of host.
		prepare   func(t *testing.T, c *cache.Cache, r *fakeReader, clk *clock)
		wantKnown bool
		// want is the outcome of a refused lookup: a stale tenant, a stale
		// NotFound, or the admission error.
		wantStale   bool
		wantCode    tenant.Code
		wantErr     error
		wantVersion int64
	}{{
		name:      "nothing held: refused with admit's error",
		prepare:   func(*testing.T, *cache.Cache, *fakeReader, *clock) {},
		wantKnown: false,
		wantErr:   errOverBudget,
	}, {
		name: "expired tenant entry: known, served stale",
		prepare: func(t *testing.T, c *cache.Cache, r *fakeReader, clk *clock) {
			r.set(makeTenant("acme", 1, host))
			mustLookup(t, c, host, "acme", 1)
			clk.Advance(time.Minute)
		},
		wantKnown: true, wantStale: true, wantVersion: 1,
	}, {
		name: "expired negative entry: unknown, stale NotFound",
		prepare: func(t *testing.T, c *cache.Cache, r *fakeReader, clk *clock) {
			_, err := c.Lookup(context.Background(), host)
			wantCode(t, err, tenant.NotFound)
			clk.Advance(time.Minute)
		},
		wantKnown: false, wantStale: true, wantCode: tenant.NotFound,
	}, {
		name: "invalidated tenant entry: known, never served: admit's error",
		prepare: func(t *testing.T, c *cache.Cache, r *fakeReader, clk *clock) {
			r.set(makeTenant("acme", 1, host))
			mustLookup(t, c, host, "acme", 1)
			c.Invalidate(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}})
		},
		wantKnown: true, wantErr: errOverBudget,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, r, clk := newCache(t, cache.Options{})
			tt.prepare(t, c, r, clk)
			reads := r.calls.Load()
			var got call
			res, err := c.LookupAdmit(context.Background(), host, func(known bool) error {
				got = call{known: known, called: true}
				return errOverBudget
			})
			if !got.called || got.known != tt.wantKnown {
				t.Errorf("admit called %v with known %v; want called with known %v", got.called, got.known, tt.wantKnown)
			}
			if n := r.calls.Load() - reads; n != 0 {
				t.Errorf("a refused lookup made %d replica reads", n)
			}
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.wantCode != "":
				wantCode(t, err, tt.wantCode)
			case err != nil:
				t.Errorf("err = %v, want a stale answer", err)
			}
			if res.Stale != tt.wantStale || res.Version != tt.wantVersion {
				t.Errorf("result stale %v version %d, want %v %d", res.Stale, res.Version, tt.wantStale, tt.wantVersion)
			}
			if s := c.Stats(); s.Refused != 1 || (s.RefusedStale == 1) != tt.wantStale {
				t.Errorf("refused %d (stale %d), want 1 (stale %v)", s.Refused, s.RefusedStale, tt.wantStale)
			}
		})
	}

	t.Run("fresh hit: admit not asked", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{})
		r.set(makeTenant("acme", 1, host))
		mustLookup(t, c, host, "acme", 1)
		if _, err := c.LookupAdmit(context.Background(), host, func(bool) error {
			t.Error("admit asked for a fresh hit")
			return errOverBudget
		}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("admitted: reads", func(t *testing.T) {
		t.Parallel()
		c, r, _ := newCache(t, cache.Options{})
		r.set(makeTenant("acme", 1, host))
		res, err := c.LookupAdmit(context.Background(), host, func(bool) error { return nil })
		if err != nil || res.Version != 1 || r.calls.Load() != 1 {
			t.Errorf("admitted lookup: %v, version %d, reads %d; want version 1, one read", err, res.Version, r.calls.Load())
		}
	})
}
