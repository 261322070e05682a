package httpclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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
