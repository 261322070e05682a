package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// TestHealth: readiness and liveness of each kind of streamer, from the
// metrics its work loop keeps, at a fixed clock.
func TestHealth(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	ago := func(d time.Duration) float64 { return float64(now.Add(-d).UnixNano()) / 1e9 }
	const group = "apply-eu-west-1"
	type lease struct {
		group string
		held  float64
	}
	type shard struct {
		group, shard string
		read         float64
	}
	for _, c := range []struct {
		name       string
		cmd        string
		leases     bool     // Kinesis applier
		lastRead   float64  // publish: tcs_publish_last_read_timestamp_seconds (0: none yet)
		pubLeases  *float64 // leased publish: tcs_publish_leases_held
		leaseScan  float64  // leased publish: tcs_publish_lease_scan_timestamp_seconds
		held       []lease
		shards     []shard
		started    time.Duration // ago
		ready      string        // "" ready, else part of the reason
		alive      string
		liveMaxAge time.Duration // 0: 10m
	}{
		{name: "publish read just now", cmd: "publish", lastRead: ago(time.Second)},
		{name: "publish before its first read", cmd: "publish", started: time.Second, ready: "has not completed a cycle yet"},
		{name: "publish never read for too long", cmd: "publish", started: 11 * time.Minute, ready: "has not completed a cycle yet", alive: "no successful outbox read for 11m0s"},
		{name: "publish read a minute ago", cmd: "publish", lastRead: ago(time.Minute), ready: "last successful outbox read 1m0s ago, over --ready-max-age 30s"},
		{name: "publish stuck", cmd: "publish", lastRead: ago(20 * time.Minute), ready: "over --ready-max-age", alive: "over --live-max-age 10m0s"},
		{name: "publish stuck, liveness off", cmd: "publish", lastRead: ago(20 * time.Minute), ready: "over --ready-max-age", liveMaxAge: -1},
		{name: "leased publish holding shards, reading", cmd: "publish", leases: true, pubLeases: ptr(3.0), lastRead: ago(time.Second), leaseScan: ago(time.Second)},
		{name: "leased publish holding shards, reads failing", cmd: "publish", leases: true, pubLeases: ptr(3.0), lastRead: ago(time.Minute), leaseScan: ago(time.Second),
			ready: "last successful outbox read 1m0s ago"},
		{name: "leased publish standby, scanning the lease table", cmd: "publish", leases: true, pubLeases: ptr(0.0), leaseScan: ago(time.Second)},
		{name: "leased publish standby, lease table unreachable", cmd: "publish", leases: true, pubLeases: ptr(0.0), leaseScan: ago(time.Minute),
			ready: "over --ready-max-age"},
		{name: "leased publish before its first scan", cmd: "publish", leases: true, pubLeases: ptr(0.0), started: time.Second, ready: "has not completed a cycle yet"},
		{name: "embedded apply", cmd: "apply"},
		{name: "kinesis apply with a lease, reading", cmd: "apply", leases: true,
			held:   []lease{{group, 1}},
			shards: []shard{{group, "shard-0", ago(time.Second)}}},
		{name: "kinesis apply without a lease (standby)", cmd: "apply", leases: true,
			held:  []lease{{group, 0}},
			ready: "holds no shard lease of apply-eu-west-1"},
		{name: "kinesis apply before the stream reported", cmd: "apply", leases: true, ready: "holds no shard lease"},
		{name: "kinesis apply: another group's lease is not ours", cmd: "apply", leases: true,
			held:   []lease{{"apply-us-east-1", 2}},
			shards: []shard{{"apply-us-east-1", "shard-0", ago(time.Second)}},
			ready:  "holds no shard lease"},
		{name: "kinesis apply: one held shard read recently is enough", cmd: "apply", leases: true,
			held:   []lease{{group, 2}},
			shards: []shard{{group, "shard-0", ago(time.Hour)}, {group, "shard-1", ago(2 * time.Second)}}},
		{name: "kinesis apply stalled (apply failing)", cmd: "apply", leases: true,
			held:   []lease{{group, 1}},
			shards: []shard{{group, "shard-0", ago(15 * time.Minute)}, {"apply-us-east-1", "shard-0", ago(time.Second)}},
			ready:  "last successful read of a held shard 15m0s ago", alive: "no successful read of a held shard for 15m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			if c.cmd == "publish" {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcs_publish_last_read_timestamp_seconds"})
				g.Set(c.lastRead)
				reg.MustRegister(g)
			}
			if c.pubLeases != nil {
				held := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcs_publish_leases_held"})
				held.Set(*c.pubLeases)
				scan := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcs_publish_lease_scan_timestamp_seconds"})
				scan.Set(c.leaseScan)
				reg.MustRegister(held, scan)
			}
			if c.held != nil {
				g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tcs_kinesis_leases_held"}, []string{"group"})
				for _, l := range c.held {
					g.WithLabelValues(l.group).Set(l.held)
				}
				reg.MustRegister(g)
			}
			if c.shards != nil {
				g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tcs_kinesis_last_read_timestamp_seconds"}, []string{"group", "shard"})
				for _, s := range c.shards {
					g.WithLabelValues(s.group, s.shard).Set(s.read)
				}
				reg.MustRegister(g)
			}
			live := c.liveMaxAge
			switch {
			case live == 0:
				live = defaultLiveMaxAge
			case live < 0:
				live = 0
			}
			h := &health{gather: reg, cmd: c.cmd, group: group, leases: c.leases, readyMaxAge: defaultReadyMaxAge, liveMaxAge: live,
				started: now.Add(-c.started), now: func() time.Time { return now }}
			check := func(what string, err error, want string) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v, want ok", what, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Errorf("%s: %v, want an error containing %q", what, err, want)
				}
			}
			check("ready", h.ready(context.Background()), c.ready)
			check("alive", h.alive(context.Background()), c.alive)
		})
	}
}

