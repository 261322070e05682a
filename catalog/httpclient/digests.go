package httpclient

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tcs-dev/tcs/internal/digest"
)

// Digests returns the bucket digests of every stored tenant, tombstones
// included (internal/digest), and how many tenants they summarise, paging
// through GET /v1/admin/digests: the catalog reads its store, and only the
// digests cross the wire.
func (c *Client) Digests(ctx context.Context) (*digest.Table, int, error) {
	var t digest.Table
	tenants := 0
	for token := ""; ; {
		var raw struct {
			Tenants       int               `json:"tenants"`
			Buckets       map[string]string `json:"buckets"`
			NextPageToken string            `json:"next_page_token"`
		}
		if _, err := c.do(ctx, http.MethodGet, "/v1/admin/digests", pageQuery(token, 10_000), nil, nil, &raw); err != nil {
			return nil, 0, fmt.Errorf("digests: %w", err)
		}
		for b, hex := range raw.Buckets {
			n, err := strconv.Atoi(b)
			if err != nil || n < 0 || n >= digest.Buckets {
				return nil, 0, fmt.Errorf("digests: bucket %q is not one of 0 to %d", b, digest.Buckets-1)
			}
			d, err := strconv.ParseUint(hex, 16, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("digests: bucket %d: %q is not 16 hex digits", n, hex)
			}
			t[n] ^= d
		}
		tenants += raw.Tenants
		if token = raw.NextPageToken; token == "" {
			return &t, tenants, nil
		}
	}
}
