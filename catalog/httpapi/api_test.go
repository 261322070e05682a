package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

func TestTenantLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	res := h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken,
		body: tenantJSON("acme", "Acme.Example.COM", "bücher.example.com.")}, http.StatusCreated)
	if got := res.header.Get("ETag"); got != `"1"` {
		t.Errorf("ETag = %s, want \"1\"", got)
	}
	if got := res.header.Get("Location"); got != "/v1/tenants/acme" {
		t.Errorf("Location = %s", got)
	}
	created := res.tenant(t)
	wantHosts := []string{"acme.example.com", "xn--bcher-kva.example.com"}
	if diff := cmp.Diff(wantHosts, created.Hostnames); diff != "" {
		t.Errorf("hostnames not normalised (-want +got):\n%s", diff)
	}
	if created.Version != 1 || created.UpdatedBy != "alice" || created.Status != tenant.StatusActive {
		t.Errorf("created = %+v", created)
	}

	got := h.mustDo(call{method: "GET", path: "/v1/tenants/acme", token: readerToken}, http.StatusOK).tenant(t)
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("GET differs from POST (-post +get):\n%s", diff)
	}
	for _, host := range []string{"acme.example.com", "ACME.example.com.", "acme.example.com:443", "bücher.example.com", "xn--bcher-kva.example.com"} {
		got := h.mustDo(call{method: "GET", path: "/v1/hostnames/" + host, token: readerToken}, http.StatusOK).tenant(t)
		if got.ID != "acme" {
			t.Errorf("lookup %s = %s", host, got.ID)
		}
	}

	// PUT the document back with one hostname changed.
	doc := strings.Replace(tenantJSON("acme", "acme.example.com", "acme.example.org"), `"tier":"gold"`, `"tier":"platinum"`, 1)
	res = h.mustDo(call{method: "PUT", path: "/v1/tenants/acme", token: adminToken, body: doc, header: map[string]string{"If-Match": `"1"`}}, http.StatusOK)
	if res.header.Get("ETag") != `"2"` || res.tenant(t).Labels["tier"] != "platinum" {
		t.Fatalf("PUT: ETag %s, body %s", res.header.Get("ETag"), res.body)
	}
	h.mustDo(call{method: "GET", path: "/v1/hostnames/xn--bcher-kva.example.com", token: readerToken}, http.StatusNotFound)
	h.mustDo(call{method: "GET", path: "/v1/hostnames/acme.example.org", token: readerToken}, http.StatusOK)

	// A PUT that changes nothing writes nothing.
	res = h.mustDo(call{method: "PUT", path: "/v1/tenants/acme", token: adminToken, body: doc, header: map[string]string{"If-Match": `"2"`}}, http.StatusOK)
	if res.header.Get("ETag") != `"2"` {
		t.Errorf("no-op PUT made version %s", res.header.Get("ETag"))
	}

	// PATCH (merge patch): drop a label, suspend.
	res = h.mustDo(call{method: "PATCH", path: "/v1/tenants/acme", token: adminToken,
		body:   `{"status":"SUSPENDED","labels":{"tier":null,"team":"core"}}`,
		header: map[string]string{"If-Match": `"2"`, "Content-Type": "application/merge-patch+json"}}, http.StatusOK)
	patched := res.tenant(t)
	if patched.Version != 3 || patched.Status != tenant.StatusSuspended || cmp.Diff(map[string]string{"team": "core"}, patched.Labels) != "" {
		t.Errorf("PATCH result %+v", patched)
	}
	if patched.Products["jira"].Users != 25 {
		t.Errorf("PATCH lost products: %+v", patched.Products)
	}

	// Product actions.
	res = h.mustDo(call{method: "POST", path: "/v1/tenants/acme/products/confluence:activate", token: adminToken, body: `{"users":10,"edition":"standard"}`}, http.StatusOK)
	if p := res.tenant(t).Products["confluence"]; p != (tenant.Product{State: tenant.ProductActive, Users: 10, Edition: "standard"}) {
		t.Errorf("activate: %+v", p)
	}
	res = h.mustDo(call{method: "POST", path: "/v1/tenants/acme/products/jira:deactivate", token: adminToken}, http.StatusOK)
	if p := res.tenant(t).Products["jira"]; p.State != tenant.ProductDeactivated || p.Users != 25 {
		t.Errorf("deactivate: %+v", p)
	}
	if res.header.Get("ETag") != `"5"` {
		t.Errorf("after two actions ETag = %s, want \"5\"", res.header.Get("ETag"))
	}

	// History, newest first, paginated.
	var page historyPage
	res = h.mustDo(call{method: "GET", path: "/v1/tenants/acme/history?page_size=3", token: readerToken}, http.StatusOK)
	if err := json.Unmarshal(res.body, &page); err != nil {
		t.Fatal(err)
	}
	var versions []int64
	for _, r := range page.Records {
		versions = append(versions, r.Version)
	}
	res = h.mustDo(call{method: "GET", path: "/v1/tenants/acme/history?page_size=3&page_token=" + page.NextPageToken, token: readerToken}, http.StatusOK)
	page = historyPage{}
	if err := json.Unmarshal(res.body, &page); err != nil {
		t.Fatal(err)
	}
	for _, r := range page.Records {
		versions = append(versions, r.Version)
	}
	if diff := cmp.Diff([]int64{5, 4, 3, 2, 1}, versions); diff != "" || page.NextPageToken != "" {
		t.Errorf("history versions (-want +got):\n%s next=%q", diff, page.NextPageToken)
	}
	if first := page.Records[len(page.Records)-1]; first.Action != catalog.ActionCreate || first.Before != nil || first.Actor != "alice" {
		t.Errorf("create record = %+v", first)
	}

	// Delete: gone from reads, hostnames free.
	h.mustDo(call{method: "DELETE", path: "/v1/tenants/acme", token: adminToken, header: map[string]string{"If-Match": `"5"`}}, http.StatusNoContent)
	h.mustDo(call{method: "GET", path: "/v1/tenants/acme", token: readerToken}, http.StatusNotFound)
	h.mustDo(call{method: "GET", path: "/v1/hostnames/acme.example.com", token: readerToken}, http.StatusNotFound)
	h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("other", "acme.example.com")}, http.StatusCreated)
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var want []string
	for i := range 23 {
		id := fmt.Sprintf("tenant-%02d", i)
		want = append(want, id)
		h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON(id, id+".example.com")}, http.StatusCreated)
	}
	h.mustDo(call{method: "DELETE", path: "/v1/tenants/tenant-05", token: adminToken}, http.StatusNoContent)
	want = append(want[:5], want[6:]...)

	var got []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		var list tenantList
		res := h.mustDo(call{method: "GET", path: "/v1/tenants?page_size=5&page_token=" + token, token: readerToken}, http.StatusOK)
		if err := json.Unmarshal(res.body, &list); err != nil {
			t.Fatal(err)
		}
		for _, tn := range list.Tenants {
			got = append(got, tn.ID)
		}
		if list.NextPageToken == "" {
			break
		}
		token = list.NextPageToken
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed ids (-want +got):\n%s", diff)
	}
}

