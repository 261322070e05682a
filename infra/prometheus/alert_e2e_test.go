//go:build linux

package prometheus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/infra/chaos"
	"github.com/tcs-dev/tcs/internal/freeport"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// Timing of the end-to-end test's Prometheus. The alert's own thresholds
// (30 s behind, for 30 s) are the committed rule's.
const (
	scrapeInterval = time.Second
	evalInterval   = time.Second
	// stallAfter is TCSReplicationStalled's threshold plus its for.
	stallAfter = 30*time.Second + 30*time.Second
)

// TestStallAlertEndToEnd runs the AWS topology on the emulators (two
// regions) under writes, scraped by a real Prometheus (Debian's package, on
// loopback) loaded with the committed rules. It kills the second region's
// only applier: TCSReplicationStalled must fire for that region, and only
// for it, within the rule's threshold and for plus two scrape intervals
// (and an evaluation); once the applier is back, the alert resolves.
func TestStallAlertEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the AWS topology on the emulators and Prometheus for minutes")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("REQUIRE_PROMTOOL") != "" {
			t.Fatal("prometheus is not installed (apt-get install prometheus); REQUIRE_PROMTOOL is set")
		}
		t.Skip("the prometheus server is not installed, so the alert was not tested end to end (.ci/run installs it: apt-get install --no-install-recommends prometheus)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	binDir, logs := t.TempDir(), t.TempDir()
	if err := chaos.BuildBinaries(ctx, root, binDir); err != nil {
		t.Fatal(err)
	}
	regions := []string{"us-east-1", "eu-west-1"}
	topo, err := chaos.StartTopology(ctx, binDir, logs, regions, 5*time.Second, os.Getenv)
	if err != nil {
		t.Fatalf("start the topology: %v (logs in %s)", err, logs)
	}
	t.Cleanup(topo.Stop)
	w := chaos.NewWriter(topo.CatalogURL, 2, 5, 5*time.Second)
	wctx, stopWrites := context.WithCancel(ctx)
	writing := make(chan struct{})
	go func() { defer close(writing); w.Run(wctx) }()
	t.Cleanup(func() { stopWrites(); <-writing })

	// Lookups in every region, so that the tcs nodes' SLO series have data.
	// A 5 s deadline: with 1 s, a loaded CI machine (load 11, -race) once
	// held lookups past their deadline for a few seconds, and
	// DEADLINE_EXCEEDED counts against the SLO: the healthy system's error
	// ratio read 5%.
	for _, r := range regions {
		rd, err := chaos.NewRegionReader(r, topo.TCSAddrs[r], 20, 5*time.Second, w.Hosts)
		if err != nil {
			t.Fatal(err)
		}
		rctx, stopReads := context.WithCancel(ctx)
		reading := make(chan struct{})
		go func() { defer close(reading); rd.Run(rctx) }()
		t.Cleanup(func() { stopReads(); <-reading; rd.Close() })
	}

	prom := startPrometheus(t, bin, topo.MetricsTargets())
	// Healthy: every target scraped, both regions applying, no stall.
	testwait.Until(t, 2*time.Minute, 200*time.Millisecond, "Prometheus to see both regions apply and the publisher publish", func() (bool, string) {
		res := prom.query(t, `max(tcs_publish_last_commit_timestamp_seconds) - on() group_right() max by (region) (tcs_apply_last_commit_timestamp_seconds)`)
		return len(res) == len(regions), fmt.Sprintf("%d regions in %v", len(res), res)
	})
	if a := prom.alerts(t, "TCSReplicationStalled"); len(a) > 0 {
		t.Fatalf("TCSReplicationStalled on a healthy system: %+v", a)
	}
	// The SLO recording rules, on the tcs nodes' own series: lookups
	// counted per region, none of them errors, and propagation (commit to
	// invalidation received) measured.
	testwait.Until(t, time.Minute, 200*time.Millisecond, "the SLO recording rules to have every region", func() (bool, string) {
		reqs := byRegion(t, prom.query(t, `tcs:lookup_requests:rate5m > 0`))
		prop := byRegion(t, prom.query(t, `tcs:lookup_propagation_seconds:p99_5m >= 0`))
		return len(reqs) == len(regions) && len(prop) == len(regions), fmt.Sprintf("lookup rates %v, propagation p99 %v", reqs, prop)
	})
	if errs := byRegion(t, prom.query(t, `tcs:lookup_error_ratio:rate5m`)); len(errs) != len(regions) || errs["us-east-1"] != 0 || errs["eu-west-1"] != 0 {
		t.Errorf("tcs:lookup_error_ratio:rate5m on a healthy system: %v, want 0 in every region", errs)
	}
	for _, name := range []string{"TCSInvalidationFeedDown", "TCSReplicaUnreadable", "TCSLookupErrorBudgetBurn", "TCSStaleAnswersServed"} {
		if a := prom.alerts(t, name); len(a) > 0 {
			t.Errorf("%s on a healthy system: %+v", name, a)
		}
	}

	applier := topo.Appliers["eu-west-1"][0]
	if err := applier.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	bound := stallAfter + 2*scrapeInterval + evalInterval + 5*time.Second // 5 s: rule groups start off-beat
	var fired time.Duration
	testwait.Until(t, bound+time.Minute, 200*time.Millisecond, "TCSReplicationStalled to fire for eu-west-1", func() (bool, string) {
		as := prom.alerts(t, "TCSReplicationStalled")
		for _, a := range as {
			if a.Labels["region"] != "eu-west-1" {
				t.Fatalf("TCSReplicationStalled for %s, whose appliers run: %+v", a.Labels["region"], a)
			}
			if a.State == "firing" {
				fired = time.Since(killed)
				return true, ""
			}
		}
		return false, fmt.Sprintf("alerts %+v", as)
	})
	t.Logf("TCSReplicationStalled fired %v after the applier was killed (bound %v)", fired.Round(time.Millisecond), bound)
	if fired > bound {
		t.Errorf("TCSReplicationStalled fired %v after the applier was killed; want within %v (30 s behind, for 30 s, two scrapes and an evaluation)", fired, bound)
	}
	// The region's applier was also its feed's only heartbeat: its tcs
	// node has reported the feed down since --feed-timeout (15 s), so
	// TCSInvalidationFeedDown is pending (for 2m) for that region only.
	if as := prom.alerts(t, "TCSInvalidationFeedDown"); len(as) != 1 || as[0].Labels["region"] != "eu-west-1" {
		t.Errorf("TCSInvalidationFeedDown with eu-west-1's applier down %v: %+v, want one alert, for eu-west-1", time.Since(killed).Round(time.Second), as)
	}

	if err := applier.Start(); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	if err := applier.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	testwait.Until(t, time.Minute, 200*time.Millisecond, "TCSReplicationStalled to resolve once the applier is back", func() (bool, string) {
		as := prom.alerts(t, "TCSReplicationStalled")
		return len(as) == 0, fmt.Sprintf("alerts %+v", as)
	})
	t.Logf("TCSReplicationStalled resolved %v after the applier was back", time.Since(back).Round(time.Millisecond))
	testwait.Until(t, time.Minute, 200*time.Millisecond, "TCSInvalidationFeedDown to resolve once the applier is back", func() (bool, string) {
		as := prom.alerts(t, "TCSInvalidationFeedDown")
		return len(as) == 0, fmt.Sprintf("alerts %+v", as)
	})
}

