package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/catalog/tenantexpr"
	"github.com/tcs-dev/tcs/internal/jobrun"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// storeState is every live tenant of the source of truth.
func storeState(t *testing.T, s *system) []*tenant.Tenant {
	t.Helper()
	var out []*tenant.Tenant
	for after := ""; ; {
		p, err := s.store.List(context.Background(), catalog.ListOptions{After: after, Limit: catalog.MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Tenants...)
		if p.Next == "" {
			return out
		}
		after = p.Next
	}
}

// transformSystem has tenants t00…t11 on database hosts db-7, db-8 and
// db-9.internal in turn; t03 is suspended.
func transformSystem(t *testing.T) *system {
	t.Helper()
	s := startSystem(t, sysOptions{})
	for i := range 12 {
		s.create(t, sampleTenant(fmt.Sprintf("t%02d", i), i))
	}
	if err := s.patch(t, "t03", 1, `{"status":"SUSPENDED"}`); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	return s
}

const moveDB = `database.host == "db-7.internal" && status == "ACTIVE"`

// TestTransformDryRun: a dry run prints each matching tenant's diff and
// hostnames, and writes nothing.
func TestTransformDryRun(t *testing.T) {
	t.Parallel()
	s := transformSystem(t)
	before := storeState(t, s)
	out := s.mustTcsctl(t, 0, "transform", "--where", moveDB, "--set", "database.host=db-9.internal", "--set", "labels.moved=yes", "--dry-run")
	for _, w := range []string{
		"~ t00 (version 1)", `database.host: "db-7.internal" → "db-9.internal"`, `labels.moved: (none) → "yes"`,
		"hostnames affected: t00.example.com, www.t00.example.com", "~ t06 (version 1)", "~ t09 (version 1)",
		"dry run, nothing written: scanned 12, would_change 3",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "t03") { // on db-7 but suspended
		t.Errorf("dry run matched a suspended tenant:\n%s", out)
	}
	out = s.mustTcsctl(t, 0, "transform", "--where", moveDB, "--set", "database.host=db-9.internal", "--dry-run", "-o", "json")
	var rep transformReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Results) != 3 || rep.Summary["would_change"] != 3 || !rep.DryRun {
		t.Errorf("dry run -o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(before, storeState(t, s)); diff != "" {
		t.Errorf("a dry run changed the store (-before +after):\n%s", diff)
	}
}

// TestTransform: a real run changes exactly the matching tenants, with
// If-Match; a second run finds nothing left to change.
func TestTransform(t *testing.T) {
	t.Parallel()
	s := transformSystem(t)
	out := s.mustTcsctl(t, 0, "transform", "--yes", "--where", moveDB, "--set", "database.host=db-9.internal", "--set", "database.port=6432")
	if !strings.Contains(out, "changed t00 1 → 2") || !strings.Contains(out, "changed 3,") && !strings.Contains(out, "changed 3") {
		t.Errorf("transform:\n%s", out)
	}
	for _, d := range storeState(t, s) {
		moved := d.ID == "t00" || d.ID == "t06" || d.ID == "t09"
		if moved != (d.Database.Host == "db-9.internal" && d.Database.Port == 6432) {
			t.Errorf("%s: database %+v (moved %v)", d.ID, d.Database, moved)
		}
	}
	out = s.mustTcsctl(t, 0, "transform", "--yes", "--where", `database.host == "db-9.internal"`, "--set", "database.port=6432")
	if !strings.Contains(out, "= t00: already as --set wants") || strings.Contains(out, "changed t00") || !strings.Contains(out, "changed t02 1 → 2") {
		t.Errorf("second transform:\n%s", out)
	}
	// Rejections name the tenant and the cause; bad input is exit 2.
	code, out, _ := s.tcsctl(t, context.Background(), "transform", "--yes", "--where", `id == "t01"`, "--set", "database.port=99999999")
	if code != 1 || !strings.Contains(out, "FAILED t01") || !strings.Contains(out, "database.port") {
		t.Errorf("invalid change: exit %d\n%s", code, out)
	}
	s.mustTcsctl(t, 2, "transform", "--where", `databse.host == "x"`, "--set", "region=eu-west-1")
	s.mustTcsctl(t, 2, "transform", "--where", `id == "t01"`, "--set", "version=3")
	s.mustTcsctl(t, 2, "transform", "--where", `id == "t01"`)
}

// TestTransformConcurrentWriter: a writer that changes each tenant between
// transform's read and its write makes transform re-read and retry; both
// changes survive.
func TestTransformConcurrentWriter(t *testing.T) {
	t.Parallel()
	s := transformSystem(t)
	cat, err := httpclient.New(s.catalog, httpclient.WithToken(testToken))
	if err != nil {
		t.Fatal(err)
	}
	cond, err := tenantexpr.Parse(moveDB)
	if err != nil {
		t.Fatal(err)
	}
	var raced atomic.Int64
	tr := &transformer{cat: cat, where: cond, patch: httpclient.MergePatch{"database": map[string]any{"host": "db-9.internal"}}, maxRetries: 10,
		beforeWrite: func(id string, attempt int) {
			if attempt > 1 {
				return
			}
			// Another operator labels the tenant meanwhile (no If-Match race:
			// read its current version first).
			cur := s.get(t, id)
			if err := s.patch(t, id, cur.Version, fmt.Sprintf(`{"labels":{"owner":"team-%d"}}`, attempt)); err != nil {
				t.Errorf("concurrent write to %s: %v", id, err)
			}
			raced.Add(1)
		}}
	rn := &jobrun.Runner{Workers: 2}
	if err := tr.run(context.Background(), rn); err != nil {
		t.Fatal(err)
	}
	changed := map[string]transformResult{}
	for _, r := range tr.results {
		if r.Action != "changed" {
			t.Errorf("%s: %s %s", r.ID, r.Action, r.Reason)
		}
		changed[r.ID] = r
	}
	for _, id := range []string{"t00", "t06", "t09"} {
		r, ok := changed[id]
		if !ok || r.Retries != 2 {
			t.Errorf("%s: %+v, want changed after 2 retries", id, r)
		}
		d := s.get(t, id)
		if d.Database.Host != "db-9.internal" || d.Labels["owner"] != "team-1" || d.Version != 4 {
			t.Errorf("%s lost an update: version %d, database %s, labels %v", id, d.Version, d.Database.Host, d.Labels)
		}
	}
	if raced.Load() != 6 {
		t.Errorf("raced %d times, want 6", raced.Load())
	}
}

// TestTransformBackgroundWriter runs the CLI while another client keeps
// writing the same tenants: no update is lost, whoever wins each race.
func TestTransformBackgroundWriter(t *testing.T) {
	t.Parallel()
	s := transformSystem(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := []string{"t00", "t06", "t09"}[i%3]
			cur := s.get(t, id)
			if s.patch(t, id, cur.Version, fmt.Sprintf(`{"labels":{"n":"%d"}}`, i)) == nil {
				writes.Add(1)
			}
		}
	}()
	// The writer is writing before transform starts (on a loaded machine
	// transform could otherwise finish before the writer's first write).
	testwait.For(t, "the background writer's first write", func() bool { return writes.Load() > 0 })
	out := s.mustTcsctl(t, 0, "transform", "--yes", "--where", moveDB, "--set", "database.host=db-9.internal", "--workers", "3")
	close(stop)
	wg.Wait()
	for _, id := range []string{"t00", "t06", "t09"} {
		if d := s.get(t, id); d.Database.Host != "db-9.internal" {
			t.Errorf("%s: transform's change lost: %s\n%s", id, d.Database.Host, out)
		}
	}
}

