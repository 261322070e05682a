package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/tcs/drift"
)

// TestVerifyMetricsFile: verify --metrics-file writes what it found as
// Prometheus text (0 per clean region, the confirmed findings of a drifted
// one), and a run that fails before judging writes tcs_verify_completed 0
// with no findings, replacing the last result.
func TestVerifyMetricsFile(t *testing.T) {
	t.Parallel()
	s, docs := driftSystem(t)
	file := filepath.Join(t.TempDir(), "tcs_verify.prom")

	before := time.Now()
	s.mustTcsctl(t, 0, "verify", "--metrics-file", file)
	want := map[string]float64{
		"tcs_verify_completed":                         1,
		"tcs_verify_unsettled_tenants":                 0,
		`tcs_verify_findings{region="us-east-1"}`:      0,
		`tcs_verify_findings{region="eu-west-1"}`:      0,
		`tcs_verify_findings{region="ap-southeast-2"}`: 0,
	}
	checkProm(t, "clean", readProm(t, file), want, before)

	injectDrift(t, s, docs)
	out := s.mustTcsctl(t, 1, "verify", "-o", "json", "--metrics-file", file, "--settle", "50ms")
	var rep drift.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Findings) == 0 {
		t.Fatalf("verify -o json after injecting drift: %v\n%s", err, out)
	}
	for _, f := range rep.Findings {
		want[`tcs_verify_findings{region="`+f.Region+`"}`]++
	}
	checkProm(t, "drifted", readProm(t, file), want, before)

	code, _, errOut := s.tcsctl(t, context.Background(), "verify", "--metrics-file", file, "--catalog", "http://127.0.0.1:1")
	if code == 0 || code == exitFinding {
		t.Fatalf("verify against no catalog: exit %d, want an error exit\n%s", code, errOut)
	}
	checkProm(t, "failed", readProm(t, file), map[string]float64{"tcs_verify_completed": 0}, before)

	code, _, errOut = s.tcsctl(t, context.Background(), "verify", "--metrics-file", filepath.Join(t.TempDir(), "no", "such", "dir", "f.prom"))
	if code == 0 || !strings.Contains(errOut, "--metrics-file") {
		t.Errorf("verify with an unwritable --metrics-file: exit %d, stderr %q; want an error naming --metrics-file", code, errOut)
	}
}

var promLine = regexp.MustCompile(`^([a-z_]+(?:\{[^}]*\})?) (\S+)$`)

// readProm reads a Prometheus text file into series → value.
func readProm(t *testing.T, file string) map[string]float64 {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := promLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: not a sample line: %q\n%s", file, line, raw)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", file, line, err)
		}
		out[m[1]] = v
	}
	return out
}

// checkProm compares got with want; the run timestamp must be at or after
// since and no later than now.
func checkProm(t *testing.T, name string, got, want map[string]float64, since time.Time) {
	t.Helper()
	ts, ok := got["tcs_verify_last_run_timestamp_seconds"]
	if now := float64(time.Now().Unix()) + 1; !ok || ts < float64(since.Unix()) || ts > now {
		t.Errorf("%s: tcs_verify_last_run_timestamp_seconds = %v, want between %v and %v", name, ts, since.Unix(), now)
	}
	delete(got, "tcs_verify_last_run_timestamp_seconds")
	if len(got) != len(want) {
		t.Errorf("%s: series %v, want %v", name, got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: %s = %v (present %v), want %v", name, k, g, ok, v)
		}
	}
}
