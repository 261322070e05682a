package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
)

// TestLookupViewAgrees runs the same lookups through Lookup (LookupMeta) on
// one client and LookupView (LookupViewMeta) on another, both of the same
// two regions and clock, across misses, hits, negative answers, hostnames
// to normalise, invalid ones, an invalidation, stale answers and failures:
// the answers, their Meta, their errors and the hooks counted are the same.
func TestLookupViewAgrees(t *testing.T) {
	t.Parallel()
	us := startRegion(t, "us-east-1")
	eu := startRegion(t, "eu-west-1")
	put(t, "acme", 1, []string{"acme.example.com", "www.acme.example.com"}, us, eu)
	put(t, "globex", 4, []string{"globex.example.com"}, us, eu)
	clk := newClock()
	type hooks struct{ hits, misses, stales counter }
	var hl, hv hooks
	opts := func(h *hooks) []client.Option {
		return []client.Option{client.WithClock(clk.Now), client.WithTTL(time.Minute), client.WithNegativeTTL(time.Minute),
			client.WithMaxStale(10 * time.Minute), client.WithHedgeDelay(0),
			client.WithMetrics(client.Hooks{Hit: h.hits.inc, Miss: h.misses.inc, StaleServe: h.stales.inc})}
	}
	cl := newClient(t, []*regionServer{us, eu}, opts(&hl)...)
	cv := newClient(t, []*regionServer{us, eu}, opts(&hv)...)
	ctx := testwait.Context(t)

	same := func(step, host string, wantErr error, wantMeta func(client.Meta) bool) {
		t.Helper()
		tn, ml, errL := cl.LookupMeta(ctx, host)
		v, mv, errV := cv.LookupViewMeta(ctx, host)
		if !errors.Is(errL, wantErr) || !errors.Is(errV, wantErr) || (wantErr == nil) != (errL == nil) || (wantErr == nil) != (errV == nil) {
			t.Fatalf("%s: %s: Lookup: %v; LookupView: %v; want %v", step, host, errL, errV, wantErr)
		}
		if errL != nil && !errors.Is(errL, client.ErrUnavailable) && errL.Error() != errV.Error() {
			t.Errorf("%s: %s: errors differ: Lookup %q, LookupView %q", step, host, errL, errV)
		}
		// Age is how long ago the region read the tenant: the two clients
		// ask a moment apart, a second apart on a loaded machine.
		if d := ml.Age - mv.Age; d >= -time.Second && d <= time.Second {
			mv.Age = ml.Age
		}
		if ml != mv || !wantMeta(ml) {
			t.Errorf("%s: %s: Meta of Lookup %+v, of LookupView %+v", step, host, ml, mv)
		}
		vt, err := v.Tenant()
		if err != nil || !tenant.Equal(tn, vt) {
			t.Fatalf("%s: %s: Lookup %+v; LookupView %+v (%v)", step, host, tn, vt, err)
		}
		if h, _ := tenant.NormalizeHostname(host); tn != nil && (v.ID() != tn.ID || v.Version() != tn.Version || !v.HasHostname(h)) {
			t.Errorf("%s: %s: view says %s at %d", step, host, v.ID(), v.Version())
		}
	}
	fromRegion := func(m client.Meta) bool { return !m.Cached && !m.Stale && m.Region == "us-east-1" }
	cached := func(m client.Meta) bool { return m.Cached && !m.Stale && m.Region == "us-east-1" }
	none := func(m client.Meta) bool { return m == client.Meta{} }

	same("miss", "acme.example.com", nil, fromRegion)
	same("hit", "acme.example.com", nil, cached)
	same("hit to normalise", "ACME.Example.COM.", nil, cached)
	same("miss of another hostname of the tenant", "www.acme.example.com", nil, fromRegion)
	same("negative miss", "nobody.example.com", client.ErrNotFound, fromRegion)
	same("negative hit", "nobody.example.com", client.ErrNotFound, cached)
	same("invalid", "a..b", client.ErrInvalidHostname, none)
	same("miss", "globex.example.com", nil, fromRegion)

	counts := func(h *hooks) [3]int64 { return [3]int64{h.hits.get(), h.misses.get(), h.stales.get()} }
	if counts(&hl) != counts(&hv) {
		t.Errorf("hooks counted hits, misses, stale serves: Lookup %v, LookupView %v", counts(&hl), counts(&hv))
	}

	// A change: both clients' Watch streams drop the entry (and the hooks
	// count the waits).
	put(t, "acme", 2, []string{"acme.example.com", "www.acme.example.com"}, us, eu)
	for _, c := range []*client.Client{cl, cv} {
		testwait.For(t, "the invalidation", func() bool {
			_, m, err := c.LookupMeta(ctx, "www.acme.example.com")
			return err == nil && !m.Cached
		})
	}
	baseL, baseV := counts(&hl), counts(&hv)
	same("miss after the change", "acme.example.com", nil, fromRegion)

	// Every region down: stale answers within max-stale, then none.
	us.down()
	eu.down()
	clk.Advance(2 * time.Minute)
	stale := func(m client.Meta) bool { return m.Cached && m.Stale && m.Age >= 2*time.Minute }
	same("stale", "acme.example.com", nil, stale)
	same("stale negative", "nobody.example.com", client.ErrNotFound, stale)
	same("never cached", "never.example.com", client.ErrUnavailable, none)
	clk.Advance(10 * time.Minute)
	same("past max-stale", "globex.example.com", client.ErrUnavailable, none)

	for i := range baseL {
		if counts(&hl)[i]-baseL[i] != counts(&hv)[i]-baseV[i] {
			t.Errorf("hooks counted hits, misses, stale serves since the change: Lookup %v - %v, LookupView %v - %v", counts(&hl), baseL, counts(&hv), baseV)
		}
	}
}
