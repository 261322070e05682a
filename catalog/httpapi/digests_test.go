package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/internal/digest"
)

// TestDigests: the pages of GET /v1/admin/digests, XORed together, are the
// bucket digests of every stored tenant, tombstones included; bad page
// sizes and tokens are refused naming the parameter.
func TestDigests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	for i := range 7 {
		if _, err := h.store.Create(ctx, storetest.NewTenant(fmt.Sprintf("tenant-%d", i)), "test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.store.Delete(ctx, "tenant-3", 0, "test"); err != nil {
		t.Fatal(err)
	}
	var want digest.Table
	page, err := h.store.Export(ctx, catalog.ListOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range page.Items {
		e := digest.NewEntry(it.Tenant, it.Claims)
		want[digest.Bucket(it.Tenant.ID)] ^= e.Sum(it.Tenant.ID)
	}

	var got digest.Table
	tenants, pages := 0, 0
	for token := ""; ; pages++ {
		res := h.mustDo(call{method: "GET", path: "/v1/admin/digests?page_size=3&page_token=" + url.QueryEscape(token), token: readerToken}, http.StatusOK)
		var p digestsPage
		if err := json.Unmarshal(res.body, &p); err != nil {
			t.Fatal(err)
		}
		tenants += p.Tenants
		for b, hex := range p.Buckets {
			n, err := strconv.Atoi(b)
			d, herr := strconv.ParseUint(hex, 16, 64)
			if err != nil || herr != nil || n < 0 || n >= digest.Buckets {
				t.Fatalf("bucket %q: %q", b, hex)
			}
			got[n] ^= d
		}
		if token = p.NextPageToken; token == "" {
			break
		}
	}
	if tenants != 7 || pages != 2 {
		t.Errorf("%d tenants in %d pages, want 7 in 3 (3+3+1)", tenants, pages+1)
	}
	if d := digest.Diff(&want, &got); len(d) != 0 {
		t.Errorf("buckets %v differ from the store's export", d)
	}

	for _, tc := range []struct{ query, field string }{
		{"page_size=0", "page_size"},
		{"page_size=10001", "page_size"},
		{"page_token=bogus", "page_token"},
	} {
		p := h.mustDo(call{method: "GET", path: "/v1/admin/digests?" + tc.query, token: readerToken}, http.StatusBadRequest).problem(t)
		if len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
			t.Errorf("%s: errors %+v, want one naming %s", tc.query, p.Errors, tc.field)
		}
	}
	h.mustDo(call{method: "GET", path: "/v1/admin/digests"}, http.StatusUnauthorized)
}
