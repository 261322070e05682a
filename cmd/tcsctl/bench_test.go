package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/tcs/drift"
)

// seedCatalog writes n tenants (two hostnames each) straight into a new
// source-of-truth file, in big unsynced transactions: creating a million
// tenants through the API would take a quarter of an hour of fsyncs. The
// layout is catalog/bolt's (see its package comment): tenants id → JSON
// tenant; hostnames → {"tenant_id", "claim_version"}. Nothing goes to the
// outbox, so the regions start empty.
func seedCatalog(n int) func(tb testing.TB, path string) {
	return func(tb testing.TB, path string) {
		tb.Helper()
		st, err := bolt.Open(path, bolt.Options{}) // buckets and schema
		if err != nil {
			tb.Fatal(err)
		}
		st.Close()
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true, NoFreelistSync: true})
		if err != nil {
			tb.Fatal(err)
		}
		defer db.Close()
		at := time.Now().UTC().Truncate(time.Microsecond)
		const perTx = 20000
		for start := 0; start < n; start += perTx {
			err := db.Update(func(tx *bbolt.Tx) error {
				ts, hs := tx.Bucket([]byte("tenants")), tx.Bucket([]byte("hostnames"))
				ts.FillPercent, hs.FillPercent = 1, 1 // keys arrive in order
				for i := start; i < min(start+perTx, n); i++ {
					id := fmt.Sprintf("t%07d", i)
					t := &tenant.Tenant{ID: id, Hostnames: []string{id + ".example.com", "www." + id + ".example.com"},
						Status: tenant.StatusActive, Region: "us-east-1",
						Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: int64(i % 500), Edition: "standard"}},
						Database: &tenant.Database{Engine: "postgres", Host: fmt.Sprintf("db-%d.internal", i%50), Port: 5432, Name: "t" + strconv.Itoa(i)},
						Version:  1, UpdatedAt: at, UpdatedBy: "seed"}
					raw, err := json.Marshal(t)
					if err != nil {
						return err
					}
					if err := ts.Put([]byte(id), raw); err != nil {
						return err
					}
					for _, h := range t.Hostnames {
						rec, _ := json.Marshal(struct {
							TenantID     string `json:"tenant_id"`
							ClaimVersion int64  `json:"claim_version"`
						}{id, 1})
						if err := hs.Put([]byte(h), rec); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				tb.Fatal(err)
			}
		}
		if err := db.Sync(); err != nil {
			tb.Fatal(err)
		}
	}
}

// waitDrained waits until the outbox is empty and every region's applier
// has consumed the whole stream.
func (s *system) waitDrained(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pending, _, err := s.store.OutboxDepth(context.Background(), 1)
		if err != nil {
			tb.Fatal(err)
		}
		lag := int64(pending)
		for _, r := range testRegions {
			l, err := s.stream.Lag("apply-" + r)
			if err != nil {
				tb.Fatal(err)
			}
			lag += l
		}
		if lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not drained after %v: %d behind", timeout, lag)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// trace logs, every few seconds while TCSCTL_BENCH_TRACE is set, how many
// events the stream holds and how many each region has applied: it shows
// which stage of the pipeline holds the rest back.
func (s *system) trace(tb testing.TB, start time.Time) (stop func()) {
	if os.Getenv("TCSCTL_BENCH_TRACE") == "" {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			appended, _ := s.stream.Lag("bench-trace") // a group that never consumes lags by every record
			line := fmt.Sprintf("%6.1fs appended %d", time.Since(start).Seconds(), appended)
			for _, r := range testRegions {
				l, _ := s.stream.Lag("apply-" + r)
				line += fmt.Sprintf(" %s %d", r, appended-l)
			}
			if s.timings != nil {
				line += " publisher: " + s.timings.String()
			}
			tb.Log(line)
		}
	}()
	return func() { close(done); <-finished }
}

// BenchmarkResyncAll: tcsctl resync --all of N tenants through the
// embedded backends (catalog export and resync API, outbox, publisher,
// stream, three appliers and replicas), timed from the command's start to
// the moment every region has applied every event. N is
// TCSCTL_BENCH_TENANTS (default 20,000; the target is 1,000,000 in ≤ 120 s
// on two cores). -short: a default of 2,000 tenants, a smoke run: its figures
// mean nothing (make bench-smoke clears the Makefile's TCSCTL_BENCH_TENANTS).
func BenchmarkResyncAll(b *testing.B) {
	n := benchsize.Pick(20000, 2000)
	if v := os.Getenv("TCSCTL_BENCH_TENANTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("TCSCTL_BENCH_TENANTS=%q", v)
		}
	}
	seedStart := time.Now()
	opts := sysOptions{seedRaw: seedCatalog(n)}
	if os.Getenv("TCSCTL_BENCH_TRACE") != "" {
		opts.timings = &stageTimings{}
	}
	s := startSystem(b, opts)
	b.Logf("seeded %d tenants in %v", n, time.Since(seedStart).Round(time.Millisecond))
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		stopTrace := s.trace(b, start)
		code, out, errOut := s.tcsctl(b, context.Background(), "resync", "--yes", "--all", "--checkpoint", "off")
		if code != 0 {
			b.Fatalf("resync --all: exit %d\n%s\n%s", code, out, errOut)
		}
		sent := time.Since(start)
		s.waitDrained(b, 30*time.Minute)
		wall := time.Since(start)
		stopTrace()
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(float64(n)/wall.Seconds(), "tenants/s")
		b.ReportMetric(sent.Seconds(), "emit-s")
		if i == 0 {
			// Every region now equals the source of truth: verify says so,
			// and how long it takes to say it at this size.
			b.StopTimer()
			vstart := time.Now()
			code, out, errOut := s.tcsctl(b, context.Background(), "verify", "-o", "json")
			b.ReportMetric(time.Since(vstart).Seconds(), "verify-s")
			var rep drift.Report
			if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || !rep.Clean || rep.Tenants != n || rep.Hostnames != 2*n {
				b.Fatalf("verify after resync --all: exit %d, %v, clean %v, %d tenants, %d hostnames\n%s", code, err, rep.Clean, rep.Tenants, rep.Hostnames, errOut)
			}
			b.StartTimer()
		}
	}
}
