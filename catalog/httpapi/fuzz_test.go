package httpapi

import (
	"net/http"
	"testing"
)

// FuzzWriteHandlers throws arbitrary bodies at every handler that decodes
// one. Whatever the input: no panic, no 5xx, and every answer matches
// openapi.json.
func FuzzWriteHandlers(f *testing.F) {
	seeds := []string{
		tenantJSON("acme", "acme.example.com"),
		tenantJSON("acme", "ACME.example.com.", "bücher.example.com:8443"),
		`{"id":"acme","hostnames":["a.example.com"],"database":{"engine":"postgres","host":"db","port":5432,"name":"x","password":"p"}}`,
		`{"id":"acme","hostnames":["a.example.com"],"products":{"jira":{"state":"BOGUS","users":-5}}}`,
		`{"labels":{"tier":null},"status":"SUSPENDED"}`,
		`{"users":10,"edition":"premium"}`,
		`{"id":1e400}`, `{"hostnames":[null]}`, `{"products":{"":{}}}`, `null`, `[]`, `{`, "\x00", `{"database":null}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	h := newHarness(f)
	h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("acme", "acme.example.com")}, http.StatusCreated)
	targets := []struct{ method, path string }{
		{"POST", "/v1/tenants"},
		{"PUT", "/v1/tenants/acme"},
		{"PATCH", "/v1/tenants/acme"},
		{"POST", "/v1/tenants/acme/products/jira:activate"},
		{"POST", "/v1/tenants/acme/products/jira:deactivate"},
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		target := targets[int(which)%len(targets)]
		h.t = t
		// If-Match "*"-like guesses would only add 412s; use the current ETag
		// so that valid bodies reach the store.
		cur := h.do(call{method: "GET", path: "/v1/tenants/acme", token: readerToken})
		hdr := map[string]string{"If-Match": cur.header.Get("ETag")}
		res := h.do(call{method: target.method, path: target.path, token: adminToken, body: body, header: hdr})
		if res.status >= 500 {
			t.Fatalf("%s %s with %q: status %d, body %s", target.method, target.path, body, res.status, res.body)
		}
		if res.status >= 400 {
			res.problem(t)
		}
	})
}
