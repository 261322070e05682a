package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
)

// TestResyncAudited: resync and resync-all through the API leave records in
// the admin audit chain naming the caller's credential, served (as stored,
// hash-chained) by GET /v1/admin/history to readers, paged newest first.
func TestResyncAudited(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, id := range []string{"alpha", "bravo"} {
		h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: `{"id":"` + id + `","hostnames":["` + id + `.example.com"]}`}, http.StatusCreated)
	}
	h.mustDo(call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[{"id":"bravo"}],"regions":["eu-west-1"]}`}, http.StatusOK)
	h.mustDo(call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"all":true}`}, http.StatusOK)
	h.mustDo(call{method: "POST", path: "/v1/admin/resync", token: readerToken, body: `{"all":true}`}, http.StatusForbidden)
	h.mustDo(call{method: "GET", path: "/v1/admin/history", token: ""}, http.StatusUnauthorized)

	var recs []catalog.AuditRecord
	path := "/v1/admin/history?page_size=1"
	for {
		res := h.mustDo(call{method: "GET", path: path, token: readerToken}, http.StatusOK)
		var page struct {
			Records       []catalog.AuditRecord `json:"records"`
			NextPageToken string                `json:"next_page_token"`
		}
		if err := json.Unmarshal(res.body, &page); err != nil {
			t.Fatalf("history page %s: %v", res.body, err)
		}
		recs = append(page.Records, recs...) // newest first: prepend
		if page.NextPageToken == "" {
			break
		}
		path = "/v1/admin/history?page_size=1&page_token=" + page.NextPageToken
	}
	if len(recs) != 2 {
		t.Fatalf("admin history holds %d records, want 2: %+v", len(recs), recs)
	}
	if r := recs[0]; r.Action != catalog.ActionResync || r.Actor != "alice" || r.Resync == nil ||
		len(r.Resync.Tenants) != 1 || r.Resync.Tenants[0] != "bravo" || len(r.Resync.Regions) != 1 || r.Resync.Regions[0] != "eu-west-1" {
		t.Fatalf("resync record %s; want action resync by alice of bravo in eu-west-1", r.Raw)
	}
	if r := recs[1]; r.Action != catalog.ActionResyncAll || r.Actor != "alice" || r.Resync == nil || !r.Resync.All || len(r.Resync.Tenants) != 2 {
		t.Fatalf("resync-all record %s; want action resync-all by alice of both tenants", r.Raw)
	}
	if rep := catalog.VerifyChain(catalog.AdminAuditID, recs, 0); len(rep.Problems) > 0 || rep.Unchained != 0 {
		t.Fatalf("admin chain as served does not verify: %+v", rep)
	}
	h.mustDo(call{method: "GET", path: "/v1/admin/history?page_token=bogus", token: readerToken}, http.StatusBadRequest)

	// A tenant's chain, as served, verifies too; its newest record names
	// the caller.
	h.mustDo(call{method: "DELETE", path: "/v1/tenants/alpha", token: adminToken}, http.StatusNoContent)
	res := h.mustDo(call{method: "GET", path: "/v1/tenants/alpha/history", token: readerToken}, http.StatusOK)
	var page struct {
		Records []catalog.AuditRecord `json:"records"`
	}
	if err := json.Unmarshal(res.body, &page); err != nil || len(page.Records) != 2 {
		t.Fatalf("history of alpha %s: %v", res.body, err)
	}
	slices.Reverse(page.Records)
	if rep := catalog.VerifyChain("alpha", page.Records, 2); len(rep.Problems) > 0 || rep.Unchained != 0 || page.Records[1].Actor != "alice" {
		t.Fatalf("alpha's chain as served: %+v, newest by %q", rep, page.Records[1].Actor)
	}
}