// TestListSegments: ?segment=I&segments=N pages through exactly the
// tenants of segment I (catalog.SegmentOf), and the segments together list
// every tenant once.
func TestListSegments(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var want []string
	for i := range 30 {
		id := fmt.Sprintf("tenant-%02d", i)
		want = append(want, id)
		h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON(id, id+".example.com")}, http.StatusCreated)
	}
	const segments = 4
	var all []string
	for seg := range segments {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > 30 {
				t.Fatalf("segment %d: pagination does not end", seg)
			}
			var list tenantList
			res := h.mustDo(call{method: "GET", path: fmt.Sprintf("/v1/tenants?page_size=3&segment=%d&segments=%d&page_token=%s", seg, segments, token), token: readerToken}, http.StatusOK)
			if err := json.Unmarshal(res.body, &list); err != nil {
				t.Fatal(err)
			}
			for _, tn := range list.Tenants {
				if got := catalog.SegmentOf(tn.ID, segments); got != seg {
					t.Fatalf("segment %d listed %s, of segment %d", seg, tn.ID, got)
				}
				got = append(got, tn.ID)
			}
			if list.NextPageToken == "" {
				break
			}
			token = list.NextPageToken
		}
		if len(got) == 0 || len(got) == len(want) {
			t.Fatalf("segment %d of %d listed %d of %d tenants", seg, segments, len(got), len(want))
		}
		all = append(all, got...)
	}
	slices.Sort(all)
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("ids listed by the segments (-want +got):\n%s", diff)
	}
}

