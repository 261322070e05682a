package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/jobrun"
	"github.com/tcs-dev/tcs/tcs/drift"
)

var resyncedN = regexp.MustCompile(`resynced (\d+) tenant`)

func resyncedCount(t *testing.T, out string) int {
	t.Helper()
	m := resyncedN.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no count in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// corrupt changes tenant ids' labels in region's replica, at their version.
func corrupt(t *testing.T, s *system, region string, ids ...string) {
	t.Helper()
	s.replicas[region].Edit(t, func(d, _ *bbolt.Bucket) error {
		for _, id := range ids {
			var doc tenant.Tenant
			if err := json.Unmarshal(d.Get([]byte(id)), &doc); err != nil {
				return err
			}
			doc.Labels = map[string]string{"corrupt": "yes"}
			putJSONRaw(t, d, id, doc)
		}
		return nil
	})
}

// TestResyncResume: an interrupted resync --all exits 130 and leaves a
// checkpoint; running it again continues from there, and the resync repairs
// what it re-emits.
func TestResyncResume(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	const n = 200
	for i := range n {
		s.create(t, sampleTenant(fmt.Sprintf("t%03d", i), i))
	}
	s.waitApplied(t, fmt.Sprintf("t%03d", n-1), 1)
	corrupt(t, s, "eu-west-1", "t001", "t100", "t199")
	s.mustTcsctl(t, 1, "verify", "--settle", "10ms")

	ckpt := filepath.Join(t.TempDir(), "resync.ckpt")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	code, out, errOut := s.tcsctl(t, ctx, "resync", "--yes", "--all", "--batch", "10", "--rate", "100", "--checkpoint", ckpt)
	if code != 130 || !strings.Contains(errOut, "interrupted") {
		t.Fatalf("interrupted resync: exit %d\n%s\n%s", code, out, errOut)
	}
	first := resyncedCount(t, out)
	raw, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatalf("no checkpoint after the interruption: %v", err)
	}
	var st jobrun.State
	if err := json.Unmarshal(raw, &st); err != nil || st.Command != "resync" || st.Done < 10 || st.Done >= n || st.Token == "" {
		t.Fatalf("checkpoint %s: %v", raw, err)
	}
	if int64(first) < st.Done {
		t.Errorf("resynced %d but the checkpoint says %d done", first, st.Done)
	}

	code, out, errOut = s.tcsctl(t, context.Background(), "resync", "--yes", "--all", "--batch", "10", "--checkpoint", ckpt)
	if code != 0 || !strings.Contains(errOut, "resuming from checkpoint") {
		t.Fatalf("resumed resync: exit %d\n%s\n%s", code, out, errOut)
	}
	second := resyncedCount(t, out)
	if int64(second) != n-st.Done {
		t.Errorf("resumed resync did %d, want the %d not done", second, n-st.Done)
	}
	if _, err := os.Stat(ckpt); !os.IsNotExist(err) {
		t.Errorf("checkpoint left after a complete run: %v", err)
	}
	s.eventuallyClean(t)
}

