package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// resyncJSON is a resync body naming n tenants.
func resyncJSON(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"id":"t-%04d"}`, i)
	}
	return `{"tenants":[` + strings.Join(parts, ",") + `]}`
}

func TestResync(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("alpha", "alpha.example.com", "old.example.com")}, http.StatusCreated)
	h.mustDo(call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha", "alpha.example.com"), header: map[string]string{"If-Match": `"1"`}}, http.StatusOK)
	h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("gamma", "gamma.example.com")}, http.StatusCreated)
	h.mustDo(call{method: "DELETE", path: "/v1/tenants/gamma", token: adminToken}, http.StatusNoContent)
	before := h.snapshot()

	res := h.mustDo(call{method: "POST", path: "/v1/admin/resync", token: adminToken,
		body: `{"tenants":[{"id":"alpha","hostnames":["OLD.Example.com."]},{"id":"ghost"},{"id":"gamma"}],"regions":["eu-west-1"]}`}, http.StatusOK)
	var got resyncResponse
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatalf("body %s: %v", res.body, err)
	}
	want := resyncResponse{Resynced: []catalog.ResyncedTenant{{ID: "alpha", Version: 2}, {ID: "gamma", Version: 2}}, NotFound: []string{"ghost"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("resync response (-want +got):\n%s", diff)
	}

	// Two events appended; nothing else changed.
	after := h.snapshot()
	if n := len(after.Outbox) - len(before.Outbox); n != 2 {
		t.Fatalf("outbox grew by %d, want 2", n)
	}
	if diff := cmp.Diff(before.Tenants, after.Tenants); diff != "" {
		t.Errorf("tenants changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(before.History, after.History); diff != "" {
		t.Errorf("history changed (-before +after):\n%s", diff)
	}
	alpha, gamma := after.Outbox[len(after.Outbox)-2].Event, after.Outbox[len(after.Outbox)-1].Event
	if !alpha.Resync || alpha.TenantID != "alpha" || alpha.Version != 2 || !cmp.Equal(alpha.Regions, []string{"eu-west-1"}) {
		t.Errorf("alpha's event: %s@%d resync=%v regions=%v", alpha.TenantID, alpha.Version, alpha.Resync, alpha.Regions)
	}
	if len(alpha.Released) != 1 || alpha.Released[0].Hostname != "old.example.com" {
		t.Errorf("alpha's event releases %v, want old.example.com (normalised)", alpha.Released)
	}
	if !gamma.Resync || !gamma.Tombstone() || gamma.Version != 2 {
		t.Errorf("gamma's event: %s@%d resync=%v tombstone=%v", gamma.TenantID, gamma.Version, gamma.Resync, gamma.Tombstone())
	}

	// A thousand tenants fit in one request, and a request naming only
	// unknown tenants answers with empty lists.
	res = h.mustDo(call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: resyncJSON(1000)}, http.StatusOK)
	got = resyncResponse{}
	if err := json.Unmarshal(res.body, &got); err != nil || len(got.Resynced) != 0 || len(got.NotFound) != 1000 {
		t.Fatalf("resync of 1000 unknown tenants: %s (%v)", res.body, err)
	}
	if !strings.Contains(string(res.body), `"resynced":[]`) {
		t.Errorf("resynced is not an empty list: %s", res.body)
	}
}

func TestExport(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, id := range []string{"t-3", "t-1", "t-2", "t-4", "t-5"} {
		h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON(id, id+".example.com", "www."+id+".example.com")}, http.StatusCreated)
	}
	h.mustDo(call{method: "DELETE", path: "/v1/tenants/t-2", token: adminToken}, http.StatusNoContent)
	ctx := context.Background()

	var ids []string
	token := ""
	pages := 0
	for {
		path := "/v1/admin/export?page_size=2"
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		res := h.mustDo(call{method: "GET", path: path, token: readerToken}, http.StatusOK)
		pages++
		var page struct {
			Items []struct {
				Tenant *tenant.Tenant `json:"tenant"`
				Claims []tenant.Claim `json:"claims"`
			} `json:"items"`
			NextPageToken string `json:"next_page_token"`
		}
		if err := json.Unmarshal(res.body, &page); err != nil {
			t.Fatalf("body %s: %v", res.body, err)
		}
		for _, it := range page.Items {
			ids = append(ids, it.Tenant.ID)
			if it.Claims == nil {
				t.Errorf("%s: claims is null, want a list: %s", it.Tenant.ID, res.body)
			}
			if it.Tenant.Deleted() {
				if len(it.Claims) != 0 {
					t.Errorf("tombstone %s has claims %v", it.Tenant.ID, it.Claims)
				}
				continue
			}
			stored, err := h.store.Get(ctx, it.Tenant.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(stored, it.Tenant); diff != "" {
				t.Errorf("exported %s (-stored +exported):\n%s", it.Tenant.ID, diff)
			}
			want := []tenant.Claim{{Hostname: it.Tenant.ID + ".example.com", Version: 1}, {Hostname: "www." + it.Tenant.ID + ".example.com", Version: 1}}
			if diff := cmp.Diff(want, it.Claims); diff != "" {
				t.Errorf("claims of %s (-want +got):\n%s", it.Tenant.ID, diff)
			}
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	if diff := cmp.Diff([]string{"t-1", "t-2", "t-3", "t-4", "t-5"}, ids); diff != "" {
		t.Errorf("exported ids (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("%d pages of 2 for 5 tenants, want 3", pages)
	}

	// The default page holds them all; an admin may export too.
	res := h.mustDo(call{method: "GET", path: "/v1/admin/export", token: adminToken}, http.StatusOK)
	if strings.Contains(string(res.body), "next_page_token") || strings.Count(string(res.body), `"tenant":`) != 5 {
		t.Errorf("default export page: %s", res.body)
	}
}

// TestResyncAll: "all": true pages through every stored tenant, tombstones
// included, with tokens that export's also fit; it rejects what does not go
// with it.
func TestResyncAll(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, id := range []string{"t-3", "t-1", "t-2", "t-4", "t-5"} {
		h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON(id, id+".example.com")}, http.StatusCreated)
	}
	h.mustDo(call{method: "DELETE", path: "/v1/tenants/t-2", token: adminToken}, http.StatusNoContent)
	before := h.snapshot()

	var got []catalog.ResyncedTenant
	token, pages := "", 0
	for {
		body := fmt.Sprintf(`{"all":true,"page_size":2,"regions":["eu-west-1"],"page_token":%q}`, token)
		res := h.mustDo(call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: body}, http.StatusOK)
		pages++
		var page resyncResponse
		if err := json.Unmarshal(res.body, &page); err != nil {
			t.Fatalf("body %s: %v", res.body, err)
		}
		if page.NotFound == nil || len(page.NotFound) != 0 {
			t.Errorf("not_found is %v, want an empty list", page.NotFound)
		}
		got = append(got, page.Resynced...)
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	want := []catalog.ResyncedTenant{{ID: "t-1", Version: 1}, {ID: "t-2", Version: 2}, {ID: "t-3", Version: 1}, {ID: "t-4", Version: 1}, {ID: "t-5", Version: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("resynced (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("%d pages of 2 for 5 tenants, want 3", pages)
	}
	after := h.snapshot()
	if n := len(after.Outbox) - len(before.Outbox); n != 5 {
		t.Fatalf("outbox grew by %d, want 5", n)
	}
	for _, e := range after.Outbox[len(before.Outbox):] {
		if ev := e.Event; !ev.Resync || !cmp.Equal(ev.Regions, []string{"eu-west-1"}) {
			t.Errorf("event %s@%d: resync=%v regions=%v", ev.TenantID, ev.Version, ev.Resync, ev.Regions)
		}
	}
	if diff := cmp.Diff(before.Tenants, after.Tenants); diff != "" {
		t.Errorf("tenants changed (-before +after):\n%s", diff)
	}

	// An export page token continues a resync too.
	res := h.mustDo(call{method: "GET", path: "/v1/admin/export?page_size=3", token: readerToken}, http.StatusOK)
	var page struct {
		NextPageToken string `json:"next_page_token"`
	}
	if err := json.Unmarshal(res.body, &page); err != nil || page.NextPageToken == "" {
		t.Fatalf("export page: %s (%v)", res.body, err)
	}
	res = h.mustDo(call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: fmt.Sprintf(`{"all":true,"page_token":%q}`, page.NextPageToken)}, http.StatusOK)
	var rest resyncResponse
	if err := json.Unmarshal(res.body, &rest); err != nil || !cmp.Equal(rest.Resynced, want[3:]) || rest.NextPageToken != "" {
		t.Fatalf("resync all after an export page: %s (%v)", res.body, err)
	}

	bad := h.snapshot()
	for _, tc := range []struct{ name, body, field string }{
		{"tenants and all", `{"all":true,"tenants":[{"id":"t-1"}]}`, "tenants"},
		{"bad token", `{"all":true,"page_token":"nope"}`, "page_token"},
		{"page size too big", `{"all":true,"page_size":1001}`, "page_size"},
		{"negative page size", `{"all":true,"page_size":-1}`, "page_size"},
		{"token without all", `{"tenants":[{"id":"t-1"}],"page_token":"eDp0LTE"}`, "page_token"},
		{"bad region", `{"all":true,"regions":["Mars!"]}`, "regions[0]"},
	} {
		res := h.do(call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: tc.body})
		if res.status/100 != 4 {
			t.Errorf("%s: status %d, want 4xx; body %s", tc.name, res.status, res.body)
			continue
		}
		p := res.problem(t)
		if len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
			t.Errorf("%s: problem %+v, want one error naming %s", tc.name, p, tc.field)
		}
	}
	if n := len(h.snapshot().Outbox) - len(bad.Outbox); n != 0 {
		t.Errorf("rejected requests appended %d events", n)
	}
}
