package reconcile_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer/reconcile"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

const (
	testInterval = 50 * time.Millisecond
	testSettle   = 400 * time.Millisecond
)

func mustT(t testing.TB) func(*tenant.Tenant, error) *tenant.Tenant {
	return func(v *tenant.Tenant, err error) *tenant.Tenant {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// seedDrift writes tenants aaa…iii: ccc at version 3, ggg having released
// www.ggg.example.com, hhh deleted, iii last.
func seedDrift(t *testing.T, s *system) map[string]*tenant.Tenant {
	t.Helper()
	ctx := context.Background()
	must := mustT(t)
	docs := map[string]*tenant.Tenant{}
	for _, id := range []string{"aaa", "bbb", "ccc", "ddd", "eee", "fff", "hhh"} {
		docs[id] = must(s.src.Create(ctx, storetest.NewTenant(id), "test"))
	}
	docs["ggg"] = must(s.src.Create(ctx, storetest.NewTenant("ggg", "ggg.example.com", "www.ggg.example.com"), "test"))
	c := storetest.NewTenant("ccc")
	for v := int64(1); v <= 2; v++ {
		c.Labels = map[string]string{"n": strings.Repeat("x", int(v))}
		must(s.src.Update(ctx, c, v, "test"))
	}
	must(s.src.Update(ctx, storetest.NewTenant("ggg", "ggg.example.com"), 1, "test"))
	must(s.src.Delete(ctx, "hhh", 0, "test"))
	// The region's newest document, which the drift leaves alone: a region
	// whose newest write is lost looks like one whose applier lags, and is
	// judged only after five settle periods (see reconcile.judge).
	docs["iii"] = must(s.src.Create(ctx, storetest.NewTenant("iii"), "test"))
	return docs
}

func newReconciler(t testing.TB, s *system, interval, settle time.Duration, reg prometheus.Registerer) *reconcile.Reconciler {
	t.Helper()
	var regions []reconcile.Region
	for _, name := range s.regions {
		regions = append(regions, reconcile.Region{Name: name, Scanner: s.replicas[name]})
	}
	r, err := reconcile.New(reconcile.Config{Source: s.src, Stream: s.stream, Regions: regions,
		Interval: interval, Settle: settle, Registerer: reg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t testing.TB, r *reconcile.Reconciler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("reconciler: %v", err)
		}
	})
}

// metric reads one series of the registry.
func metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// TestRepairsEveryKind damages one region's replica with every kind of
// drift resync can repair, and another with the two it cannot (a region
// ahead of the truth, a tenant the truth never had): the first is repaired
// within the settle period plus a cycle or two, the second is reported and
// left as it is, never rolled back.
func TestRepairsEveryKind(t *testing.T) {
	t.Parallel()
	s := startSystem(t, "us-east-1", "eu-west-1")
	docs := seedDrift(t, s)
	s.waitConverged(t, 10*time.Second)
	reg := prometheus.NewRegistry()
	r := newReconciler(t, s, testInterval, testSettle, reg)
	run(t, r)
	testwait.For(t, "two comparisons", func() bool {
		return metric(t, reg, "tcs_reconcile_cycles_total", map[string]string{"outcome": "ok"}) >= 2
	})

	injected := time.Now()
	s.replicas["us-east-1"].Edit(t, func(d, h *bbolt.Bucket) error {
		// missing_tenant: aaa lost, and hhh's tombstone.
		if err := d.Delete([]byte("aaa")); err != nil {
			return err
		}
		if err := d.Delete([]byte("hhh")); err != nil {
			return err
		}
		// content_mismatch: bbb corrupted at its version.
		b, err := getDoc(d, "bbb")
		if err != nil {
			return err
		}
		b.Database.Host = "db-666.internal"
		if err := putJSON(d, "bbb", b); err != nil {
			return err
		}
		// stale_version: ccc rolled back to version 1.
		if err := putJSON(d, "ccc", docs["ccc"]); err != nil {
			return err
		}
		// wrong_owner: ddd.example.com moved to eee.
		if err := putJSON(h, "ddd.example.com", tcs.HostRecord{TenantID: "eee", ClaimVersion: 1}); err != nil {
			return err
		}
		// claim_version: eee.example.com's claim lost a version.
		if err := putJSON(h, "eee.example.com", tcs.HostRecord{TenantID: "eee", ClaimVersion: 0}); err != nil {
			return err
		}
		// unmapped_hostname: fff.example.com's record lost.
		if err := h.Delete([]byte("fff.example.com")); err != nil {
			return err
		}
		// orphaned_hostname: www.ggg.example.com, released, maps to ggg.
		return putJSON(h, "www.ggg.example.com", tcs.HostRecord{TenantID: "ggg", ClaimVersion: 2})
	})
	s.replicas["eu-west-1"].Edit(t, func(d, h *bbolt.Bucket) error {
		// ahead_version: bbb at a version the truth never had.
		b, err := getDoc(d, "bbb")
		if err != nil {
			return err
		}
		b.Version = 7
		b.Labels = map[string]string{"restored": "from the future"}
		if err := putJSON(d, "bbb", b); err != nil {
			return err
		}
		// unknown_tenant: zzz, which the truth never had.
		z := storetest.NewTenant("zzz", "zzz.example.com")
		z.Version = 1
		return putJSON(d, "zzz", z)
	})

	// Repaired within the settle period plus a comparison to see the
	// drift and one to confirm it, plus the resync's trip.
	testwait.Until(t, 10*time.Second, 10*time.Millisecond, "us-east-1 repaired", func() (bool, string) { return s.converged(t, "us-east-1") })
	// How many comparisons that takes is TestRepairWithinTwoComparisons;
	// the time is logged, not asserted (a loaded machine stretches it).
	t.Logf("drift injected → us-east-1 agreeing with the truth: %v (settle %v, interval %v)", time.Since(injected), testSettle, testInterval)

	for _, kind := range []string{"missing_tenant", "content_mismatch", "stale_version", "wrong_owner", "claim_version", "unmapped_hostname", "orphaned_hostname"} {
		if n := metric(t, reg, "tcs_reconcile_drift_found_total", map[string]string{"region": "us-east-1", "kind": kind}); n < 1 {
			t.Errorf("tcs_reconcile_drift_found_total{region=us-east-1,kind=%s} = %v, want at least 1", kind, n)
		}
	}
	testwait.For(t, "us-east-1 drift seen repaired", func() bool {
		return metric(t, reg, "tcs_reconcile_drifted_tenants", map[string]string{"region": "us-east-1"}) == 0 &&
			metric(t, reg, "tcs_reconcile_repair_seconds", map[string]string{"region": "us-east-1"}) >= 8
	})
	if n := metric(t, reg, "tcs_reconcile_repaired_total", map[string]string{"region": "us-east-1"}); n < 8 {
		t.Errorf("tcs_reconcile_repaired_total{region=us-east-1} = %v, want at least 8 (aaa bbb ccc ddd eee fff ggg hhh)", n)
	}

	// eu-west-1: reported, counted, never resynced, never rolled back.
	testwait.For(t, "eu-west-1's unrepairable drift reported", func() bool {
		return metric(t, reg, "tcs_reconcile_drift_found_total", map[string]string{"region": "eu-west-1", "kind": "ahead_version"}) == 1 &&
			metric(t, reg, "tcs_reconcile_drift_found_total", map[string]string{"region": "eu-west-1", "kind": "unknown_tenant"}) == 1
	})
	if got := r.Pending()["eu-west-1"]; strings.Join(got, ",") != "bbb,zzz" {
		t.Errorf("eu-west-1 pending drift %v, want [bbb zzz]", got)
	}
	if n := metric(t, reg, "tcs_reconcile_drifted_tenants", map[string]string{"region": "eu-west-1"}); n != 2 {
		t.Errorf("tcs_reconcile_drifted_tenants{region=eu-west-1} = %v, want 2", n)
	}
	if n := metric(t, reg, "tcs_reconcile_resyncs_total", map[string]string{"region": "eu-west-1"}); n != 0 {
		t.Errorf("tcs_reconcile_resyncs_total{region=eu-west-1} = %v, want 0: nothing there is repairable", n)
	}
	got, err := s.replicas["eu-west-1"].GetTenant(context.Background(), "bbb")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 7 {
		t.Errorf("eu-west-1 bbb at version %d, want 7: the reconciler must never roll a region back", got.Version)
	}
	// The resyncs are audited under the reconciler's name, and went to
	// us-east-1 only.
	recs, err := s.src.History(context.Background(), catalog.AdminAuditID, catalog.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		t.Fatal("no resync in the catalog's admin audit chain")
	}
	for _, rec := range recs {
		if rec.Actor != reconcile.DefaultActor || rec.Resync == nil || strings.Join(rec.Resync.Regions, ",") != "us-east-1" {
			t.Errorf("audit record %+v: want a resync by %s to us-east-1", rec, reconcile.DefaultActor)
		}
	}
}

// TestQuietUnderWriteLoad: on a healthy system taking writes, buckets differ
// while changes travel, but nothing is judged drifted and nothing is
// re-emitted.
func TestQuietUnderWriteLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: writes for several comparison intervals (about 6 s)")
	}
	t.Parallel()
	s := startSystem(t, "us-east-1", "eu-west-1")
	ctx := context.Background()
	must := mustT(t)
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "t" + strings.Repeat("0", 3-len(itoa(i))) + itoa(i)
		must(s.src.Create(ctx, storetest.NewTenant(ids[i]), "test"))
	}
	// A replication lag above the settle period would be judged drift
	// (see the package comment): start from a system that caught up.
	s.waitConverged(t, 10*time.Second)
	reg := prometheus.NewRegistry()
	// The settle period must exceed the replication lag; on a test
	// machine shared with other -race tests, lags near a second happen.
	const settle = 2 * time.Second
	r := newReconciler(t, s, testInterval, settle, reg)
	run(t, r)

	// Writers: updates, hostname moves between tenants, deletes and
	// re-creates, for a few settle periods.
	stop := time.Now().Add(3 * settle)
	var wg sync.WaitGroup
	writes := 0
	var mu sync.Mutex
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for time.Now().Before(stop) {
				id := ids[rng.IntN(n)]
				cur, err := s.src.Get(ctx, id)
				var werr error
				switch {
				case err != nil:
					_, werr = s.src.Create(ctx, storetest.NewTenant(id), "load")
				case rng.IntN(10) == 0:
					_, werr = s.src.Delete(ctx, id, cur.Version, "load")
				default:
					next := storetest.NewTenant(id, id+".example.com", "extra-"+itoa(rng.IntN(5))+".example.com")
					next.Labels = map[string]string{"n": itoa(rng.IntN(1000))}
					_, werr = s.src.Update(ctx, next, cur.Version, "load")
				}
				if werr != nil && tenant.ErrorCode(werr) != tenant.VersionMismatch && tenant.ErrorCode(werr) != tenant.HostnameTaken &&
					tenant.ErrorCode(werr) != tenant.AlreadyExists && tenant.ErrorCode(werr) != tenant.NotFound {
					t.Errorf("write %s: %v", id, werr)
					return
				}
				if werr == nil {
					mu.Lock()
					writes++
					mu.Unlock()
				}
			}
		}()
	}
	// Sample how many buckets differ while the writes travel: the
	// comparisons see changes in flight, and must not take them for drift.
	maxDiffering := 0.0
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for time.Now().Before(stop) {
			for _, region := range s.regions {
				maxDiffering = max(maxDiffering, metric(t, reg, "tcs_reconcile_buckets_differing", map[string]string{"region": region}))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	<-sampled
	s.waitConverged(t, 10*time.Second)
	cycles := metric(t, reg, "tcs_reconcile_cycles_total", map[string]string{"outcome": "ok"})
	testwait.For(t, "two more comparisons", func() bool {
		return metric(t, reg, "tcs_reconcile_cycles_total", map[string]string{"outcome": "ok"}) >= cycles+2
	})
	t.Logf("%d writes, %v comparisons, at most %v bucket(s) differing in one", writes, metric(t, reg, "tcs_reconcile_cycles_total", map[string]string{"outcome": "ok"}), maxDiffering)
	if writes < 30 {
		t.Errorf("only %d writes: the load did not load", writes)
	}
	for _, region := range s.regions {
		if v := metric(t, reg, "tcs_reconcile_resyncs_total", map[string]string{"region": region}); v != 0 {
			t.Errorf("tcs_reconcile_resyncs_total{region=%s} = %v, want 0 on a healthy system", region, v)
		}
		if v := metric(t, reg, "tcs_reconcile_drift_found_total", map[string]string{"region": region}); v != 0 {
			t.Errorf("tcs_reconcile_drift_found_total{region=%s} = %v, want 0 on a healthy system", region, v)
		}
		if v := metric(t, reg, "tcs_reconcile_drifted_tenants", map[string]string{"region": region}); v != 0 {
			t.Errorf("tcs_reconcile_drifted_tenants{region=%s} = %v, want 0", region, v)
		}
	}
	recs, err := s.src.History(ctx, catalog.AdminAuditID, catalog.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Errorf("%d resync(s) audited on a healthy system, want none: first %+v", len(recs), recs[0].Resync)
	}
}

// TestStalledRegionIsNotDrift: a region whose applier stalls for a few
// settle periods while writes go on lags as a whole; the reconciler sees
// buckets differ but resyncs nothing, and the region catches up by itself.
func TestStalledRegionIsNotDrift(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: stalls a region for several settle periods (about 3 s)")
	}
	t.Parallel()
	s := startSystem(t, "us-east-1", "eu-west-1")
	ctx := context.Background()
	must := mustT(t)
	for i := range 20 {
		must(s.src.Create(ctx, storetest.NewTenant("t"+itoa(100+i)), "test"))
	}
	s.waitConverged(t, 10*time.Second)
	reg := prometheus.NewRegistry()
	// A region catching up after the stall can be ahead on one stream
	// partition and behind on another for a moment; the comparisons must
	// be further apart than that moment (in production, minutes apart).
	// The stall must outlast a settle (so that buckets are judged while it
	// lasts) but not five (a region quiet for that long is judged as
	// emptied, by design). With a 400 ms settle, a machine loaded twenty
	// deep stretched the stall past five: settle is a second, and the
	// stall is timed from its start, not from when the reconciler saw it.
	const settle, interval = time.Second, 400 * time.Millisecond
	run(t, newReconciler(t, s, interval, settle, reg))
	testwait.For(t, "a comparison", func() bool {
		return metric(t, reg, "tcs_reconcile_cycles_total", map[string]string{"outcome": "ok"}) >= 1
	})

	resume := s.replicas["eu-west-1"].StallApplies() // eu-west-1's applier stalls
	stalled := time.Now()
	for i := range 20 {
		id := "t" + itoa(100+i)
		next := storetest.NewTenant(id)
		next.Labels = map[string]string{"moved": "yes"}
		must(s.src.Update(ctx, next, 1, "test"))
	}
	testwait.For(t, "eu-west-1 buckets differing", func() bool {
		return metric(t, reg, "tcs_reconcile_buckets_differing", map[string]string{"region": "eu-west-1"}) > 0
	})
	for time.Since(stalled) < 2*settle {
		time.Sleep(interval) // the stall itself: no condition to wait for
	}
	resume()
	s.waitConverged(t, 10*time.Second)
	cycles := metric(t, reg, "tcs_reconcile_cycles_total", map[string]string{"outcome": "ok"})
	testwait.For(t, "two more comparisons", func() bool {
		return metric(t, reg, "tcs_reconcile_cycles_total", map[string]string{"outcome": "ok"}) >= cycles+2
	})
	for _, region := range s.regions {
		if v := metric(t, reg, "tcs_reconcile_resyncs_total", map[string]string{"region": region}); v != 0 {
			t.Errorf("tcs_reconcile_resyncs_total{region=%s} = %v, want 0: a stalled region is lagging, not drifted", region, v)
		}
	}
}

