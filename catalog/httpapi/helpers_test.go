package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/testclock"
)

const (
	adminToken  = "test-admin-token"
	readerToken = "test-reader-token"
)

// harness is an API over a fresh bbolt store. Every response it sees is
// checked against openapi.json.
type harness struct {
	t     testing.TB
	store catalog.Store
	api   *Server
	// clock is the API's clock (the /readyz cache).
	clock *testclock.Clock
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessConfig(t, nil)
}

// newHarnessConfig is newHarness with configure applied to the API's
// Config (whose Store is the bbolt store, which configure may wrap).
func newHarnessConfig(t testing.TB, configure func(*Config)) *harness {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	creds, err := auth.Parse(strings.NewReader(auth.Line(auth.Admin, adminToken, "alice")+"\n"+auth.Line(auth.Reader, readerToken, "bob")+"\n"), "test credentials")
	if err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	// No rate limits unless a test sets them: its requests all come from
	// one address, far faster than any client's.
	cfg := Config{Store: store, Auth: auth.Static(creds), Now: clock.Now, RateLimits: &RateLimits{}}
	if configure != nil {
		configure(&cfg)
	}
	return &harness{t: t, store: store, clock: clock, api: New(cfg)}
}

type call struct {
	method, path string
	token        string // "" sends no Authorization header
	body         string
	header       map[string]string
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) problem(t testing.TB) Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, r.body)
	}
	var p Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Status != r.status {
		t.Errorf("problem status %d != HTTP status %d", p.Status, r.status)
	}
	if p.Type == "" || p.Title == "" || p.Detail == "" {
		t.Errorf("problem lacks type, title or detail: %+v", p)
	}
	return p
}

func (r result) tenant(t testing.TB) *tenant.Tenant {
	t.Helper()
	var tn tenant.Tenant
	if err := json.Unmarshal(r.body, &tn); err != nil {
		t.Fatalf("tenant body %s: %v", r.body, err)
	}
	return &tn
}

func (h *harness) do(c call) result {
	h.t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req := httptest.NewRequest(c.method, c.path, body)
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.api.ServeHTTP(rec, req)
	res := result{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	checkAgainstSpec(h.t, req, res)
	return res
}

func (h *harness) mustDo(c call, want int) result {
	h.t.Helper()
	res := h.do(c)
	if res.status != want {
		h.t.Fatalf("%s %s: status %d, want %d; body %s", c.method, c.path, res.status, want, res.body)
	}
	return res
}

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromData(OpenAPI())
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(context.Background()); specErr != nil {
			return
		}
		specRouter, specErr = gorillamux.NewRouter(specDoc)
	})
	if specErr != nil {
		t.Fatalf("openapi.json: %v", specErr)
	}
	return specDoc, specRouter
}

// checkAgainstSpec validates a response against the operation openapi.json
// documents for the request: status code, content type and body schema.
// Requests to routes the spec does not know must have been answered 404/405
// (or 429, from an address over its rate limit).
func checkAgainstSpec(t testing.TB, req *http.Request, res result) {
	t.Helper()
	_, router := loadSpec(t)
	u := *req.URL
	u.Scheme, u.Host = "http", "127.0.0.1:8080"
	sreq := req.Clone(context.Background())
	sreq.URL = &u
	route, params, err := router.FindRoute(sreq)
	if err != nil {
		if res.status != http.StatusNotFound && res.status != http.StatusMethodNotAllowed && res.status != http.StatusTooManyRequests {
			t.Errorf("%s %s is not in openapi.json but answered %d", req.Method, req.URL.Path, res.status)
		}
		return
	}
	if res.status == 499 {
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: sreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: res.status,
		Header: res.header,
		Body:   io.NopCloser(bytes.NewReader(res.body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
		},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s → %d does not match openapi.json: %v\nbody: %s", req.Method, req.URL.Path, res.status, err, res.body)
	}
}

// snapshot is everything a rejected request must leave unchanged.
type snapshot struct {
	Tenants []*tenant.Tenant
	Outbox  []catalog.OutboxEntry
	History map[string][]catalog.AuditRecord
}

func (h *harness) snapshot() snapshot {
	h.t.Helper()
	ctx := context.Background()
	var s snapshot
	s.History = map[string][]catalog.AuditRecord{}
	after := ""
	for {
		p, err := h.store.List(ctx, catalog.ListOptions{After: after, Limit: catalog.MaxPageSize})
		if err != nil {
			h.t.Fatal(err)
		}
		s.Tenants = append(s.Tenants, p.Tenants...)
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	for _, tn := range s.Tenants {
		recs, err := h.store.History(ctx, tn.ID, catalog.HistoryOptions{Limit: catalog.MaxPageSize})
		if err != nil {
			h.t.Fatal(err)
		}
		s.History[tn.ID] = recs
	}
	for shard := range h.store.OutboxShards() {
		out, err := h.store.ReadOutbox(ctx, shard, 0, 1<<20)
		if err != nil {
			h.t.Fatal(err)
		}
		s.Outbox = append(s.Outbox, out...)
	}
	return s
}

func (h *harness) assertUnchanged(before snapshot) {
	h.t.Helper()
	if diff := cmp.Diff(before, h.snapshot()); diff != "" {
		h.t.Errorf("store changed (-before +after):\n%s", diff)
	}
}

// tenantJSON is a valid tenant document with the given id and hostnames.
func tenantJSON(id string, hostnames ...string) string {
	hs, _ := json.Marshal(hostnames)
	return `{"id":"` + id + `","hostnames":` + string(hs) + `,` +
		`"products":{"jira":{"state":"ACTIVE","users":25,"edition":"premium"}},` +
		`"database":{"engine":"postgres","host":"db-7.internal","port":5432,"name":"` + strings.ReplaceAll(id, "-", "_") + `","region":"us-east-1","secret_ref":"arn:aws:secretsmanager:us-east-1:123456789012:secret:` + id + `"},` +
		`"region":"us-east-1","labels":{"tier":"gold"}}`
}
