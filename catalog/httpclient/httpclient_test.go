package httpclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
)

const (
	adminToken  = "test-admin-token-0123456789"
	readerToken = "test-reader-token-0123456789"
)

// catalogServer serves the catalog's REST API (catalog/httpapi over a fresh
// bbolt store) on 127.0.0.1 under prefix, and returns its base URL.
func catalogServer(t *testing.T, prefix string) string {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	creds, err := auth.Parse(strings.NewReader(auth.Line(auth.Admin, adminToken, "alice")+"\n"+auth.Line(auth.Reader, readerToken, "bob")+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = httpapi.New(httpapi.Config{Store: store, Auth: auth.Static(creds), RateLimits: &httpapi.RateLimits{}})
	if prefix != "" {
		h = http.StripPrefix(prefix, h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + prefix
}

func client(t *testing.T, base string, opts ...httpclient.Option) *httpclient.Client {
	t.Helper()
	c, err := httpclient.New(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestTenantLifecycle: create, read (typed, raw, exact JSON, version),
// look up by hostname, merge-patch, replace and delete, with the catalog's
// refusals as typed errors; behind a path prefix, to show it is kept.
func TestTenantLifecycle(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := client(t, catalogServer(t, "/catalog")+"/", httpclient.WithToken(adminToken))

	created, err := c.Create(ctx, json.RawMessage(`{"id":"acme","hostnames":["acme.example.com","Bücher.example.com"],"labels":{"tier":"gold"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if created.Version != 1 || created.ID != "acme" || !slices.Contains(created.Hostnames, "xn--bcher-kva.example.com") {
		t.Fatalf("created %+v", created)
	}
	if _, err := c.Create(ctx, json.RawMessage(`{"id":"acme","hostnames":["other.example.com"]}`)); !httpclient.IsAlreadyExists(err) || httpclient.Status(err) != http.StatusConflict {
		t.Errorf("second create: %v, want already exists (409)", err)
	}

	got, err := c.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("Get (-created +got):\n%s", diff)
	}
	raw, err := c.GetRaw(ctx, "acme")
	if err != nil || raw["id"] != "acme" || raw["labels"].(map[string]any)["tier"] != "gold" {
		t.Errorf("GetRaw: %v %v", raw, err)
	}
	exact, err := c.GetJSON(ctx, "acme")
	var decoded tenant.Tenant
	if err != nil || json.Unmarshal(exact, &decoded) != nil || decoded.Version != 1 {
		t.Errorf("GetJSON: %s %v", exact, err)
	}
	if v, err := c.Version(ctx, "acme"); v != 1 || err != nil {
		t.Errorf("Version = %d, %v; want 1", v, err)
	}
	owner, err := c.LookupHostname(ctx, "bücher.example.com")
	if err != nil || owner.ID != "acme" {
		t.Errorf("LookupHostname(bücher.example.com) = %v, %v", owner, err)
	}

	patched, err := c.Patch(ctx, "acme", 1, httpclient.MergePatch{"labels": map[string]any{"tier": nil, "n": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if patched.Version != 2 || !cmp.Equal(patched.Labels, map[string]string{"n": "1"}) {
		t.Errorf("patched: version %d, labels %v", patched.Version, patched.Labels)
	}
	_, err = c.Patch(ctx, "acme", 1, httpclient.MergePatch{"labels": map[string]any{"n": "2"}})
	var e *httpclient.Error
	if !httpclient.IsVersionMismatch(err) || !errors.As(err, &e) || e.Code() != string(tenant.VersionMismatch) {
		t.Errorf("stale patch: %v, want a version mismatch", err)
	}
	if _, err := c.Patch(ctx, "acme", 0, httpclient.MergePatch{"labels": nil}); httpclient.Status(err)/100 != 4 {
		t.Errorf("patch without If-Match: %v, want a refusal", err)
	}
	replaced, err := c.Replace(ctx, "acme", 2, json.RawMessage(`{"id":"acme","hostnames":["acme.example.com"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if replaced.Version != 3 || len(replaced.Hostnames) != 1 || len(replaced.Labels) != 0 {
		t.Errorf("replaced %+v", replaced)
	}
	if err := c.Delete(ctx, "acme", 2); !httpclient.IsVersionMismatch(err) {
		t.Errorf("stale delete: %v", err)
	}
	if err := c.Delete(ctx, "acme", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "acme"); !httpclient.IsNotFound(err) {
		t.Errorf("Get after delete: %v, want not found", err)
	}
	if _, err := c.Version(ctx, "acme"); !httpclient.IsNotFound(err) {
		t.Errorf("Version after delete: %v, want not found", err)
	}
	if _, err := c.LookupHostname(ctx, "acme.example.com"); !httpclient.IsNotFound(err) {
		t.Errorf("LookupHostname after delete: %v, want not found", err)
	}
}

// TestPagesAndAdmin: list, export (tombstones and claims, raw JSON), export
// ids, resync, resync-all and history page through what the catalog holds.
func TestPagesAndAdmin(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	base := catalogServer(t, "")
	c := client(t, base, httpclient.WithToken(adminToken))
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("tt%d", i)
		ids = append(ids, id)
		if _, err := c.Create(ctx, json.RawMessage(fmt.Sprintf(`{"id":%q,"hostnames":["%s.example.com"]}`, id, id))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(ctx, "tt4", 0); err != nil { // unconditional
		t.Fatal(err)
	}

	var listed []string
	for token := ""; ; {
		p, err := c.List(ctx, token, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Tenants {
			listed = append(listed, d["id"].(string))
		}
		if token = p.NextPageToken; token == "" {
			break
		}
	}
	if diff := cmp.Diff(ids[:4], listed); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	var exported, exportedIDs []string
	for token := ""; ; {
		p, err := c.Export(ctx, token, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			exported = append(exported, fmt.Sprintf("%s v%d deleted=%v claims=%d raw=%v", it.Tenant.ID, it.Tenant.Version, it.Tenant.Deleted(), len(it.Claims), json.Valid(it.Raw)))
		}
		if token = p.NextPageToken; token == "" {
			break
		}
	}
	for token := ""; ; {
		p, err := c.ExportIDs(ctx, token, 3)
		if err != nil {
			t.Fatal(err)
		}
		exportedIDs = append(exportedIDs, p.IDs...)
		if token = p.NextPageToken; token == "" {
			break
		}
	}
	want := []string{"tt0 v1 deleted=false claims=1 raw=true", "tt1 v1 deleted=false claims=1 raw=true", "tt2 v1 deleted=false claims=1 raw=true",
		"tt3 v1 deleted=false claims=1 raw=true", "tt4 v2 deleted=true claims=0 raw=true"}
	if diff := cmp.Diff(want, exported); diff != "" {
		t.Errorf("Export (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids, exportedIDs); diff != "" {
		t.Errorf("ExportIDs (-want +got):\n%s", diff)
	}

	res, err := c.Resync(ctx, []catalog.ResyncRequest{{ID: "tt1"}, {ID: "nope"}, {ID: "tt4"}}, []string{"eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(catalog.ResyncResult{Resynced: []catalog.ResyncedTenant{{ID: "tt1", Version: 1}, {ID: "tt4", Version: 2}}, NotFound: []string{"nope"}}, res); diff != "" {
		t.Errorf("Resync (-want +got):\n%s", diff)
	}
	total := 0
	for token, pages := "", 0; ; pages++ {
		n, next, err := c.ResyncAll(ctx, token, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if token = next; token == "" || pages > 10 {
			break
		}
	}
	if total != 5 {
		t.Errorf("ResyncAll resynced %d tenants, want 5", total)
	}

	h, err := c.History(ctx, "tt4", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range h.Records {
		actions = append(actions, fmt.Sprintf("%s v%d", r.Action, r.Version))
	}
	if diff := cmp.Diff([]string{"delete v2", "create v1"}, actions); diff != "" {
		t.Errorf("History(tt4), newest first (-want +got):\n%s", diff)
	}
	admin, err := c.History(ctx, catalog.AdminAuditID, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(admin.Records) != 1 || admin.Records[0].Action != catalog.ActionResyncAll || admin.NextPageToken == "" {
		t.Errorf("History(AdminAuditID) first page: %+v", admin)
	}
	if _, err := c.History(ctx, "nope", "", 10); err == nil {
		t.Error("History of an unknown tenant succeeded")
	}
}

// TestErrors: what the catalog refuses arrives as *Error with its status,
// problem type, detail and fields; a missing token gets the caller's hint.
func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	base := catalogServer(t, "")

	_, err := client(t, base, httpclient.WithToken(adminToken)).Create(ctx, json.RawMessage(`{"id":"Bad Id","hostnames":[]}`))
	var e *httpclient.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || len(e.Fields) == 0 || e.Fields[0].Field != "id" || !strings.Contains(err.Error(), "id: ") {
		t.Errorf("invalid create: %#v (%v), want 422 naming the id field", e, err)
	}

	_, err = client(t, base, httpclient.WithNoTokenHint("(give --token)")).Get(ctx, "acme")
	if httpclient.Status(err) != http.StatusUnauthorized || !strings.HasSuffix(err.Error(), " (give --token)") {
		t.Errorf("no token: %v, want 401 ending with the hint", err)
	}
	_, err = client(t, base, httpclient.WithToken("wrong-token-0123456789"), httpclient.WithNoTokenHint("(give --token)")).Get(ctx, "acme")
	if httpclient.Status(err) != http.StatusUnauthorized || strings.Contains(err.Error(), "give --token") {
		t.Errorf("wrong token: %v, want 401 without the no-token hint", err)
	}
	_, err = client(t, base, httpclient.WithToken(readerToken)).Create(ctx, json.RawMessage(`{"id":"acme","hostnames":["acme.example.com"]}`))
	if httpclient.Status(err) != http.StatusForbidden {
		t.Errorf("create as reader: %v, want 403", err)
	}

	// An answer that is not problem+json (a proxy's) keeps the start of
	// its body as the detail.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream connect error", http.StatusBadGateway)
	}))
	t.Cleanup(proxy.Close)
	_, err = client(t, proxy.URL).Get(ctx, "acme")
	if !errors.As(err, &e) || e.Status != http.StatusBadGateway || e.Detail != "upstream connect error" || !httpclient.Retryable(err) {
		t.Errorf("proxy 502: %#v, want a retryable 502 with the body as detail", err)
	}

	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://host", "http://", "http://[::1"} {
		if _, err := httpclient.New(bad); err == nil || !strings.Contains(err.Error(), "want an http:// or https:// URL") {
			t.Errorf("New(%q) = %v, want a refusal", bad, err)
		}
	}
}

// TestRetryable: unavailability and transport failures may be retried;
// refusals and an ended context may not.
func TestRetryable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&httpclient.Error{Status: 503}, true},
		{&httpclient.Error{Status: 429}, true},
		{&httpclient.Error{Status: 502}, true},
		{&httpclient.Error{Status: 504}, true},
		{fmt.Errorf("wrapped: %w", &httpclient.Error{Status: 503}), true},
		{&httpclient.Error{Status: 400}, false},
		{&httpclient.Error{Status: 404}, false},
		{&httpclient.Error{Status: 412}, false},
		{&httpclient.Error{Status: 500}, false},
		{fmt.Errorf("GET x: %w", syscall.ECONNREFUSED), true},
		{fmt.Errorf("GET x: %w", context.Canceled), false},
		{fmt.Errorf("GET x: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("list: %w", httpclient.ErrSegmentsUnsupported), false},
		{tenant.Errorf(tenant.Invalid, "bad segment"), false},
	} {
		if got := httpclient.Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestResyncAllUnsupported: an older catalog's refusal of "all" is told
// apart from other refusals.
func TestResyncAllUnsupported(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&httpclient.Error{Status: 400, Fields: []tenant.FieldError{{Field: "all", Reason: "unknown field"}}}, true},
		{&httpclient.Error{Status: 400, Detail: `json: unknown field "all"`}, true},
		{&httpclient.Error{Status: 400, Fields: []tenant.FieldError{{Field: "regions[0]"}}}, false},
		{&httpclient.Error{Status: 503, Detail: `"all"`}, false},
		{errors.New(`"all"`), false},
	} {
		if got := httpclient.IsResyncAllUnsupported(tc.err); got != tc.want {
			t.Errorf("IsResyncAllUnsupported(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestErrorMessage: a detail that repeats one field's reason is shown once,
// with the field's name; other fields follow.
func TestErrorMessage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		e    httpclient.Error
		want string
	}{
		{"status only", httpclient.Error{Status: 503}, "503 Service Unavailable"},
		{"detail", httpclient.Error{Status: 409, Detail: "version 3 is not 2"}, "409 Conflict: version 3 is not 2"},
		{"detail is the field's reason", httpclient.Error{Status: 422, Detail: "must be at most 63 characters",
			Fields: []tenant.FieldError{{Field: "hostnames[1]", Reason: "must be at most 63 characters"}}},
			"422 Unprocessable Entity: hostnames[1]: must be at most 63 characters"},
		{"detail and other fields", httpclient.Error{Status: 422, Detail: "invalid tenant",
			Fields: []tenant.FieldError{{Field: "id", Reason: "is required"}, {Field: "region", Reason: "is required"}}},
			"422 Unprocessable Entity: invalid tenant; id: is required; region: is required"},
		{"second field repeats the detail", httpclient.Error{Status: 422, Detail: "is required",
			Fields: []tenant.FieldError{{Field: "id", Reason: "is required"}, {Field: "region", Reason: "is required"}}},
			"422 Unprocessable Entity: id: is required; region: is required"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestListSegment: the segments of a catalog, each paged, hold every
// tenant once and only their own; a bad segment is refused before any
// request; a catalog that ignores or refuses the segment parameters (an
// older one) gives ErrSegmentsUnsupported.
func TestListSegment(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := client(t, catalogServer(t, ""), httpclient.WithToken(adminToken))
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("sg%02d", i)
		ids = append(ids, id)
		if _, err := c.Create(ctx, json.RawMessage(fmt.Sprintf(`{"id":%q,"hostnames":["%s.example.com"]}`, id, id))); err != nil {
			t.Fatal(err)
		}
	}
	const segments = 3
	var listed []string
	for seg := range segments {
		for token, pages := "", 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("segment %d: pagination does not end", seg)
			}
			p, err := c.ListSegment(ctx, token, 2, seg, segments)
			if err != nil {
				t.Fatalf("ListSegment(%d of %d): %v", seg, segments, err)
			}
			for _, tn := range p.Tenants {
				id := tn["id"].(string)
				if catalog.SegmentOf(id, segments) != seg {
					t.Fatalf("segment %d listed %s", seg, id)
				}
				listed = append(listed, id)
			}
			if token = p.NextPageToken; token == "" {
				break
			}
		}
	}
	slices.Sort(listed)
	if diff := cmp.Diff(ids, listed); diff != "" {
		t.Errorf("ids listed by segment (-want +got):\n%s", diff)
	}

	if _, err := c.ListSegment(ctx, "", 2, 3, 3); tenant.ErrorCode(err) != tenant.Invalid || tenant.ErrorFields(err)[0].Field != "segment" {
		t.Errorf("ListSegment(3 of 3) = %v; want Invalid naming segment", err)
	}

	// An older catalog ignores the parameters and lists everything.
	older := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"tenants":[{"id":"sg00"},{"id":"sg01"},{"id":"sg02"},{"id":"sg03"}]}`)
	}))
	t.Cleanup(older.Close)
	if _, err := client(t, older.URL).ListSegment(ctx, "", 10, 0, 2); !errors.Is(err, httpclient.ErrSegmentsUnsupported) {
		t.Errorf("ListSegment from a catalog ignoring segments = %v; want ErrSegmentsUnsupported", err)
	}
	// One that refuses them.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"type":"urn:tcs:problem:malformed","status":400,"detail":"unknown query parameter","errors":[{"field":"segments","reason":"unknown query parameter"}]}`)
	}))
	t.Cleanup(refusing.Close)
	if _, err := client(t, refusing.URL).ListSegment(ctx, "", 10, 0, 2); !errors.Is(err, httpclient.ErrSegmentsUnsupported) {
		t.Errorf("ListSegment from a catalog refusing segments = %v; want ErrSegmentsUnsupported", err)
	}
}
