package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/internal/digest"
)

// Digest page sizes: a page summarises this many tenants; its body is at
// most 4,096 bucket digests whatever its size.
const (
	DefaultDigestPageSize = 10_000
	MaxDigestPageSize     = 10_000
)

// digestsPage is the body of GET /v1/admin/digests: the XOR, per bucket, of
// the page's tenants' digests (buckets with none left out).
type digestsPage struct {
	Tenants       int               `json:"tenants"`
	Buckets       map[string]string `json:"buckets"`
	NextPageToken string            `json:"next_page_token,omitempty"`
}

// digests summarises a page of every stored tenant (tombstones included),
// in id order, in the bucket digests of internal/digest: what `tcsctl verify
// --digest` compares with the regions' (ReplicaAdmin.Digests) without
// reading a document. Page tokens are export page tokens.
func (s *Server) digests(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := DefaultDigestPageSize
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDigestPageSize {
			return requestError(codeMalformed, "page_size", fmt.Sprintf("page_size must be an integer from 1 to %d, got %q", MaxDigestPageSize, v))
		}
		limit = n
	}
	after, ok := parseExportToken(q.Get("page_token"))
	if !ok {
		return requestError(codeMalformed, "page_token", "page_token is not one this API returned")
	}
	var table digest.Table
	out := digestsPage{Buckets: map[string]string{}}
	for {
		page, err := storeCall(s, r.Context(), storeOp{method: "Export", what: "export tenants"}, func(ctx context.Context) (catalog.ExportPage, error) {
			return s.store.Export(ctx, catalog.ListOptions{After: after, Limit: min(limit-out.Tenants, catalog.MaxExportPageSize)})
		})
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			e := digest.NewEntry(it.Tenant, it.Claims)
			table[digest.Bucket(it.Tenant.ID)] ^= e.Sum(it.Tenant.ID)
		}
		out.Tenants += len(page.Items)
		after = page.Next
		if after == "" || out.Tenants >= limit {
			break
		}
	}
	for b, d := range table {
		if d != 0 {
			out.Buckets[strconv.Itoa(b)] = fmt.Sprintf("%016x", d)
		}
	}
	if after != "" {
		out.NextPageToken = exportToken(after)
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}
