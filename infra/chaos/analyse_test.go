//go:build linux

package chaos

import (
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