// TestRepairWithinTwoComparisons: on a clock that moves a settle period
// between comparisons, a tenant lost from a region is seen by the first
// comparison after the loss, judged by the next (its bucket has differed
// for the settle period) and resynced by the one after (confirmed): the
// settle period plus one comparison after it is seen.
func TestRepairWithinTwoComparisons(t *testing.T) {
	t.Parallel()
	src, rep, path := bigSystem(t, 100)
	l := replicatest.NewLockedReplica(path, rep)
	t.Cleanup(func() { l.Close() })
	clock := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	const settle = time.Minute
	r, err := reconcile.New(reconcile.Config{Source: src, Regions: []reconcile.Region{{Name: "us-east-1", Scanner: l}},
		Stream: nopStream{}, Rescan: 24 * time.Hour, Settle: settle, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cycle := func() *reconcile.Report {
		t.Helper()
		rep, err := r.Cycle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := cycle(); rep.Differing["us-east-1"] != 0 {
		t.Fatalf("healthy region: %d buckets differ", rep.Differing["us-east-1"])
	}
	advance(settle)
	lost := src.items[40].Tenant.ID
	l.Edit(t, func(d, _ *bbolt.Bucket) error { return d.Delete([]byte(lost)) })
	for i, want := range []struct{ differing, findings, resyncs int }{
		{1, 0, 0}, // seen: its bucket becomes a suspect
		{1, 0, 0}, // judged after the settle period: a first sighting
		{1, 1, 1}, // confirmed: resynced
	} {
		rep := cycle()
		if rep.Differing["us-east-1"] != want.differing || len(rep.Findings) != want.findings || src.resyncs != want.resyncs {
			t.Fatalf("comparison %d after the loss: %d buckets differ, findings %+v, %d resyncs; want %d, %d, %d",
				i+1, rep.Differing["us-east-1"], rep.Findings, src.resyncs, want.differing, want.findings, want.resyncs)
		}
		advance(settle)
	}
	// The resync (here applied by hand) lands: the next comparison sees
	// the tenant repaired, a settle period and two comparisons after it
	// was first judged.
	it := src.items[40]
	if _, err := l.Apply(ctx, &tenant.ChangeEvent{TenantID: lost, Version: 1, Tenant: it.Tenant, Claims: it.Claims, Resync: true}); err != nil {
		t.Fatal(err)
	}
	if rep := cycle(); rep.Differing["us-east-1"] != 0 || rep.Repaired["us-east-1"] != 1 || src.resyncs != 1 {
		t.Errorf("after the resync: %d buckets differ, %d repaired, %d resyncs; want 0, 1, 1", rep.Differing["us-east-1"], rep.Repaired["us-east-1"], src.resyncs)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	s := startSystem(t, "us-east-1")
	ok := []reconcile.Region{{Name: "us-east-1", Scanner: s.replicas["us-east-1"]}}
	for _, tc := range []struct {
		name string
		cfg  reconcile.Config
		want string
	}{
		{"no source", reconcile.Config{Regions: ok}, "no source of truth"},
		{"no region", reconcile.Config{Source: s.src}, "no region"},
		{"nameless region", reconcile.Config{Source: s.src, Regions: []reconcile.Region{{Scanner: s.replicas["us-east-1"]}}}, `region ""`},
		{"region twice", reconcile.Config{Source: s.src, Regions: append(ok, ok...)}, `region "us-east-1"`},
		{"negative settle", reconcile.Config{Source: s.src, Regions: ok, Settle: -time.Second}, "settle -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reconcile.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
