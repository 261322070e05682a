package sidecar_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/tcs/sidecar"
)

// FuzzBatch: whatever the body, POST /v1/lookup:batch answers 200 with one
// result per hostname or a 4xx problem, never a 5xx or a panic.
func FuzzBatch(f *testing.F) {
	for _, seed := range []string{
		`{"hostnames":["acme.example.com","nobody.example.com"]}`, `{"hostnames":[]}`, `{}`, `{"hostnames":null}`,
		`{"hostnames":[1]}`, `{"hostnames":["a"],"x":1}`, `[`, `{"hostnames":["a"]} {}`, `{"hostnames":["\u0000"]}`,
	} {
		f.Add(seed)
	}
	fake := newFake()
	fake.tenants["acme.example.com"] = acme()
	s := sidecar.New(sidecar.Config{Client: fake})
	f.Fuzz(func(t *testing.T, body string) {
		w := do(s, "POST", "/v1/lookup:batch", body, "Content-Type", "application/json")
		switch {
		case w.Code == http.StatusOK:
			var req struct{ Hostnames []string }
			var res struct{ Results []json.RawMessage }
			if err := json.Unmarshal([]byte(body), &req); err != nil {
				t.Fatalf("200 for a body that is not a batch: %q", body)
			}
			if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || len(res.Results) != len(req.Hostnames) {
				t.Fatalf("200 with %d results for %d hostnames: %s (%v)", len(res.Results), len(req.Hostnames), w.Body, err)
			}
		case w.Code >= 400 && w.Code < 500:
			problemOf(t, w)
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
}

// FuzzLookupPath: whatever the path under /v1/lookup/, the answer is a
// 200, or a 4xx problem.
func FuzzLookupPath(f *testing.F) {
	for _, seed := range []string{"acme.example.com", "", "a/b", "%zz", "acme.example.com?min_version=1", "x?min_version=-1&tenant_id=a"} {
		f.Add(seed)
	}
	fake := newFake()
	fake.tenants["acme.example.com"] = acme()
	s := sidecar.New(sidecar.Config{Client: fake})
	f.Fuzz(func(t *testing.T, rest string) {
		r, err := http.NewRequest("GET", "http://sidecar/v1/lookup/"+rest, nil)
		if err != nil {
			return // not a URL a client could send
		}
		w := doRequest(s, r)
		if w.Code != http.StatusOK && (w.Code < 400 || w.Code >= 500) {
			t.Fatalf("status %d for %q: %s", w.Code, rest, w.Body)
		}
		if w.Code != http.StatusOK {
			problemOf(t, w)
		}
	})
}

// FuzzFastHTTPAnswersAsServeHTTP: whatever the target after /v1/lookup/
// (or in place of the whole target) and the method, ServeFastHTTP answers
// as ServeHTTP does (fastAgainstHTTP).
func FuzzFastHTTPAnswersAsServeHTTP(f *testing.F) {
	for _, seed := range []struct{ method, target string }{
		{"GET", "/v1/lookup/acme.example.com"}, {"HEAD", "/v1/lookup/ACME.example.com"}, {"GET", "/v1/lookup/acme%2Eexample.com"},
		{"GET", "/v1/lookup/a/../acme.example.com#x"}, {"GET", "/v1/lookup//acme.example.com"}, {"GET", "/v1/lookup/..#"},
		{"GET", "/v1/lookup/acme.example.com?min_version=7&tenant_id=acme"}, {"DELETE", "/v1/lookup/"}, {"GET", "/v1/lookup/b\u00fccher"},
		{"POST", "/v1/lookup:batch"}, {"GET", "/metrics"}, {"GET", "http://sidecar/v1/lookup/acme.example.com"},
	} {
		f.Add(seed.method, seed.target)
	}
	s := edgeServer()
	f.Fuzz(func(t *testing.T, method, target string) {
		if method == "" || strings.ContainsAny(method, " \r\n") || strings.ContainsAny(target, " \r\n") {
			return // not one request line
		}
		if !strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "http://") {
			target = "/v1/lookup/" + target
		}
		if d := fastAgainstHTTP(s, method, target); d != "" {
			t.Fatal(d)
		}
	})
}
