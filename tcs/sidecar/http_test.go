package sidecar_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/sidecar"
)

func TestLookupAnswersTheRESTJSON(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	s := sidecar.New(sidecar.Config{Client: f})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		w := do(s, method, "/v1/lookup/acme.example.com", "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d, body %s", method, w.Code, w.Body)
		}
		want, _ := tcsv1.MarshalTenantJSON(acme())
		if method == http.MethodGet && w.Body.String() != string(want) {
			t.Errorf("body\n%s\nwant the REST JSON\n%s", w.Body, want)
		}
		got := map[string]string{}
		for _, k := range []string{"Content-Type", "ETag", "Age", "TCS-Region", "TCS-Stale", "X-Content-Type-Options"} {
			got[k] = w.Header().Get(k)
		}
		wantHdr := map[string]string{"Content-Type": "application/json", "ETag": `"7"`, "Age": "2", "TCS-Region": "eu-west-1", "TCS-Stale": "", "X-Content-Type-Options": "nosniff"}
		if d := cmp.Diff(wantHdr, got); d != "" {
			t.Errorf("%s headers (-want +got):\n%s", method, d)
		}
	}
	// The same document again is the same bytes (encoded once).
	if a, b := do(s, "GET", "/v1/lookup/acme.example.com", "").Body.String(), do(s, "GET", "/v1/lookup/acme.example.com", "").Body.String(); a != b {
		t.Errorf("two answers differ:\n%s\n%s", a, b)
	}
}

func TestLookupStale(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	f.meta = client.Meta{Cached: true, Stale: true, Region: "us-east-1", Age: 95e9}
	w := do(sidecar.New(sidecar.Config{Client: f}), "GET", "/v1/lookup/acme.example.com", "")
	if w.Code != 200 || w.Header().Get("TCS-Stale") != "true" || w.Header().Get("Age") != "95" || w.Header().Get("TCS-Region") != "us-east-1" {
		t.Errorf("stale answer: %d %v", w.Code, w.Header())
	}
}

// TestLookupStaleNotFound: a remembered "no tenant owns it" served stale
// says so, as the gRPC API's trailers do.
func TestLookupStaleNotFound(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.errs["gone.example.com"] = client.ErrNotFound
	f.errMeta = client.Meta{Cached: true, Stale: true, Region: "us-east-1", Age: 42e9}
	w := do(sidecar.New(sidecar.Config{Client: f}), "GET", "/v1/lookup/gone.example.com", "")
	if p := problemOf(t, w); w.Code != 404 || p.Type != "urn:tcs:problem:not_found" || w.Header().Get("TCS-Stale") != "true" || w.Header().Get("Age") != "42" {
		t.Errorf("stale not found: %d %v %+v", w.Code, w.Header(), p)
	}
}

