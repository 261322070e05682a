package httpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Get returns the live tenant id.
func (c *Client) Get(ctx context.Context, id string) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodGet, tenantPath(id), nil, nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// GetRaw returns the live tenant id as the JSON object the API sent, so that
// fields this build does not know survive a read-modify-write.
func (c *Client) GetRaw(ctx context.Context, id string) (map[string]any, error) {
	var doc map[string]any
	if _, err := c.do(ctx, http.MethodGet, tenantPath(id), nil, nil, nil, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// GetJSON returns the live tenant id's JSON exactly as the API sent it.
func (c *Client) GetJSON(ctx context.Context, id string) (json.RawMessage, error) {
	var doc json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, tenantPath(id), nil, nil, nil, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// Version returns the current version of the live tenant id, from the
// ETag of a read.
func (c *Client) Version(ctx context.Context, id string) (int64, error) {
	etag, err := c.do(ctx, http.MethodGet, tenantPath(id), nil, nil, nil, nil)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.Trim(etag, `"`), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ETag %q is not a version", etag)
	}
	return v, nil
}

// LookupHostname asks the source of truth which tenant holds hostname.
func (c *Client) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodGet, "/v1/hostnames/"+url.PathEscape(hostname), nil, nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Create creates a tenant from its JSON document and returns it as stored
// (version 1).
func (c *Client) Create(ctx context.Context, doc json.RawMessage) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodPost, "/v1/tenants", nil, nil, doc, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Replace replaces tenant id's whole document (PUT) if it is at version
// ifMatch. PUT and PATCH require a version: with ifMatch ≤ 0 none is sent,
// and the catalog refuses the write.
func (c *Client) Replace(ctx context.Context, id string, ifMatch int64, doc json.RawMessage) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodPut, tenantPath(id), nil, ifMatchHeader(ifMatch), doc, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Patch applies a merge patch to tenant id if it is at version ifMatch.
func (c *Client) Patch(ctx context.Context, id string, ifMatch int64, patch MergePatch) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodPatch, tenantPath(id), nil, ifMatchHeader(ifMatch), patch, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Delete deletes tenant id if it is at version ifMatch (≤ 0: whatever its
// version).
func (c *Client) Delete(ctx context.Context, id string, ifMatch int64) error {
	_, err := c.do(ctx, http.MethodDelete, tenantPath(id), nil, ifMatchHeader(ifMatch), nil, nil)
	return err
}

// ListPage is a page of GET /v1/tenants, each tenant kept as the JSON
// object the API sent (see GetRaw).
type ListPage struct {
	Tenants       []map[string]any `json:"tenants"`
	NextPageToken string           `json:"next_page_token"`
}

// List returns a page of live tenants in the catalog's page order, up to pageSize (1–500)
// of them after pageToken ("" for the first page).
func (c *Client) List(ctx context.Context, pageToken string, pageSize int) (ListPage, error) {
	var p ListPage
	_, err := c.do(ctx, http.MethodGet, "/v1/tenants", pageQuery(pageToken, pageSize), nil, nil, &p)
	return p, err
}

// ErrSegmentsUnsupported is ListSegment's error when the catalog does not
// list by segment: an older one, which ignores the segment parameters
// (and so returned a tenant of another segment) or refuses them. List
// everything with List instead.
var ErrSegmentsUnsupported = errors.New("the catalog does not list by segment (older than GET /v1/tenants?segment=)")

// ListSegment is List of only segment segment (0 to segments-1) of
// segments (1 to catalog.MaxSegments): the tenants whose
// catalog.SegmentOf(id, segments) is segment, so that segments listers
// page through disjoint parts of the catalog that together hold every
// tenant. pageToken is the previous page's of the same segment. A catalog
// that cannot list by segment gives ErrSegmentsUnsupported.
func (c *Client) ListSegment(ctx context.Context, pageToken string, pageSize, segment, segments int) (ListPage, error) {
	if err := catalog.CheckSegment(catalog.ListOptions{Segment: segment, Segments: segments}); err != nil {
		return ListPage{}, err
	}
	q := pageQuery(pageToken, pageSize)
	q.Set("segment", strconv.Itoa(segment))
	q.Set("segments", strconv.Itoa(segments))
	var p ListPage
	if _, err := c.do(ctx, http.MethodGet, "/v1/tenants", q, nil, nil, &p); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusBadRequest && slices.ContainsFunc(e.Fields, func(f tenant.FieldError) bool { return f.Field == "segment" || f.Field == "segments" }) {
			return ListPage{}, fmt.Errorf("%w: %v", ErrSegmentsUnsupported, err)
		}
		return p, err
	}
	for _, t := range p.Tenants {
		if id, _ := t["id"].(string); catalog.SegmentOf(id, segments) != segment {
			return ListPage{}, fmt.Errorf("%w: segment %d of %d listed tenant %q, of segment %d", ErrSegmentsUnsupported, segment, segments, id, catalog.SegmentOf(id, segments))
		}
	}
	return p, nil
}
