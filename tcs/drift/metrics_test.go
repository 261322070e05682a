package drift

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriteTextfile: a completed run writes 0 per clean region and its
// findings per drifted one; a failed run (nil report) writes completed 0
// and no findings over the last result.
func TestWriteTextfile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tcs_verify.prom")
	at := time.Unix(1700000000, 500_000_000)
	rep := &Report{Regions: []string{"r1", "r2"}, Findings: []Finding{{Region: "r2"}, {Region: "r2"}}, Unsettled: []string{"x"}}
	if err := WriteTextfile(path, rep, at); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"tcs_verify_completed 1",
		`tcs_verify_findings{region="r1"} 0`,
		`tcs_verify_findings{region="r2"} 2`,
		"tcs_verify_last_run_timestamp_seconds 1.7000000005e+09",
		"tcs_verify_unsettled_tenants 1",
	}
	if got := samples(t, path); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("completed run:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := WriteTextfile(path, nil, at); err != nil {
		t.Fatal(err)
	}
	want = []string{"tcs_verify_completed 0", "tcs_verify_last_run_timestamp_seconds 1.7000000005e+09"}
	if got := samples(t, path); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("failed run:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := WriteTextfile(filepath.Join(t.TempDir(), "no", "dir", "f.prom"), rep, at); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

// samples returns the file's sample lines.
func samples(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}