func TestLookupProblems(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.errs["bad..host"] = fmt.Errorf("%w %q: %s", client.ErrInvalidHostname, "bad..host", "empty label")
	f.errs["down.example.com"] = fmt.Errorf("%w: lookup down.example.com: connection refused", client.ErrUnavailable)
	f.errs["closed.example.com"] = client.ErrClosed
	f.errs["boom.example.com"] = errors.New("secret internal detail")
	s := sidecar.New(sidecar.Config{Client: f})
	for _, tc := range []struct {
		name, method, path string
		status             int
		typ, detail        string
		field              string
		header             [2]string
	}{
		{"unknown hostname", "GET", "/v1/lookup/nobody.example.com", 404, "not_found", `no live tenant owns hostname "nobody.example.com"`, "", [2]string{}},
		{"bad hostname", "GET", "/v1/lookup/bad..host", 400, "malformed_request", `invalid hostname "bad..host": has an empty label ("..")`, "hostname", [2]string{}},
		{"empty hostname", "GET", "/v1/lookup/", 400, "malformed_request", "no hostname", "hostname", [2]string{}},
		{"unavailable", "GET", "/v1/lookup/down.example.com", 503, "unavailable", "no TCS region answered", "", [2]string{"Retry-After", "1"}},
		{"closed", "GET", "/v1/lookup/closed.example.com", 503, "unavailable", "retry later", "", [2]string{"Retry-After", "1"}},
		{"internal", "GET", "/v1/lookup/boom.example.com", 500, "internal", "internal error", "", [2]string{}},
		{"no route", "GET", "/v1/tenants/acme", 404, "route_not_found", "no route GET /v1/tenants/acme", "", [2]string{}},
		{"root without fallback", "GET", "/metrics", 404, "route_not_found", "", "", [2]string{}},
		{"lookup method", "DELETE", "/v1/lookup/acme.example.com", 405, "method_not_allowed", "DELETE is not allowed", "", [2]string{"Allow", "GET, HEAD"}},
		{"batch method", "GET", "/v1/lookup:batch", 405, "method_not_allowed", "use POST", "", [2]string{"Allow", "POST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(s, tc.method, tc.path, "")
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.status, w.Body)
			}
			p := problemOf(t, w)
			if p.Type != "urn:tcs:problem:"+tc.typ || !strings.Contains(p.Detail, tc.detail) || p.Instance != tc.path {
				t.Errorf("problem %+v, want type %s, detail with %q, instance %s", p, tc.typ, tc.detail, tc.path)
			}
			if strings.Contains(w.Body.String(), "secret internal detail") {
				t.Errorf("the answer shows an internal error: %s", w.Body)
			}
			if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Errorf("errors %+v, want one naming %s", p.Errors, tc.field)
			}
			if tc.header[0] != "" && w.Header().Get(tc.header[0]) != tc.header[1] {
				t.Errorf("%s: %q, want %q", tc.header[0], w.Header().Get(tc.header[0]), tc.header[1])
			}
		})
	}
}

func TestLookupFallback(t *testing.T) {
	t.Parallel()
	fb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fallback " + r.URL.Path)) })
	s := sidecar.New(sidecar.Config{Client: newFake(), Fallback: fb})
	if w := do(s, "GET", "/metrics", ""); w.Body.String() != "fallback /metrics" {
		t.Errorf("/metrics: %d %s", w.Code, w.Body)
	}
	if w := do(s, "GET", "/v1/other", ""); w.Code != 404 {
		t.Errorf("/v1/other went to the fallback: %d %s", w.Code, w.Body)
	}
}