func TestSetAndPatch(t *testing.T) {
	t.Parallel()
	var as []assignment
	for _, s := range []string{"database.host=db-9", "database.port=6432", `labels.n="5432"`, "labels.old=null", `hostnames=["a.example.com"]`, "products.jira.users=30"} {
		a, err := parseSet(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		as = append(as, a)
	}
	patch, err := buildPatch(as)
	if err != nil {
		t.Fatal(err)
	}
	want := httpclient.MergePatch{
		"database":  map[string]any{"host": "db-9", "port": float64(6432)},
		"labels":    map[string]any{"n": "5432", "old": nil},
		"hostnames": []any{"a.example.com"},
		"products":  map[string]any{"jira": map[string]any{"users": float64(30)}},
	}
	if diff := cmp.Diff(want, patch); diff != "" {
		t.Errorf("patch (-want +got):\n%s", diff)
	}
	before := map[string]any{"id": "x", "version": float64(2), "labels": map[string]any{"old": "1", "keep": "k"},
		"database": map[string]any{"host": "db-7", "port": float64(5432), "name": "x"}, "hostnames": []any{"x.example.com"}}
	after := applyPatch(before, map[string]any(patch)).(map[string]any)
	got := diffDocs(before, after)
	wantDiff := []change{
		{"database.host", "db-7", "db-9"}, {"database.port", float64(5432), float64(6432)},
		{"hostnames", []any{"x.example.com"}, []any{"a.example.com"}},
		{"labels.n", nil, "5432"}, {"labels.old", "1", nil},
		{"products.jira.users", nil, float64(30)},
	}
	if diff := cmp.Diff(wantDiff, got); diff != "" {
		t.Errorf("diff (-want +got):\n%s", diff)
	}
	if before["labels"].(map[string]any)["old"] != "1" {
		t.Error("applyPatch changed its input")
	}
	if diff := cmp.Diff([]string{"a.example.com", "x.example.com"}, affectedHostnames(before, after)); diff != "" {
		t.Errorf("hostnames affected (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"id=x", "version=3", "updated_by=me", "nonsense", "database.hots=x", "hostnames.0=a.example.com", "=x"} {
		if _, err := parseSet(bad); err == nil {
			t.Errorf("--set %s accepted", bad)
		}
	}
	a1, _ := parseSet("labels={}")
	a2, _ := parseSet("labels.x=1")
	if _, err := buildPatch([]assignment{a1, a2}); err == nil {
		t.Error("overlapping --set accepted")
	}
	if _, err := buildPatch([]assignment{a2, a1}); err == nil {
		t.Error("overlapping --set accepted (other order)")
	}
}

// TestTransformSegments: with several workers transform lists one segment
// per lister (segments = the largest power of two up to --workers), and
// still changes every matching tenant once; a catalog that ignores the
// segment parameters (an older one) is listed with one lister, and no
// tenant is changed twice.
func TestTransformSegments(t *testing.T) {
	t.Parallel()
	s := transformSystem(t)
	target, err := url.Parse(s.catalog)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var (
		mu     sync.Mutex
		listed = map[string]bool{} // segment/segments of each segmented list
	)
	newer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/tenants" {
			q := r.URL.Query()
			mu.Lock()
			listed[q.Get("segment")+"/"+q.Get("segments")] = true
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(newer.Close)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"transform", "--yes", "--where", moveDB, "--set", "database.host=db-9.internal", "--workers", "5", "--checkpoint", "off"}, s.env("TCS_CATALOG_URL", newer.URL), strings.NewReader(""), &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "changed 3") {
		t.Fatalf("transform: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	mu.Lock()
	if want := map[string]bool{"0/4": true, "1/4": true, "2/4": true, "3/4": true}; !cmp.Equal(want, listed) {
		t.Errorf("lists with segment/segments %v, want %v", listed, want)
	}
	mu.Unlock()

	// An older catalog ignores the parameters (strip them).
	var segmented, plain atomic.Int32
	older := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/tenants" {
			q := r.URL.Query()
			if q.Has("segments") {
				segmented.Add(1)
			} else {
				plain.Add(1)
			}
			q.Del("segment")
			q.Del("segments")
			r.URL.RawQuery = q.Encode()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(older.Close)
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), []string{"transform", "--yes", "--where", `database.host == "db-8.internal"`, "--set", "database.port=6432", "--workers", "4", "--checkpoint", "off"}, s.env("TCS_CATALOG_URL", older.URL), strings.NewReader(""), &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "changed 4") || !strings.Contains(stderr.String(), "one lister") {
		t.Fatalf("transform against an older catalog: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	for _, d := range storeState(t, s) {
		want := int64(1)
		if d.Database.Host == "db-8.internal" || d.ID == "t00" || d.ID == "t06" || d.ID == "t09" || d.ID == "t03" {
			want = 2 // changed once (t03 was suspended by transformSystem)
		}
		if d.Version != want {
			t.Errorf("%s at version %d, want %d", d.ID, d.Version, want)
		}
	}
	// Up to 4 first pages by segment (the first that shows the catalog
	// ignores segments cancels the others), then the one lister's page.
	if segmented.Load() < 1 || segmented.Load() > 4 || plain.Load() != 1 {
		t.Errorf("%d lists by segment and %d without against the older catalog, want 1–4 and 1", segmented.Load(), plain.Load())
	}
}

// TestTransformSegmentsResume: a transform by segment stopped part way
// saves each segment's position, and the run resumed from the checkpoint
// (with the segment count it saved, whatever --workers says now) does the
// rest: every matching tenant is changed exactly once over the two runs.
func TestTransformSegmentsResume(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	const n = 60
	for i := range n {
		s.create(t, sampleTenant(fmt.Sprintf("r%02d", i), i))
	}
	cat, err := httpclient.New(s.catalog, httpclient.WithToken(testToken))
	if err != nil {
		t.Fatal(err)
	}
	cond, err := tenantexpr.Parse(`region == "us-east-1"`)
	if err != nil {
		t.Fatal(err)
	}
	patch := httpclient.MergePatch{"region": "eu-west-1"}
	path := filepath.Join(t.TempDir(), "transform.json")
	const key = "test-key"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writes atomic.Int32
	first := &transformer{cat: cat, where: cond, patch: patch, maxRetries: 3, segments: 4, pageSize: 3,
		beforeWrite: func(string, int) {
			if writes.Add(1) == 12 {
				cancel()
			}
		}}
	ckpt, err := jobrun.Open(path, "transform", key, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.run(ctx, &jobrun.Runner{Workers: 2, Checkpoint: ckpt}); !errors.Is(err, jobrun.ErrInterrupted) {
		t.Fatalf("first run = %v, want interrupted", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var saved jobrun.State
	if err := json.Unmarshal(raw, &saved); err != nil || !strings.HasPrefix(saved.Token, segmentsToken) {
		t.Fatalf("checkpoint %s: %v; want a by-segment token", raw, err)
	}
	st, ok, err := parseSegmentState(saved.Token)
	if err != nil || !ok || len(st.Tokens) != 4 {
		t.Fatalf("checkpoint token %q: %+v, %v", saved.Token, st, err)
	}

	second := &transformer{cat: cat, where: cond, patch: patch, maxRetries: 3, segments: 8, pageSize: 3}
	if ckpt, err = jobrun.Open(path, "transform", key, false); err != nil || !ckpt.Resuming() {
		t.Fatalf("reopen checkpoint: %v (resuming %v)", err, ckpt.Resuming())
	}
	if err := second.run(context.Background(), &jobrun.Runner{Workers: 2, Checkpoint: ckpt}); err != nil {
		t.Fatal(err)
	}
	if second.scanned >= n {
		t.Errorf("the resumed run scanned %d tenants, all %d: it started again", second.scanned, n)
	}
	changed := map[string]int{}
	for _, tr := range []*transformer{first, second} {
		for _, r := range tr.results {
			if r.Action != "changed" {
				t.Errorf("%s: %s %s", r.ID, r.Action, r.Reason)
			}
			changed[r.ID]++
		}
	}
	for _, d := range storeState(t, s) {
		if d.Region != "eu-west-1" || d.Version != 2 || changed[d.ID] != 1 {
			t.Errorf("%s: region %s at version %d, changed %d times; want eu-west-1 at 2, once", d.ID, d.Region, d.Version, changed[d.ID])
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint left after the job finished: %v", err)
	}
}

func TestTransformSegmentsCount(t *testing.T) {
	t.Parallel()
	for workers, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 2, 5: 4, 16: 16, 17: 16, 64: 64, 200: 64} {
		if got := transformSegments(workers); got != want {
			t.Errorf("transformSegments(%d) = %d, want %d", workers, got, want)
		}
	}
	for _, bad := range []string{"segments:", "segments:{}", `segments:{"tokens":["a"],"done":[]}`} {
		if _, _, err := parseSegmentState(bad); err == nil || !strings.Contains(err.Error(), "--restart") {
			t.Errorf("parseSegmentState(%q) = %v; want an error saying to pass --restart", bad, err)
		}
	}
}