// eventuallyClean runs verify until it is clean: a resync is done when
// the regions have applied it, a little after tcsctl returns.
func (s *system) eventuallyClean(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, errOut := s.tcsctl(t, context.Background(), "verify", "--settle", "100ms")
		if code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("verify never clean: exit %d\n%s\n%s", code, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestResyncSelection: --tenant, --file and --region; unknown ids are
// named and make the exit code 1; bad input is an error before anything is
// sent.
func TestResyncSelection(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	for _, id := range []string{"aaa", "bbb", "ccc"} {
		s.create(t, sampleTenant(id, 1))
		s.waitApplied(t, id, 1)
	}
	corrupt(t, s, "us-east-1", "aaa")
	corrupt(t, s, "eu-west-1", "aaa", "bbb")

	// A dry run names what it would resync and resyncs nothing.
	code, out, errOut := s.tcsctl(t, context.Background(), "resync", "--dry-run", "--tenant", "aaa,ghost", "--region", "us-east-1")
	if code != 1 || !strings.Contains(out, "would resync aaa") || !strings.Contains(out, "not found    ghost") ||
		!strings.Contains(out, "would resync 1 tenant(s) to us-east-1") || !strings.Contains(errOut, "ghost") {
		t.Errorf("resync --dry-run --tenant: exit %d\n%s\n%s", code, out, errOut)
	}
	if out := s.mustTcsctl(t, 0, "resync", "--dry-run", "--all"); !strings.Contains(out, "would resync 3 tenant(s) to every region") {
		t.Errorf("resync --dry-run --all: %s", out)
	}
	time.Sleep(300 * time.Millisecond) // what a dry run had sent would have been applied by now
	_, vout, _ := s.tcsctl(t, context.Background(), "verify", "-o", "json", "--settle", "50ms")
	var before drift.Report
	json.Unmarshal([]byte(vout), &before)
	if got := strings.Join(findingKeys(before.Findings), "|"); !strings.Contains(got, "us-east-1 content_mismatch aaa") {
		t.Errorf("after a dry run the drift must remain; verify: %v", findingKeys(before.Findings))
	}

	out = s.mustTcsctl(t, 0, "resync", "--tenant", "aaa", "--region", "us-east-1")
	if !strings.Contains(out, "resynced 1 tenant(s) to us-east-1") {
		t.Errorf("resync --tenant: %s", out)
	}
	// Only us-east-1 re-applies it: eu-west-1 keeps its drift.
	want := []string{"eu-west-1 content_mismatch aaa -", "eu-west-1 content_mismatch bbb -"}
	for deadline := time.Now().Add(20 * time.Second); ; {
		_, out, _ := s.tcsctl(t, context.Background(), "verify", "-o", "json", "--settle", "50ms")
		var rep drift.Report
		json.Unmarshal([]byte(out), &rep)
		if strings.Join(findingKeys(rep.Findings), "|") == strings.Join(want, "|") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after resync --region us-east-1: %v, want %v", findingKeys(rep.Findings), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ids := filepath.Join(t.TempDir(), "ids")
	os.WriteFile(ids, []byte("# drifted\naaa\nbbb\n\nghost\n"), 0o600)
	code, out, errOut = s.tcsctl(t, context.Background(), "resync", "--yes", "--file", ids, "--checkpoint", "off")
	if code != 1 || !strings.Contains(out, "resynced 2 tenant(s) to every region") || !strings.Contains(errOut, "not found in the catalog: ghost") {
		t.Errorf("resync --file: exit %d\n%s\n%s", code, out, errOut)
	}
	s.eventuallyClean(t)

	os.WriteFile(ids, []byte("aaa\nNot An Id\n"), 0o600)
	code, _, errOut = s.tcsctl(t, context.Background(), "resync", "--yes", "--file", ids)
	if code != 2 || !strings.Contains(errOut, ids+":2") {
		t.Errorf("bad --file: exit %d\n%s", code, errOut)
	}
	s.mustTcsctl(t, 2, "resync")
	s.mustTcsctl(t, 2, "resync", "--all", "--tenant", "aaa")
	s.mustTcsctl(t, 2, "resync", "--yes", "--all", "--region", "mars-1")
}

// TestResyncAllOlderCatalog: against a catalog that does not know
// POST /v1/admin/resync's "all", resync --all falls back to resyncing the
// pages of an export by id, and still resyncs everything.
func TestResyncAllOlderCatalog(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	const n = 25
	for i := range n {
		s.create(t, sampleTenant(fmt.Sprintf("t%03d", i), i))
	}
	target, err := url.Parse(s.catalog)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refused atomic.Int32
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/admin/resync" {
			body, _ := io.ReadAll(r.Body)
			if bytes.Contains(body, []byte(`"all"`)) {
				refused.Add(1)
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"type":"about:blank","title":"Bad Request","status":400,"detail":"unknown field \"all\"","errors":[{"field":"all","reason":"unknown field"}]}`)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(old.Close)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"resync", "--yes", "--all", "--batch", "10", "--checkpoint", "off"}, s.env("TCS_CATALOG_URL", old.URL), strings.NewReader(""), &stdout, &stderr)
	if code != 0 || resyncedCount(t, stdout.String()) != n {
		t.Fatalf("resync --all against an older catalog: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if refused.Load() != 1 {
		t.Errorf("%d requests with \"all\", want 1 (then the fallback)", refused.Load())
	}
}
