package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

func writeFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tenants.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// badFile has good tenants on lines 1, 3 and 10, and a bad one on every
// other line, each for another reason.
func badFile(t *testing.T) (string, []string) {
	return writeFile(t,
			sampleTenant("new-1", 1),
			`{"id":"new-2","hostnames":["new-2.example.com"]`,
			sampleTenant("new-3", 3),
			`{"id":"new-4","hostnames":["bad_host.example.com"]}`,
			`{"id":"new-1","hostnames":["other.example.com"]}`,
			`{"id":"new-6","hostnames":["www.new-3.example.com"]}`,
			`{"id":"new-7","hostnames":["new-7.example.com"],"status":"DELETED"}`,
			`{"id":"new-8","hostnames":["taken.example.com"]}`,
			`{"id":"new-9","hostnames":["new-9.example.com"],"colour":"blue"}`,
			"",
			`{"id":"new-10","hostnames":["new-10.example.com"],"version":7,"updated_at":"2020-01-01T00:00:00Z"}`,
		), []string{"line 2", "line 4", "line 5 (tenant new-1): tenant id also on line 1", "line 6 (tenant new-6): hostname www.new-3.example.com also claimed on line 3",
			"line 7", "line 9"}
}

// TestBackfillAbort: one bad line and nothing is written; every bad line is
// reported with its number, including one only the catalog can see.
func TestBackfillAbort(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	s.create(t, `{"id":"old","hostnames":["taken.example.com"]}`)
	path, want := badFile(t)
	before := storeState(t, s)
	out := s.mustTcsctl(t, 1, "backfill", "--yes", "--from", path)
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(out, "nothing written") {
		t.Errorf("output:\n%s", out)
	}
	if diff := cmp.Diff(before, storeState(t, s)); diff != "" {
		t.Errorf("abort mode wrote (-before +after):\n%s", diff)
	}

	// Only the catalog knows taken.example.com is taken: checked before
	// anything is written.
	path = writeFile(t, sampleTenant("new-1", 1), `{"id":"new-8","hostnames":["taken.example.com"]}`)
	out = s.mustTcsctl(t, 1, "backfill", "--yes", "--from", path, "--on-error", "abort")
	if !strings.Contains(out, "line 2 (tenant new-8): hostname taken.example.com is held by tenant old") {
		t.Errorf("preflight:\n%s", out)
	}
	if diff := cmp.Diff(before, storeState(t, s)); diff != "" {
		t.Errorf("abort mode wrote after a preflight rejection (-before +after):\n%s", diff)
	}
	out = s.mustTcsctl(t, 1, "backfill", "--from", path, "--dry-run", "--on-error", "skip")
	if !strings.Contains(out, "dry run, nothing written: 1 line(s) would be imported, 1 rejected") {
		t.Errorf("dry run:\n%s", out)
	}

	path = writeFile(t, sampleTenant("new-1", 1), sampleTenant("new-2", 2))
	out = s.mustTcsctl(t, 0, "backfill", "--yes", "--from", path)
	if !strings.Contains(out, "created 2 tenant(s), 0 already present, 0 line(s) rejected") {
		t.Errorf("good file:\n%s", out)
	}
}

