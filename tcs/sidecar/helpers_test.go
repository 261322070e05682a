package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/sidecar"
)

// fakeClient is a sidecar.Lookuper answering from a map: a hostname's
// tenant, or its error, with meta.
type fakeClient struct {
	mu       sync.Mutex
	tenants  map[string]*tenant.Tenant
	errs     map[string]error
	errMeta  client.Meta // the Meta of an error answer
	meta     client.Meta
	watching atomic.Bool
	polls    atomic.Int64 // calls of Watching
	calls    []string     // "LookupAtLeast h 3", "LookupTenantAtLeast h id 3"
	batchErr error
	// block, when set, holds LookupMeta until it is closed; LookupMeta
	// then sends its context's error to ctxErr.
	block  chan struct{}
	ctxErr chan error
}

func newFake() *fakeClient {
	return &fakeClient{tenants: map[string]*tenant.Tenant{}, errs: map[string]error{}, meta: client.Meta{Cached: true, Region: "eu-west-1", Age: 2500 * time.Millisecond}}
}

func (f *fakeClient) lookup(h string) (*tenant.Tenant, client.Meta, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.errs[h]; ok {
		return nil, f.errMeta, err
	}
	if t, ok := f.tenants[h]; ok {
		return t, f.meta, nil
	}
	return nil, client.Meta{}, client.ErrNotFound
}

func (f *fakeClient) LookupMeta(ctx context.Context, h string) (*tenant.Tenant, client.Meta, error) {
	if f.block != nil {
		f.ctxErr <- nil // started
		<-f.block
		f.ctxErr <- ctx.Err()
	}
	return f.lookup(h)
}

func (f *fakeClient) LookupAtLeast(_ context.Context, h string, v int64) (*tenant.Tenant, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("LookupAtLeast %s %d", h, v))
	f.mu.Unlock()
	t, _, err := f.lookup(h)
	return t, err
}

func (f *fakeClient) LookupTenantAtLeast(_ context.Context, h, id string, v int64) (*tenant.Tenant, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("LookupTenantAtLeast %s %s %d", h, id, v))
	f.mu.Unlock()
	t, _, err := f.lookup(h)
	return t, err
}

func (f *fakeClient) BatchLookup(_ context.Context, hs []string) ([]client.Result, error) {
	if f.batchErr != nil {
		return nil, f.batchErr
	}
	out := make([]client.Result, len(hs))
	for i, h := range hs {
		out[i].Hostname = h
		out[i].Tenant, out[i].Meta, out[i].Err = f.lookup(h)
	}
	return out, nil
}

func (f *fakeClient) Watching() bool {
	f.polls.Add(1)
	return f.watching.Load()
}

func (f *fakeClient) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func acme() *tenant.Tenant {
	return &tenant.Tenant{
		ID: "acme", Hostnames: []string{"acme.example.com", "xn--bcher-kva.example.com"}, Status: tenant.StatusActive,
		Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: 40, Edition: "premium"}},
		Database: &tenant.Database{Engine: "postgres", Host: "db-7.internal", Port: 5432, Name: "acme", SecretRef: "arn:aws:secretsmanager:us-east-1:1:secret:acme"},
		Region:   "us-east-1", Labels: map[string]string{"tier": "gold<&>"},
		Version: 7, UpdatedAt: time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC), UpdatedBy: "sre",
	}
}

// do serves one request on h and returns the recorded answer.
func do(h http.Handler, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return doRequest(h, r)
}

// doRequest serves r on h and returns the recorded answer.
func doRequest(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// problemOf decodes a problem+json answer, failing the test if it is not
// one.
func problemOf(tb testing.TB, w *httptest.ResponseRecorder) sidecar.Problem {
	tb.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, w.Body)
	}
	var p sidecar.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		tb.Fatalf("problem %s: %v", w.Body, err)
	}
	if p.Status != w.Code {
		tb.Errorf("problem status %d, HTTP status %d", p.Status, w.Code)
	}
	return p
}
