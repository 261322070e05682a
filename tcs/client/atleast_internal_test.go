package client

import (
	"context"
	"fmt"
	"testing"
)

// TestLookupAtLeastHitAllocatesNothing: a hit on a new enough answer
// allocates nothing.
func TestLookupAtLeastHitAllocatesNothing(t *testing.T) {
	c, names := newBenchClient(t, 1000)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.LookupAtLeast(ctx, names[7], 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.LookupTenantAtLeast(ctx, names[7], "tenant-7", 1); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a hit allocates %v times", allocs)
	}
}

// TestPutNeverGoesBack: an answer older than the entry of its tenant held
// for the hostname (fresh or expired) does not replace it, with monotonic
// reads off too; a newer one, or another tenant's, does.
func TestPutNeverGoesBack(t *testing.T) {
	t.Parallel()
	c, _ := testCache(1000) // monotonic reads off
	const h = "acme.example.com"
	put := func(id string, v int64) bool {
		return c.put(h, entry{t: doc(id, v, h), readAt: c.clock()}, c.begin())
	}
	if !put("acme", 5) {
		t.Fatal("first put refused")
	}
	if put("acme", 3) {
		t.Error("an older version of the tenant replaced a newer one")
	}
	if v, _ := c.state(h); v != 5 {
		t.Errorf("entry v%d, want v5", v)
	}
	c.resync() // expired, kept for stale-if-error: still not replaced by an older one
	if put("acme", 4) {
		t.Error("an older version replaced an expired newer one")
	}
	if !put("acme", 6) || !put("globex", 1) {
		t.Error("a newer version, or another tenant, was refused")
	}
}

// BenchmarkLookupAtLeastHit is BenchmarkLookupHit for LookupAtLeast: a hit
// on an answer at the version asked for (the tenants are at version 1).
// -short: 10,000 hostnames (benchTenants), a smoke run: its figures mean
// nothing.
func BenchmarkLookupAtLeastHit(b *testing.B) {
	c, names := benchSetup(b)
	ctx := context.Background()
	for _, n := range hotSets {
		b.Run(fmt.Sprintf("hot=%d", n), func(b *testing.B) {
			seq := hotSequence(names, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.LookupAtLeast(ctx, seq[i&(len(seq)-1)], 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
