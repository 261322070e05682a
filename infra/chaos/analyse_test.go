//go:build linux

package chaos

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadThresholdsCommitted(t *testing.T) {
	t.Parallel()
	th, err := LoadThresholds("")
	if err != nil {
		t.Fatal(err)
	}
	// The bounds: the committed file must not loosen them.
	if th.LostWrites != 0 || th.DivergentWrites != 0 || th.Resurrections != 0 || th.ClientVersionRegressions != 0 ||
		th.ConvergenceSeconds > 5 || th.ProcessKill.ClientAvailability < 0.999 || th.DynamoDBFreeze.RecentLookupAvailability < 0.99 ||
		th.SNSSQSFreeze.LagP99IncreaseSeconds > 1 || th.SNSSQSFreeze.OutdatedOverTTLSeconds > 0 || !th.VerifyClean || !th.ProcessesRecovered {
		t.Errorf("committed thresholds are looser than issue 17's bounds: %+v", th)
	}
}

func TestLoadThresholdsRejectsBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown field", `"lost_writes": 0,`, `"lost_write": 0,`, `unknown field "lost_write"`},
		{"negative count", `"lost_writes": 0,`, `"lost_writes": -1,`, "lost_writes is -1"},
		{"share above one", `"client_availability": 0.999`, `"client_availability": 1.5`, "process_kill.client_availability is 1.5"},
		{"zero convergence", `"convergence_seconds": 5,`, `"convergence_seconds": 0,`, "convergence_seconds is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(string(DefaultThresholds), tc.from, tc.to, 1)
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadThresholds(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("LoadThresholds: %v; want an error naming %s and %q", err, path, tc.want)
			}
		})
	}
}

