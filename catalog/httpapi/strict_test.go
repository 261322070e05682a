package httpapi

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// TestStrictJSON: duplicate keys (at every level, however spelled), keys
// that match a field only in another case, and deep nesting are refused
// with a 400 naming the key's path, and change nothing; the same key in
// different objects is fine.
func TestStrictJSON(t *testing.T) {
	t.Parallel()
	ifMatch := map[string]string{"If-Match": `"1"`}
	deep := `{"id":"new-one","hostnames":["n.example.com"],"labels":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`
	tests := []struct {
		name       string
		call       call
		wantStatus int
		wantField  string
		wantReason string
	}{
		{"duplicate top-level key", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"id":"other"}`}, 400, "id", "duplicate key"},
		{"duplicate key spelled with an escape", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"\u0069d":"other"}`}, 400, "id", "duplicate key"},
		{"duplicate label", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"labels":{"tier":"gold","tier":"free"}}`}, 400, "labels.tier", "duplicate key"},
		{"duplicate database key", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"database":{"engine":"postgres","host":"a","host":"b","port":5432,"name":"x"}}`}, 400, "database.host", "duplicate key"},
		{"duplicate product field", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"products":{"jira":{"users":1,"users":2}}}`}, 400, "products.jira.users", "duplicate key"},
		{"duplicate product", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"products":{"jira":{},"jira":{"users":2}}}`}, 400, "products.jira", "duplicate key"},
		{"duplicate odd label key quoted", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"labels":{"app.io/x":"1","app.io/x":"2"}}`}, 400, `labels["app.io/x"]`, "duplicate key"},
		{"duplicate in a patch", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, header: ifMatch,
			body: `{"labels":{"tier":"gold","tier":null}}`}, 400, "labels.tier", "duplicate key"},
		{"duplicate in a resync entry", call{method: "POST", path: "/v1/admin/resync", token: adminToken,
			body: `{"tenants":[{"id":"alpha","id":"beta"}]}`}, 400, "tenants[0].id", "duplicate key"},
		{"duplicate in a product action", call{method: "POST", path: "/v1/tenants/alpha/products/jira:activate", token: adminToken,
			body: `{"users":1,"users":5000}`}, 400, "users", "duplicate key"},

		{"top-level key in another case", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","Hostnames":["n.example.com"]}`}, 400, "Hostnames", `did you mean "hostnames"`},
		{"ID", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"ID":"new-one","hostnames":["n.example.com"]}`}, 400, "ID", `did you mean "id"`},
		{"nested key in another case", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"products":{"jira":{"Users":3}}}`}, 400, "products.jira.Users", `did you mean "users"`},
		{"patch key in another case", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, header: ifMatch,
			body: `{"Labels":{"tier":"free"}}`}, 400, "Labels", `did you mean "labels"`},
		{"resync key in another case", call{method: "POST", path: "/v1/admin/resync", token: adminToken,
			body: `{"Tenants":[{"id":"alpha"}]}`}, 400, "Tenants", `did you mean "tenants"`},
		{"product action key in another case", call{method: "POST", path: "/v1/tenants/alpha/products/jira:activate", token: adminToken,
			body: `{"Users":3}`}, 400, "Users", `did you mean "users"`},
		{"database key in another case", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"database":{"Engine":"postgres"}}`}, 400, "database.Engine", "unknown field"},

		{"nested 40 levels", call{method: "POST", path: "/v1/tenants", token: adminToken, body: deep}, 400, "labels.a" + strings.Repeat("[0]", 30), "deeper than 32 levels"},
		{"patch nested 40 levels", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, header: ifMatch,
			body: strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)}, 400, "a" + strings.Repeat(".a", 31), "deeper than 32 levels"},

		{"same key in different objects", call{method: "POST", path: "/v1/tenants", token: adminToken,
			body: `{"id":"new-one","hostnames":["n.example.com"],"labels":{"id":"x","name":"y"},"database":{"engine":"postgres","host":"db","port":5432,"name":"x"}}`}, 201, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("alpha", "alpha.example.com")}, http.StatusCreated)
			before := h.snapshot()
			h.t = t
			res := h.do(tc.call)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", res.status, tc.wantStatus, res.body)
			}
			if tc.wantStatus < 400 {
				return
			}
			p := res.problem(t)
			if len(p.Errors) != 1 || p.Errors[0].Field != tc.wantField || !strings.Contains(p.Errors[0].Reason, tc.wantReason) {
				t.Errorf("errors %+v, want one on %q with a reason containing %q", p.Errors, tc.wantField, tc.wantReason)
			}
			h.assertUnchanged(before)
		})
	}
}

// FuzzCheckJSON: checkJSON never panics, and what it refuses is refused
// with one field error that has a reason.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","id":"b"}`, `{"labels":{"a":"1","a":"2"}}`, `{"Hostnames":[]}`, `[[[[]]]]`, `{"a":`, `"x"`,
		`{"database":{"host":"a","host":"b"}}`, `{"products":{"jira":{"Users":1}}}`, `{"\u0069d":1,"id":2}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		err := checkJSON([]byte(body), typeOfTenantInput)
		if err == nil {
			return
		}
		p := problemFields(err)
		if len(p) != 1 || p[0].Reason == "" {
			t.Errorf("checkJSON(%q) = %v: want one field error with a reason", body, err)
		}
	})
}

var typeOfTenantInput = reflect.TypeFor[tenantInput]()

func problemFields(err error) []tenant.FieldError { return tenant.ErrorFields(err) }

// BenchmarkDecodeTenant is the cost of strictly decoding a typical tenant
// document: checkJSON's walk on top of encoding/json.
func BenchmarkDecodeTenant(b *testing.B) {
	body := []byte(tenantJSON("acme", "acme.example.com", "www.acme.example.com"))
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeTenantInput(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checkJSON alone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := checkJSON(body, typeOfTenantInput); err != nil {
				b.Fatal(err)
			}
		}
	})
}