// TestRejections: every rejection is a problem document with the right
// status naming the field, and leaves the store exactly as it was.
func TestRejections(t *testing.T) {
	t.Parallel()
	ifMatch := func(v string) map[string]string { return map[string]string{"If-Match": v} }
	big := tenantJSON("big", "big.example.com")
	big = strings.Replace(big, `"tier":"gold"`, `"tier":"`+strings.Repeat("x", 70<<10)+`"`, 1)
	tests := []struct {
		name       string
		call       call
		wantStatus int
		wantField  string // "" = any (or none)
	}{
		{"malformed JSON", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id": "x",`}, 400, ""},
		{"syntax error", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id" "x"}`}, 400, ""},
		{"unknown field", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"new-one","hostnames":["n.example.com"],"nickname":"x"}`}, 400, "nickname"},
		{"wrong type", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"new-one","hostnames":"n.example.com"}`}, 400, "hostnames"},
		{"not an object", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `["x"]`}, 400, ""},
		{"empty body", call{method: "POST", path: "/v1/tenants", token: adminToken, header: map[string]string{"Content-Type": "application/json"}}, 400, ""},
		{"trailing data", call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("new-one", "n.example.com") + `{}`}, 400, ""},
		{"body too large", call{method: "POST", path: "/v1/tenants", token: adminToken, body: big}, 413, ""},
		{"not JSON", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `id=x`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "Content-Type"},
		{"invalid hostname", call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("new-one", "ok.example.com", "bad_host.example.com")}, 422, "hostnames[1]"},
		{"invalid id", call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("Bad_ID", "n.example.com")}, 422, "id"},
		{"no hostnames", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"new-one","hostnames":[]}`}, 422, "hostnames"},
		{"password in database", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"new-one","hostnames":["n.example.com"],"database":{"engine":"postgres","host":"db","port":5432,"name":"x","password":"hunter2"}}`}, 422, "database.password"},
		{"unknown database key", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"new-one","hostnames":["n.example.com"],"database":{"engine":"postgres","host":"db","port":5432,"name":"x","user":"admin"}}`}, 400, "database.user"},
		{"database wrong type", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"new-one","hostnames":["n.example.com"],"database":{"engine":"postgres","host":"db","port":"5432","name":"x"}}`}, 422, "database.port"},
		{"patch secret into database", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"database":{"password":"hunter2"}}`, header: ifMatch(`"1"`)}, 422, "database.password"},
		{"status deleted", call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"new-one","hostnames":["n.example.com"],"status":"DELETED"}`}, 422, "status"},
		{"hostname owned by another tenant", call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("new-one", "n.example.com", "BETA.example.com")}, 409, ""},
		{"duplicate id", call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("alpha", "n.example.com")}, 409, ""},
		{"put version mismatch", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha", "n.example.com"), header: ifMatch(`"7"`)}, 412, "If-Match"},
		{"put without If-Match", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha", "n.example.com")}, 428, "If-Match"},
		{"put bad If-Match", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha", "n.example.com"), header: ifMatch(`W/"x"`)}, 400, "If-Match"},
		{"put changes id", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha-2", "n.example.com"), header: ifMatch(`"1"`)}, 422, "id"},
		{"put hostname of another tenant", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha", "beta.example.com"), header: ifMatch(`"1"`)}, 409, ""},
		{"put invalid document", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: `{"hostnames":["a..b"]}`, header: ifMatch(`"1"`)}, 422, "hostnames[0]"},
		{"put unknown tenant", call{method: "PUT", path: "/v1/tenants/nobody", token: adminToken, body: tenantJSON("nobody", "n.example.com"), header: ifMatch(`"1"`)}, 404, ""},
		{"patch without If-Match", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"region":"eu-west-1"}`}, 428, "If-Match"},
		{"patch version mismatch", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"region":"eu-west-1"}`, header: ifMatch(`"2"`)}, 412, "If-Match"},
		{"patch unknown field", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"colour":"red"}`, header: ifMatch(`"1"`)}, 400, "colour"},
		{"patch invalid value", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"database":{"port":70000}}`, header: ifMatch(`"1"`)}, 422, "database.port"},
		{"patch changes id", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"id":"other"}`, header: ifMatch(`"1"`)}, 422, "id"},
		{"patch wrong type", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"labels":{"tier":7}}`, header: ifMatch(`"1"`)}, 400, "labels"},
		{"patch not an object", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `"x"`, header: ifMatch(`"1"`)}, 400, ""},
		{"get unknown tenant", call{method: "GET", path: "/v1/tenants/nobody", token: readerToken}, 404, ""},
		{"get invalid id", call{method: "GET", path: "/v1/tenants/NO_BODY", token: readerToken}, 422, "id"},
		{"delete version mismatch", call{method: "DELETE", path: "/v1/tenants/alpha", token: adminToken, header: ifMatch(`"9"`)}, 412, ""},
		{"delete unknown", call{method: "DELETE", path: "/v1/tenants/nobody", token: adminToken}, 404, ""},
		{"unknown hostname", call{method: "GET", path: "/v1/hostnames/nobody.example.com", token: readerToken}, 404, ""},
		{"invalid hostname lookup", call{method: "GET", path: "/v1/hostnames/bad_host", token: readerToken}, 422, "hostname"},
		{"no token", call{method: "POST", path: "/v1/tenants", body: tenantJSON("new-one", "n.example.com")}, 401, ""},
		{"wrong token", call{method: "GET", path: "/v1/tenants", token: "guess"}, 401, ""},
		{"reader writes", call{method: "POST", path: "/v1/tenants", token: readerToken, body: tenantJSON("new-one", "n.example.com")}, 403, ""},
		{"reader deletes", call{method: "DELETE", path: "/v1/tenants/alpha", token: readerToken}, 403, ""},
		{"page_size zero", call{method: "GET", path: "/v1/tenants?page_size=0", token: readerToken}, 400, "page_size"},
		{"page_size huge", call{method: "GET", path: "/v1/tenants?page_size=100000", token: readerToken}, 400, "page_size"},
		{"bad page_token", call{method: "GET", path: "/v1/tenants?page_token=%21%21", token: readerToken}, 400, "page_token"},
		{"segment not a number", call{method: "GET", path: "/v1/tenants?segment=x&segments=4", token: readerToken}, 400, "segment"},
		{"segment out of range", call{method: "GET", path: "/v1/tenants?segment=4&segments=4", token: readerToken}, 400, "segment"},
		{"segment without segments", call{method: "GET", path: "/v1/tenants?segment=1", token: readerToken}, 400, "segment"},
		{"segments negative", call{method: "GET", path: "/v1/tenants?segments=-2", token: readerToken}, 400, "segments"},
		{"segments huge", call{method: "GET", path: "/v1/tenants?segments=1025", token: readerToken}, 400, "segments"},
		{"bad history token", call{method: "GET", path: "/v1/tenants/alpha/history?page_token=abc", token: readerToken}, 400, "page_token"},
		{"history unknown", call{method: "GET", path: "/v1/tenants/nobody/history", token: readerToken}, 404, ""},
		{"deactivate missing product", call{method: "POST", path: "/v1/tenants/alpha/products/bitbucket:deactivate", token: adminToken}, 404, ""},
		{"activate invalid product", call{method: "POST", path: "/v1/tenants/alpha/products/Bit_Bucket:activate", token: adminToken}, 422, ""},
		{"activate negative users", call{method: "POST", path: "/v1/tenants/alpha/products/jira:activate", token: adminToken, body: `{"users":-1}`}, 422, "products.jira.users"},
		{"activate unknown body field", call{method: "POST", path: "/v1/tenants/alpha/products/jira:activate", token: adminToken, body: `{"seats":3}`}, 400, "seats"},
		{"activate version mismatch", call{method: "POST", path: "/v1/tenants/alpha/products/jira:activate", token: adminToken, header: ifMatch(`"4"`)}, 412, ""},
		{"unknown product verb", call{method: "POST", path: "/v1/tenants/alpha/products/jira:explode", token: adminToken}, 404, ""},
		{"resync no tenants", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[]}`}, 400, "tenants"},
		{"resync tenants missing", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"regions":["us-east-1"]}`}, 400, "tenants"},
		{"resync too many tenants", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: resyncJSON(1001)}, 400, "tenants"},
		{"resync bad id", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[{"id":"alpha"},{"id":"Bad_ID"}]}`}, 422, "tenants[1].id"},
		{"resync bad hostname", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[{"id":"alpha","hostnames":["ok.example.com","bad_host.example.com"]}]}`}, 422, "tenants[0].hostnames[1]"},
		{"resync bad region", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[{"id":"alpha"}],"regions":["us-east-1","EU WEST"]}`}, 422, "regions[1]"},
		{"resync empty region", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[{"id":"alpha"}],"regions":[""]}`}, 422, "regions[0]"},
		{"resync unknown field", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[{"id":"alpha","version":3}]}`}, 400, "version"},
		{"resync wrong type", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":"alpha"}`}, 400, "tenants"},
		{"resync by a reader", call{method: "POST", path: "/v1/admin/resync", token: readerToken, body: `{"tenants":[{"id":"alpha"}]}`}, 403, ""},
		{"resync without a token", call{method: "POST", path: "/v1/admin/resync", body: `{"tenants":[{"id":"alpha"}]}`}, 401, ""},
		{"export page_size zero", call{method: "GET", path: "/v1/admin/export?page_size=0", token: readerToken}, 400, "page_size"},
		{"export page_size huge", call{method: "GET", path: "/v1/admin/export?page_size=1001", token: readerToken}, 400, "page_size"},
		{"export bad page_token", call{method: "GET", path: "/v1/admin/export?page_token=dDphbHBoYQ", token: readerToken}, 400, "page_token"},
		{"export without a token", call{method: "GET", path: "/v1/admin/export"}, 401, ""},
		{"unknown route", call{method: "GET", path: "/v2/tenants", token: readerToken}, 404, ""},
		{"method not allowed", call{method: "DELETE", path: "/v1/tenants", token: adminToken}, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("alpha", "alpha.example.com")}, http.StatusCreated)
			h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("beta", "beta.example.com")}, http.StatusCreated)
			before := h.snapshot()

			h.t = t
			res := h.do(tc.call)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", res.status, tc.wantStatus, res.body)
			}
			p := res.problem(t)
			if tc.wantField != "" {
				var fields []string
				for _, f := range p.Errors {
					fields = append(fields, f.Field)
					if f.Reason == "" {
						t.Errorf("field %s has no reason", f.Field)
					}
				}
				if !contains(fields, tc.wantField) {
					t.Errorf("problem names fields %q, want %q; detail %q", fields, tc.wantField, p.Detail)
				}
			}
			switch tc.wantStatus {
			case 401:
				if res.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			case 405:
				if res.header.Get("Allow") == "" {
					t.Error("405 without Allow")
				}
			}
			h.assertUnchanged(before)
		})
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestConcurrentUpdates: of many writers holding the same ETag, exactly one
// wins and the rest get 412; nothing is lost or applied twice.
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("alpha", "alpha.example.com")}, http.StatusCreated)
	const writers = 16
	statuses := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := h.do(call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken,
				body: fmt.Sprintf(`{"labels":{"writer":"w%d"}}`, i), header: map[string]string{"If-Match": `"1"`}})
			statuses[i] = res.status
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[200] != 1 || count[412] != writers-1 {
		t.Errorf("statuses %v: want one 200 and %d×412", count, writers-1)
	}
	got := h.mustDo(call{method: "GET", path: "/v1/tenants/alpha", token: readerToken}, http.StatusOK).tenant(t)
	if got.Version != 2 {
		t.Errorf("version %d, want 2", got.Version)
	}

	// Product actions without If-Match retry instead: all land.
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.do(call{method: "POST", path: fmt.Sprintf("/v1/tenants/alpha/products/p%d:activate", i), token: adminToken})
		}()
	}
	wg.Wait()
	got = h.mustDo(call{method: "GET", path: "/v1/tenants/alpha", token: readerToken}, http.StatusOK).tenant(t)
	if len(got.Products) != writers+1 {
		t.Errorf("%d products after %d concurrent activations, want %d", len(got.Products), writers, writers+1)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.mustDo(call{method: "GET", path: "/healthz"}, http.StatusOK)
	h.mustDo(call{method: "GET", path: "/readyz"}, http.StatusOK)
	h.mustDo(call{method: "GET", path: "/v1/tenants/nobody", token: readerToken}, http.StatusNotFound)
	res := h.mustDo(call{method: "GET", path: "/metrics"}, http.StatusOK)
	want := `tcs_catalog_http_requests_total{code="404",method="GET",route="GET /v1/tenants/{id}"} 1`
	if !strings.Contains(string(res.body), want) {
		t.Errorf("metrics lack %s", want)
	}
	h.store.Close()
	h.clock.Advance(readyCacheTTL) // past the cached answer
	res = h.mustDo(call{method: "GET", path: "/readyz"}, http.StatusServiceUnavailable)
	res.problem(t)
}