func TestRegressions(t *testing.T) {
	t.Parallel()
	at := func(ms int) time.Time { return time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond) }
	s := func(start, dur int, id string, v int64) Sample {
		return Sample{Start: at(start), Duration: time.Duration(dur) * time.Millisecond, Outcome: OK, TenantID: id, Version: v, Host: id + ".test"}
	}
	host := func(s Sample, h string) Sample { s.Host = h; return s }
	for _, tc := range []struct {
		name    string
		samples []Sample
		perHost bool
		want    int
	}{
		{"increasing", []Sample{s(0, 10, "a", 1), s(20, 10, "a", 2), s(40, 10, "a", 2)}, false, 0},
		{"older after newer", []Sample{s(0, 10, "a", 3), s(20, 10, "a", 2)}, false, 1},
		{"concurrent lookups are not ordered", []Sample{s(0, 50, "a", 3), s(10, 10, "a", 2)}, false, 0},
		{"a lookup that started before the newer answer arrived", []Sample{s(0, 10, "a", 3), s(5, 20, "a", 2)}, false, 0},
		{"tenants are separate", []Sample{s(0, 10, "a", 3), s(20, 10, "b", 1)}, false, 0},
		{"failures carry no version", []Sample{s(0, 10, "a", 3), {Start: at(20), Duration: time.Millisecond, Outcome: Failed}}, false, 0},
		{"per tenant across hostnames", []Sample{s(0, 10, "a", 3), host(s(20, 10, "a", 2), "other.test")}, false, 1},
		{"per hostname", []Sample{s(0, 10, "a", 3), host(s(20, 10, "a", 2), "other.test")}, true, 0},
		{"per hostname, same hostname", []Sample{s(0, 10, "a", 3), s(20, 10, "a", 2)}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := regressions(tc.samples, tc.perHost, func(string, ...any) {}); got != tc.want {
				t.Errorf("regressions = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestP99(t *testing.T) {
	t.Parallel()
	var ds []time.Duration
	for i := 1; i <= 200; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if got := p99(ds); got != 198*time.Millisecond {
		t.Errorf("p99 of 1..200ms = %v, want 198ms", got)
	}
	if got := p99(nil); got != 0 {
		t.Errorf("p99 of nothing = %v, want 0", got)
	}
}

// syntheticRun is a finished run without processes: three writes to one
// tenant, a delete of another, one region and one client reader.
func syntheticRun(t0 time.Time) *Run {
	w := &Writer{tenants: map[string]*tenantState{}}
	w.acks = []Ack{
		{Op: "create", ID: "a", Version: 1, Hostnames: []string{"a.chaos.test"}, Labels: map[string]string{"seq": "0"}, At: t0},
		{Op: "update", ID: "a", Version: 2, Hostnames: []string{"a.chaos.test"}, Labels: map[string]string{"seq": "1"}, At: t0.Add(time.Second)},
		{Op: "create", ID: "d", Version: 1, Hostnames: []string{"d.chaos.test"}, At: t0},
		{Op: "delete", ID: "d", Version: 2, Deleted: true, At: t0.Add(time.Second)},
	}
	w.attempts = []WriteAttempt{{Op: "update", ID: "a", Start: t0.Add(2 * time.Second), Latency: time.Second, Status: "503"}}
	region := &Reader{Name: "region r1", Kind: "region", Region: "r1"}
	client := &Reader{Name: "client r1", Kind: "client", Region: "r1"}
	return &Run{
		Config:   ShortConfig(),
		Topology: &Topology{Regions: []string{"r1"}},
		Writer:   w,
		Readers:  []*Reader{region, client},
		Lag:      &LagProbe{},
		Windows: []*window{
			{Name: "baseline", Kind: KindBaseline, Start: t0, Heal: t0.Add(3 * time.Second), ConvergedOK: true},
			{Name: "kill", Kind: KindKill, Start: t0.Add(3 * time.Second), Heal: t0.Add(6 * time.Second), Converged: time.Second, ConvergedOK: true},
		},
		Final: FinalState{
			Catalog: map[string]catalogEntry{
				"a": {Version: 2, Hostnames: []string{"a.chaos.test"}, Labels: map[string]string{"seq": "1"}},
				"d": {Version: 2, Deleted: true},
			},
			VerifyClean: true, FinalConvergedOK: true,
		},
		Started: t0, Ended: t0.Add(10 * time.Second),
	}
}

func TestAnalyse(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0)
	ok := func(start time.Duration, id string, v int64) Sample {
		return Sample{Start: t0.Add(start), Duration: time.Millisecond, Host: id + ".chaos.test", Outcome: OK, TenantID: id, Version: v}
	}
	th, err := LoadThresholds("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(r *Run)
		check func(t *testing.T, rep *Report)
	}{
		{"clean run", func(r *Run) {
			r.Readers[0].samples = []Sample{ok(3500*time.Millisecond, "a", 2)}
			r.Readers[1].samples = []Sample{ok(3500*time.Millisecond, "a", 2)}
		}, func(t *testing.T, rep *Report) {
			if len(rep.Violations) != 0 || rep.TimingOnly() {
				t.Errorf("violations %v (timing only: %v), want none", rep.Violations, rep.TimingOnly())
			}
			if got := rep.Faults[1].Readers[1].Availability; got != 1 {
				t.Errorf("client availability during the kill %v, want 1", got)
			}
		}},
		{"lost write", func(r *Run) {
			r.Final.Catalog["a"] = catalogEntry{Version: 1, Hostnames: []string{"a.chaos.test"}, Labels: map[string]string{"seq": "0"}}
		}, func(t *testing.T, rep *Report) {
			if rep.Totals.LostWrites != 1 || !hasViolation(rep, "acknowledged writes lost: 1") {
				t.Errorf("lost %d, violations %v; want 1 lost write reported", rep.Totals.LostWrites, rep.Violations)
			}
			if rep.TimingOnly() {
				t.Error("a lost write counts as a timing bound (the suite would run again rather than fail)")
			}
		}},
		{"divergent write", func(r *Run) {
			r.Final.Catalog["a"] = catalogEntry{Version: 2, Hostnames: []string{"other.chaos.test"}, Labels: map[string]string{"seq": "1"}}
		}, func(t *testing.T, rep *Report) {
			if rep.Totals.DivergentWrites != 1 {
				t.Errorf("divergent %d, want 1", rep.Totals.DivergentWrites)
			}
		}},
		{"later version after an unknown outcome is fine", func(r *Run) {
			r.Final.Catalog["a"] = catalogEntry{Version: 3, Hostnames: []string{"a.chaos.test"}}
			r.Writer.tenants["a"] = &tenantState{id: "a", unknownAfterAck: true}
		}, func(t *testing.T, rep *Report) {
			if rep.Totals.DivergentWrites != 0 || rep.Totals.LostWrites != 0 {
				t.Errorf("divergent %d lost %d, want 0", rep.Totals.DivergentWrites, rep.Totals.LostWrites)
			}
		}},
		{"later version without an unknown outcome diverges", func(r *Run) {
			r.Final.Catalog["a"] = catalogEntry{Version: 3, Hostnames: []string{"a.chaos.test"}}
		}, func(t *testing.T, rep *Report) {
			if rep.Totals.DivergentWrites != 1 {
				t.Errorf("divergent %d, want 1", rep.Totals.DivergentWrites)
			}
		}},
		{"resurrected in the catalog", func(r *Run) {
			r.Final.Catalog["d"] = catalogEntry{Version: 3, Hostnames: []string{"d.chaos.test"}}
		}, func(t *testing.T, rep *Report) {
			if rep.Totals.Resurrections != 1 {
				t.Errorf("resurrections %d, want 1", rep.Totals.Resurrections)
			}
		}},
		{"resurrected in a region", func(r *Run) {
			r.Readers[0].samples = []Sample{ok(4*time.Second, "d", 2)}
		}, func(t *testing.T, rep *Report) {
			if rep.Totals.Resurrections != 1 {
				t.Errorf("resurrections %d, want 1", rep.Totals.Resurrections)
			}
		}},
		{"client regression", func(r *Run) {
			r.Readers[1].samples = []Sample{ok(3500*time.Millisecond, "a", 2), ok(4*time.Second, "a", 1)}
		}, func(t *testing.T, rep *Report) {
			if rep.Totals.ClientVersionRegressions != 1 || rep.Totals.RegionVersionRegressions != 0 {
				t.Errorf("client %d region %d regressions, want 1 and 0", rep.Totals.ClientVersionRegressions, rep.Totals.RegionVersionRegressions)
			}
		}},
		{"client unavailable during a kill", func(r *Run) {
			for i := range 999 {
				r.Readers[1].samples = append(r.Readers[1].samples, ok(3*time.Second+time.Duration(i)*time.Millisecond, "a", 2))
			}
			r.Readers[1].samples = append(r.Readers[1].samples,
				Sample{Start: t0.Add(5 * time.Second), Outcome: Failed, Error: "unavailable"},
				Sample{Start: t0.Add(5 * time.Second), Outcome: Failed, Error: "unavailable"})
		}, func(t *testing.T, rep *Report) {
			if !hasViolation(rep, "kill: client r1 answered 99.80% of lookups (999/1001), bound 99.90%") {
				t.Errorf("violations %v, want the client's availability during the kill", rep.Violations)
			}
			if !rep.TimingOnly() {
				t.Errorf("violations %v, %d of them timing bounds: want the availability to be a timing bound only", rep.Violations, rep.TimingViolations)
			}
		}},
		{"slow convergence", func(r *Run) {
			r.Windows[1].Converged = 6 * time.Second
		}, func(t *testing.T, rep *Report) {
			if !hasViolation(rep, "kill: converged 6.0s after healing, bound 5.0s") {
				t.Errorf("violations %v, want the convergence bound", rep.Violations)
			}
			if !rep.TimingOnly() {
				t.Errorf("violations %v, %d of them timing bounds: want a slow convergence to be a timing bound only", rep.Violations, rep.TimingViolations)
			}
		}},
		{"no convergence", func(r *Run) {
			r.Windows[1].Converged, r.Windows[1].ConvergedOK = time.Second, false
			r.Windows[1].convergeUnconverged = []string{"r1: a (answers a v1)"}
		}, func(t *testing.T, rep *Report) {
			if !hasViolation(rep, "kill: did not converge (gave up 1.0s after healing: r1: a (answers a v1))") {
				t.Errorf("violations %v, want the convergence bound", rep.Violations)
			}
			if rep.TimingOnly() {
				t.Error("a fault that never converged counts as a timing bound")
			}
		}},
		{"dynamodb freeze: hung and unhinted writes", func(r *Run) {
			r.Windows[1].Kind = KindDynamoFreeze
			r.Writer.attempts = append(r.Writer.attempts,
				WriteAttempt{Op: "update", ID: "a", Start: t0.Add(4 * time.Second), Latency: time.Second, Status: "503", NoRetryAfter: true},
				WriteAttempt{Op: "update", ID: "a", Start: t0.Add(4 * time.Second), Latency: 7 * time.Second, Status: "503"},
				WriteAttempt{Op: "update", ID: "a", Start: t0.Add(5 * time.Second), Latency: time.Second, Status: "500"})
		}, func(t *testing.T, rep *Report) {
			for _, want := range []string{"kill: 1 writes got a 503 without Retry-After", "kill: 1 writes got no answer within 6.0s", "kill: 1 writes failed with 500"} {
				if !hasViolation(rep, want) {
					t.Errorf("violations %v, want %q", rep.Violations, want)
				}
			}
		}},
		{"outdated answer", func(r *Run) {
			r.Readers[0].samples = []Sample{ok(3500*time.Millisecond, "a", 1)}
		}, func(t *testing.T, rep *Report) {
			rr := rep.Faults[1].Readers[0]
			if rr.Outdated != 1 || rr.MaxOutdatedSeconds != 2.5 {
				t.Errorf("outdated %d max %.1fs, want 1 answer 2.5s outdated (v2 acknowledged at 1s, asked at 3.5s)", rr.Outdated, rr.MaxOutdatedSeconds)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := syntheticRun(t0)
			tc.edit(r)
			tc.check(t, Analyse(r, th, t.TempDir()))
		})
	}
}

func hasViolation(rep *Report, prefix string) bool {
	for _, v := range rep.Violations {
		if strings.HasPrefix(v, prefix) {
			return true
		}
	}
	return false
}

func TestReportWrite(t *testing.T) {
	t.Parallel()
	th, err := LoadThresholds("")
	if err != nil {
		t.Fatal(err)
	}
	r := syntheticRun(time.Unix(1_000_000, 0))
	r.Final.Catalog["a"] = catalogEntry{Version: 1}
	rep := Analyse(r, th, "logs")
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**Result: 1 bounds exceeded.**", "- acknowledged writes lost: 1, bound 0", "## kill", "| client r1 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	var writes writeLog
	data, err := os.ReadFile(filepath.Join(dir, "writes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &writes); err != nil || len(writes.Acknowledged) != 4 || len(writes.Requests) != 1 {
		t.Errorf("writes.json: %v, %d acknowledged, %d requests; want 4 and 1", err, len(writes.Acknowledged), len(writes.Requests))
	}
	var back Report
	data, err = os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &back); err != nil || back.Totals.LostWrites != 1 || len(back.Faults) != 2 {
		t.Errorf("report.json: %v, lost %d, %d faults; want 1 lost write and 2 faults", err, back.Totals.LostWrites, len(back.Faults))
	}
}