// TestHealthEndpoints runs streamer publish and apply (embedded) with a
// metrics address and reads their /readyz, /healthz and /metrics.
func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store, err := bolt.Open(cmdutil.Data(dir).Catalog(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(context.Background(), storetest.NewTenant("acme", "acme.example.com"), "test"); err != nil {
		t.Fatal(err)
	}
	store.Close()

	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	noEnv := func(string) string { return "" }
	// One after the other: each holds a data file the other needs.
	for _, c := range []struct {
		args   []string
		metric string
	}{
		{[]string{"publish", "--data", dir}, "tcs_publish_last_read_timestamp_seconds"},
		{[]string{"apply", "--region", "eu-west-1", "--data", dir}, "tcs_apply_last_commit_timestamp_seconds"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		var stderr bytes.Buffer
		go func() {
			done <- runWithReady(ctx, append(c.args, "--metrics-addr", "127.0.0.1:0"), noEnv, io.Discard, &stderr, ready)
		}()
		var base string
		select {
		case addr := <-ready:
			base = "http://" + addr
		case err := <-done:
			t.Fatalf("streamer %v: %v\n%s", c.args, err, stderr.String())
		}
		testwait.For(t, c.args[0]+" ready", func() bool {
			code, _ := get(base + "/readyz")
			return code == http.StatusOK
		})
		if code, body := get(base + "/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s /healthz: %d %q, want 200 ok", c.args[0], code, body)
		}
		if _, body := get(base + "/metrics"); !strings.Contains(body, c.metric) {
			t.Errorf("%s /metrics has no %s", c.args[0], c.metric)
		}
		if code, _ := get(base + "/other"); code != http.StatusNotFound {
			t.Errorf("%s /other: %d, want 404 (only /metrics, /healthz and /readyz are served)", c.args[0], code)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("streamer %v: %v\n%s", c.args, err, stderr.String())
		}
	}
}

func TestHealthFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"publish", "--ready-max-age", "0s"},
		{"publish", "--live-max-age", "-1s"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), args[1]) {
			t.Errorf("streamer %v: %v, want an error naming %s", args, err, args[1])
		}
	}
}

func ptr[T any](v T) *T { return &v }