// TestBackfillSkip: the good lines are written, the bad ones reported; a
// second run counts what is already there instead of failing.
func TestBackfillSkip(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	s.create(t, `{"id":"old","hostnames":["taken.example.com"]}`)
	path, want := badFile(t)
	out := s.mustTcsctl(t, 1, "backfill", "--yes", "--from", path, "--on-error", "skip")
	for _, w := range append(want, "line 8 (tenant new-8): 409", "created 3 tenant(s), 0 already present, 7 line(s) rejected") {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	var ids []string
	for _, d := range storeState(t, s) {
		ids = append(ids, d.ID)
	}
	if diff := cmp.Diff([]string{"new-1", "new-10", "new-3", "old"}, ids); diff != "" {
		t.Errorf("store (-want +got):\n%s", diff)
	}
	if d := s.get(t, "new-10"); d.Version != 1 {
		t.Errorf("new-10 took the file's version: %d", d.Version)
	}
	out = s.mustTcsctl(t, 1, "backfill", "--yes", "--from", path, "--on-error", "skip")
	if !strings.Contains(out, "created 0 tenant(s), 3 already present, 7 line(s) rejected") {
		t.Errorf("second run:\n%s", out)
	}
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestExportResumeAndBackfill: an interrupted export continues where it
// stopped, writes each tenant once, and backfills into another system as
// the same tenants.
func TestExportResumeAndBackfill(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	const n = 30
	for i := range n {
		s.create(t, sampleTenant(fmt.Sprintf("t%02d", i), i))
	}
	if err := s.api.Delete(context.Background(), "t05", 0); err != nil {
		t.Fatalf("delete: %v", err)
	}

	out := s.mustTcsctl(t, 0, "export")
	if got := strings.Count(out, "\n"); got != n-1 {
		t.Errorf("export to stdout: %d lines, want %d", got, n-1)
	}
	out = s.mustTcsctl(t, 0, "export", "--include-deleted")
	if got := strings.Count(out, "\n"); got != n || !strings.Contains(out, `"status":"DELETED"`) {
		t.Errorf("export --include-deleted: %d lines, want %d", got, n)
	}

	file := filepath.Join(t.TempDir(), "out.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(600*time.Millisecond, cancel)
	code, _, errOut := s.tcsctl(t, ctx, "export", "--to", file, "--page-size", "3", "--rate", "20")
	if code != 130 {
		t.Fatalf("interrupted export: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("an interrupted export left %s: %v", file, err)
	}
	if _, err := os.Stat(file + ".partial"); err != nil {
		t.Errorf("no partial file: %v", err)
	}
	code, _, errOut = s.tcsctl(t, context.Background(), "export", "--to", file, "--page-size", "3")
	if code != 0 || !strings.Contains(errOut, "resuming from checkpoint") {
		t.Fatalf("resumed export: exit %d\n%s", code, errOut)
	}
	lines := readLines(t, file)
	if len(lines) != n-1 {
		t.Fatalf("export has %d lines, want %d", len(lines), n-1)
	}
	for i, l := range lines {
		want := fmt.Sprintf("t%02d", i)
		if i >= 5 {
			want = fmt.Sprintf("t%02d", i+1)
		}
		if l["id"] != want {
			t.Fatalf("line %d is %v, want %s", i+1, l["id"], want)
		}
	}

	other := startSystem(t, sysOptions{})
	out = other.mustTcsctl(t, 0, "backfill", "--yes", "--from", file)
	if !strings.Contains(out, fmt.Sprintf("created %d tenant(s)", n-1)) {
		t.Errorf("backfill of the export:\n%s", out)
	}
	a, b := storeState(t, s), storeState(t, other)
	if len(a) != len(b) {
		t.Fatalf("%d tenants exported, %d backfilled", len(a), len(b))
	}
	for i := range a {
		if !sameTenant(a[i], b[i]) {
			t.Errorf("%s differs after export and backfill:\n%+v\n%+v", a[i].ID, a[i], b[i])
		}
	}
}

// TestBackfillAbortRollsBack: in abort mode, a write the catalog refuses
// after every check passed (another writer took a hostname meanwhile) ends
// the run, and the tenants it had created are deleted again: never
// half-written.
func TestBackfillAbortRollsBack(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	var doc []string
	for i := range 5 {
		doc = append(doc, sampleTenant(fmt.Sprintf("new-%d", i), i))
	}
	f, err := os.Open(writeFile(t, doc...))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, bad, digest, err := parseBackfill(f)
	if err != nil || len(bad) > 0 {
		t.Fatalf("parse: %v %v", err, bad)
	}
	cat, err := httpclient.New(s.catalog, httpclient.WithToken(testToken))
	if err != nil {
		t.Fatal(err)
	}
	before := storeState(t, s)
	b := &backfiller{cat: cat, abort: true, beforeWrite: func(l backfillLine) {
		if l.tenant.ID == "new-3" {
			s.create(t, `{"id":"intruder","hostnames":["www.new-3.example.com"]}`)
		}
	}}
	var stdout bytes.Buffer
	e := &env{getenv: s.env(), stdout: &stdout, stderr: &stdout}
	err = b.run(context.Background(), e, jobFlags{workers: 1, checkpoint: "off"}, jobrun.WorkKey(digest), lines, false)
	if err == nil || !strings.Contains(err.Error(), "tenant new-3") || !strings.Contains(err.Error(), "were deleted again") {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	after := storeState(t, s)
	if len(after) != len(before)+1 || after[0].ID != "intruder" {
		var ids []string
		for _, d := range after {
			ids = append(ids, d.ID)
		}
		t.Errorf("after the rollback the store holds %v, want only the intruder added", ids)
	}
	if !strings.Contains(stdout.String(), "line 4 (tenant new-3): 409") {
		t.Errorf("output:\n%s", stdout.String())
	}
}
