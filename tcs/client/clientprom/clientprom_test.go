package clientprom_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clientprom"
	"github.com/tcs-dev/tcs/tcs/client/clienttest"
)

// TestHooks calls every hook and checks the exposition.
func TestHooks(t *testing.T) {
	t.Parallel()
	m := clientprom.New()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	h := m.Hooks()
	clienttest.CallEveryHook(h)

	want := `
# HELP tcs_client_behind_total Answers of region set aside because they were older than a version the client had returned or was asked for.
# TYPE tcs_client_behind_total counter
tcs_client_behind_total{region="ap-southeast-2"} 1
# HELP tcs_client_breaker_opens_total Times region's circuit breaker opened.
# TYPE tcs_client_breaker_opens_total counter
tcs_client_breaker_opens_total{region="us-east-1"} 1
# HELP tcs_client_cache_hits_total Lookups answered from the client's cache, fresh (negative answers included).
# TYPE tcs_client_cache_hits_total counter
tcs_client_cache_hits_total 2
# HELP tcs_client_cache_misses_total Lookups that asked a region.
# TYPE tcs_client_cache_misses_total counter
tcs_client_cache_misses_total 1
# HELP tcs_client_failovers_total Lookups that moved past region because it failed or its circuit breaker was open.
# TYPE tcs_client_failovers_total counter
tcs_client_failovers_total{region="eu-west-1"} 1
tcs_client_failovers_total{region="us-east-1"} 1
# HELP tcs_client_hedges_total Lookups also sent to the next region because region had not answered within the hedge delay.
# TYPE tcs_client_hedges_total counter
tcs_client_hedges_total{region="eu-west-1"} 1
# HELP tcs_client_invalidations_total Invalidations received over the Watch stream.
# TYPE tcs_client_invalidations_total counter
tcs_client_invalidations_total 1
# HELP tcs_client_remembered_total Lookups answered with the newest version of the tenant returned before, the regions that answered being behind it.
# TYPE tcs_client_remembered_total counter
tcs_client_remembered_total 1
# HELP tcs_client_stale_serves_total Lookups that every region failed, answered with an expired cached answer within max-stale.
# TYPE tcs_client_stale_serves_total counter
tcs_client_stale_serves_total 1
# HELP tcs_client_watch_up 1 while the client's Watch stream on region is up, else 0.
# TYPE tcs_client_watch_up gauge
tcs_client_watch_up{region="us-east-1"} 0
`
	names := []string{"tcs_client_behind_total", "tcs_client_breaker_opens_total", "tcs_client_cache_hits_total",
		"tcs_client_cache_misses_total", "tcs_client_failovers_total", "tcs_client_hedges_total",
		"tcs_client_invalidations_total", "tcs_client_remembered_total", "tcs_client_stale_serves_total", "tcs_client_watch_up"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// The histogram: one observation per code, each in its bucket.
	if n := testutil.CollectAndCount(m, "tcs_client_rpc_duration_seconds"); n != 2 {
		t.Errorf("%d rpc duration series, want 2 (OK and Unavailable)", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tcs_client_rpc_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			want := map[string]float64{"OK": 0.003, "Unavailable": 2}[labels["code"]]
			if labels["region"] != "eu-west-1" || s.GetHistogram().GetSampleCount() != 1 || s.GetHistogram().GetSampleSum() != want {
				t.Errorf("rpc series %v: count %d sum %v, want 1 and %v", labels, s.GetHistogram().GetSampleCount(), s.GetHistogram().GetSampleSum(), want)
			}
		}
	}
}

// TestHitAllocatesNothing: the hooks a cache hit calls keep it
// allocation-free.
func TestHitAllocatesNothing(t *testing.T) {
	h := clientprom.New().Hooks()
	if n := testing.AllocsPerRun(1000, h.Hit); n != 0 {
		t.Errorf("Hit allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, h.Miss); n != 0 {
		t.Errorf("Miss allocates %v times", n)
	}
}

// TestClient counts a real Client's lookups.
func TestClient(t *testing.T) {
	t.Parallel()
	srv, err := clienttest.NewServer(&tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	m := clientprom.New()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	ctx := testwait.Context(t)
	c, err := srv.NewClient(ctx, client.WithMetrics(m.Hooks()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Lookup(ctx, "nobody.example.com"); !errors.Is(err, client.ErrNotFound) {
		t.Fatal(err)
	}
	want := `
# HELP tcs_client_cache_hits_total Lookups answered from the client's cache, fresh (negative answers included).
# TYPE tcs_client_cache_hits_total counter
tcs_client_cache_hits_total 2
# HELP tcs_client_cache_misses_total Lookups that asked a region.
# TYPE tcs_client_cache_misses_total counter
tcs_client_cache_misses_total 2
# HELP tcs_client_watch_up 1 while the client's Watch stream on region is up, else 0.
# TYPE tcs_client_watch_up gauge
tcs_client_watch_up{region="` + srv.Addr() + `"} 1
`
	// The stream came up before the region had named itself: its label
	// is the address. So is the first RPC's; the second's is the name the
	// first answer gave.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcs_client_cache_hits_total", "tcs_client_cache_misses_total", "tcs_client_watch_up"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m, "tcs_client_rpc_duration_seconds"); n != 2 {
		t.Errorf("%d rpc duration series, want 2 (the address and clienttest, OK)", n)
	}
}