func TestLookupAtLeast(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	f.errs["behind.example.com"] = &client.TooOldError{Hostname: "behind.example.com", MinVersion: 9, Best: 8, Region: "eu-west-1"}
	s := sidecar.New(sidecar.Config{Client: f})
	w := do(s, "GET", "/v1/lookup/acme.example.com?min_version=7", "")
	if w.Code != 200 || w.Header().Get("ETag") != `"7"` || w.Header().Get("Age") != "" {
		t.Errorf("min_version: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = do(s, "GET", "/v1/lookup/acme.example.com?min_version=7&tenant_id=acme", "")
	if w.Code != 200 {
		t.Errorf("min_version and tenant_id: %d %s", w.Code, w.Body)
	}
	w = do(s, "GET", "/v1/lookup/behind.example.com?min_version=9", "")
	if p := problemOf(t, w); w.Code != 503 || p.Type != "urn:tcs:problem:version_not_reached" || !strings.Contains(p.Detail, "was 8 (eu-west-1)") {
		t.Errorf("behind: %d %+v", w.Code, p)
	}
	want := []string{"LookupAtLeast acme.example.com 7", "LookupTenantAtLeast acme.example.com acme 7", "LookupAtLeast behind.example.com 9"}
	if d := cmp.Diff(want, f.takeCalls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	for _, tc := range []struct{ query, field string }{
		{"min_version=x", "min_version"},
		{"min_version=0", "min_version"},
		{"min_version=-1", "min_version"},
		{"tenant_id=acme", "min_version"},
		{"min_version=3&tenant_id=Not_An_Id", "tenant_id"},
		{"min_version=3&colour=red", "colour"},
		// Of several unknown parameters, always the least is named.
		{"zone=1&min_version=3&colour=red&b=2", "b"},
		{"b=2&colour=red&min_version=3&zone=1", "b"},
	} {
		w := do(s, "GET", "/v1/lookup/acme.example.com?"+tc.query, "")
		p := problemOf(t, w)
		if w.Code != 400 || len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
			t.Errorf("?%s: %d %+v, want 400 naming %s", tc.query, w.Code, p, tc.field)
		}
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("bad queries reached the client: %v", calls)
	}
}

// batchAnswer is POST /v1/lookup:batch's body, decoded.
type batchAnswer struct {
	Results []struct {
		Hostname   string          `json:"hostname"`
		Tenant     json.RawMessage `json:"tenant"`
		Region     string          `json:"region"`
		AgeSeconds *float64        `json:"age_seconds"`
		Stale      bool            `json:"stale"`
		Error      *sidecar.Problem
	} `json:"results"`
}

func TestBatch(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	f.errs["bad..host"] = fmt.Errorf("%w %q: %s", client.ErrInvalidHostname, "bad..host", "empty label")
	s := sidecar.New(sidecar.Config{Client: f})
	w := do(s, "POST", "/v1/lookup:batch", `{"hostnames":["acme.example.com","nobody.example.com","bad..host"]}`, "Content-Type", "application/json")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("batch: %d %s", w.Code, w.Body)
	}
	var got batchAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Results) != 3 {
		t.Fatalf("results %s", w.Body)
	}
	r0 := got.Results[0]
	var doc tenant.Tenant
	if err := json.Unmarshal(r0.Tenant, &doc); err != nil || r0.Hostname != "acme.example.com" || r0.Region != "eu-west-1" || r0.AgeSeconds == nil || *r0.AgeSeconds != 2.5 || r0.Error != nil {
		t.Errorf("result 0: %+v (%v)", r0, err)
	}
	if d := cmp.Diff(acme(), &doc); d != "" {
		t.Errorf("result 0's tenant (-want +got):\n%s", d)
	}
	if r := got.Results[1]; r.Error == nil || r.Error.Status != 404 || r.Tenant != nil || r.Hostname != "nobody.example.com" {
		t.Errorf("result 1: %+v", r)
	}
	if r := got.Results[2]; r.Error == nil || r.Error.Status != 400 || !strings.Contains(r.Error.Detail, `"bad..host"`) {
		t.Errorf("result 2: %+v", r)
	}
}

func TestBatchRejects(t *testing.T) {
	t.Parallel()
	s := sidecar.New(sidecar.Config{Client: newFake()})
	many := `{"hostnames":[` + strings.Repeat(`"a.example.com",`, sidecar.MaxBatch) + `"b.example.com"]}`
	huge := `{"hostnames":["` + strings.Repeat("a", sidecar.MaxBatchBody) + `"]}`
	for _, tc := range []struct {
		name, body, ct string
		status         int
		detail, field  string
	}{
		{"too many", many, "application/json", 400, "101 hostnames: at most 100", "hostnames"},
		{"too large", huge, "application/json", 413, "over 65536 bytes", ""},
		{"not JSON media", `{"hostnames":[]}`, "text/plain", 415, `got "text/plain"`, ""},
		{"malformed", `{"hostnames":[`, "application/json", 400, "malformed JSON", ""},
		{"unknown key", `{"hostname":["a"]}`, "application/json", 400, `unknown field "hostname"`, ""},
		{"wrong type", `{"hostnames":"a.example.com"}`, "application/json", 400, "hostnames: want a JSON []string", "hostnames"},
		{"missing", `{}`, "application/json", 400, `{"hostnames":[...]}`, "hostnames"},
		{"two documents", `{"hostnames":[]} {}`, "", 400, "more than one document", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.ct != "" {
				hdr = []string{"Content-Type", tc.ct}
			}
			w := do(s, "POST", "/v1/lookup:batch", tc.body, hdr...)
			p := problemOf(t, w)
			if w.Code != tc.status || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("%d %+v, want %d with %q", w.Code, p, tc.status, tc.detail)
			}
			if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Errorf("errors %+v, want one naming %s", p.Errors, tc.field)
			}
		})
	}
	// An empty list is a batch of nothing.
	w := do(s, "POST", "/v1/lookup:batch", `{"hostnames":[]}`)
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"results":[]}` {
		t.Errorf("empty batch: %d %s", w.Code, w.Body)
	}
}