// byRegion returns the value of each sample of an instant vector by its
// region label; a sample without one, or whose value is not a number, fails
// the test.
func byRegion(t *testing.T, res []map[string]any) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, r := range res {
		m, _ := r["metric"].(map[string]any)
		region, _ := m["region"].(string)
		v, _ := r["value"].([]any)
		if region == "" || len(v) != 2 {
			t.Fatalf("sample %v: want a region label and a value", r)
		}
		f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64)
		if err != nil || math.IsNaN(f) {
			t.Fatalf("sample %v: value %v is not a number", r, v[1])
		}
		out[region] = f
	}
	return out
}

// promServer is a Prometheus server the test started.
type promServer struct{ base string }

// startPrometheus starts prometheus on a loopback port with the committed
// rules, scraping targets (name → host:port) every scrapeInterval, and
// stops it when t ends.
func startPrometheus(t *testing.T, bin string, targets map[string]string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs("rules")
	if err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: %v\n  evaluation_interval: %v\n", scrapeInterval, evalInterval)
	fmt.Fprintf(&cfg, "rule_files:\n  - %s\n", filepath.Join(rules, "*.yml"))
	fmt.Fprintf(&cfg, "scrape_configs:\n")
	names := make([]string, 0, len(targets))
	for n := range targets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    scrape_timeout: 900ms\n    static_configs:\n      - targets: [%q]\n", n, targets[n])
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("prometheus config:\n%s\nprometheus log:\n%s", cfg.String(), out)
		}
	})
	p := &promServer{base: "http://" + addr}
	testwait.Until(t, time.Minute, 200*time.Millisecond, "prometheus to be ready", func() (bool, string) {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// query returns the instant vector expr evaluates to now.
func (p *promServer) query(t *testing.T, expr string) []map[string]any {
	t.Helper()
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []map[string]any `json:"result"`
		} `json:"data"`
		Error string `json:"error"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(expr), &out)
	if out.Status != "success" {
		t.Fatalf("query %s: %s", expr, out.Error)
	}
	return out.Data.Result
}

type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// alerts returns the pending and firing alerts named name.
func (p *promServer) alerts(t *testing.T, name string) []alert {
	t.Helper()
	var out struct {
		Data struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/alerts", &out)
	var as []alert
	for _, a := range out.Data.Alerts {
		if a.Labels["alertname"] == name {
			as = append(as, a)
		}
	}
	return as
}

func (p *promServer) get(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}
