//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReaderRecordsWhyLookupsFailed: a failed lookup carries its error's
// message and what the reader had got for the hostname before it began.
func TestReaderRecordsWhyLookupsFailed(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{Name: "region r1", Kind: "region", Region: "r1", rate: 200, timeout: time.Second,
		hosts: func() []string { return []string{"a.chaos.test"} }}
	r.lookup = func(_ context.Context, _ string, s *Sample) {
		i := n.Add(1)
		if i == 6 {
			cancel() // Run returns once the lookups in flight are recorded
		}
		switch i {
		case 2, 3:
			s.Outcome, s.TenantID, s.Version = OK, "a", 1
		default:
			s.Outcome, s.Error, s.Detail = Failed, "Unavailable", "replica down"
		}
	}
	r.Run(ctx)
	ss := r.Samples()
	if len(ss) < 6 {
		t.Fatalf("%d samples, want 6", len(ss))
	}
	var failed int
	for _, s := range ss {
		if s.Answered() {
			if s.Prev != "" || s.Detail != "" {
				t.Errorf("an answered lookup has prev %q detail %q", s.Prev, s.Detail)
			}
			continue
		}
		failed++
		if s.Detail != "replica down" {
			t.Errorf("detail %q, want the error's message", s.Detail)
		}
		// Which answers had arrived when it began decides its Prev.
		var answeredBefore bool
		for _, o := range ss {
			if o.Answered() && !o.Start.Add(o.Duration).After(s.Start) {
				answeredBefore = true
			}
		}
		want := "none ("
		if answeredBefore {
			want = "a v1, answered "
		}
		if !strings.HasPrefix(s.Prev, want) {
			t.Errorf("failed lookup at %s: prev %q, want it to begin %q", s.Start.Format(time.StampMilli), s.Prev, want)
		}
		// Only a hostname answered before counts as recently looked up:
		// repeated failed lookups do not make it one.
		if s.Recent != answeredBefore {
			t.Errorf("failed lookup at %s: recent %v, want %v", s.Start.Format(time.StampMilli), s.Recent, answeredBefore)
		}
	}
	if failed < 4 {
		t.Errorf("%d failed lookups, want at least 4", failed)
	}
}

func TestPrevAnswerAnsweredWithin(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0)
	answered := prevAnswer{s: &Sample{Start: t0, Duration: time.Second, Outcome: NotFound}}
	for _, tc := range []struct {
		p    prevAnswer
		now  time.Time
		want bool
	}{
		{prevAnswer{failures: 5}, t0.Add(2 * time.Second), false},
		{answered, t0.Add(2 * time.Second), true},
		{answered, t0.Add(time.Second + RecentWindow), true},
		{answered, t0.Add(2*time.Second + RecentWindow), false},
	} {
		if got := tc.p.answeredWithin(tc.now, RecentWindow); got != tc.want {
			t.Errorf("%+v answeredWithin at +%v = %v, want %v", tc.p, tc.now.Sub(t0), got, tc.want)
		}
	}
}

func TestPrevAnswerDescribe(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		p    prevAnswer
		want string
	}{
		{prevAnswer{failures: 2}, "none (2 failed lookups before)"},
		{prevAnswer{s: &Sample{Start: t0, Duration: 100 * time.Millisecond, Outcome: OK, TenantID: "a", Version: 3}, failures: 1},
			"a v3, answered 900ms before; 1 failed since"},
		{prevAnswer{s: &Sample{Start: t0, Duration: 100 * time.Millisecond, Outcome: NotFound, Stale: true, Age: 2 * time.Second}},
			"not_found stale (age 2s), answered 900ms before; 0 failed since"},
	} {
		if got := tc.p.describe(t0.Add(time.Second)); got != tc.want {
			t.Errorf("describe = %q, want %q", got, tc.want)
		}
	}
}

// TestFailuresFile: failures.json lists each fault's failed lookups per
// reader, counting those of hostnames never answered before.
func TestFailuresFile(t *testing.T) {
	t.Parallel()
	th, err := LoadThresholds("")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_000_000, 0)
	r := syntheticRun(t0)
	r.Readers[0].samples = []Sample{
		{Reader: "region r1", Start: t0.Add(4 * time.Second), Host: "a.chaos.test", Outcome: Failed, Error: "Unavailable", Detail: "replica down", Prev: "none (0 failed lookups before)"},
		{Reader: "region r1", Start: t0.Add(5 * time.Second), Host: "a.chaos.test", Outcome: Failed, Error: "Unavailable", Prev: "a v2, answered 1s before; 0 failed since"},
		{Reader: "region r1", Start: t0.Add(5 * time.Second), Host: "a.chaos.test", Outcome: OK, TenantID: "a", Version: 2},
	}
	rep := Analyse(r, th, "logs")
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "failures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ff []FaultFailures
	if err := json.Unmarshal(data, &ff); err != nil {
		t.Fatal(err)
	}
	if len(ff) != 2 || ff[0].Fault != "baseline" || len(ff[0].Samples) != 0 || ff[1].Fault != "kill" {
		t.Fatalf("failures.json = %+v; want baseline without failures, then kill", ff)
	}
	k := ff[1]
	if k.Failed["region r1"] != 2 || k.NeverAnswered["region r1"] != 1 || len(k.Samples) != 2 || k.Samples[0].Detail != "replica down" {
		t.Errorf("kill failures = %+v; want 2 failed, 1 never answered, both listed", k)
	}
}
