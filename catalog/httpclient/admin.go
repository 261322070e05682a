package httpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// ExportItem is one tenant of an export: its document (tombstones
// included), the claim versions of the hostnames it holds, and the
// document's JSON exactly as the API sent it.
type ExportItem struct {
	Tenant *tenant.Tenant
	Claims []tenant.Claim
	Raw    json.RawMessage
}

// ExportPage is a page of GET /v1/admin/export.
type ExportPage struct {
	Items         []ExportItem
	NextPageToken string
}

// Export returns a page of every stored tenant, tombstones included, in id
// order: up to pageSize (1 to catalog.MaxExportPageSize) after pageToken
// ("" for the first page).
func (c *Client) Export(ctx context.Context, pageToken string, pageSize int) (ExportPage, error) {
	var raw struct {
		Items []struct {
			Tenant json.RawMessage `json:"tenant"`
			Claims []tenant.Claim  `json:"claims"`
		} `json:"items"`
		NextPageToken string `json:"next_page_token"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/admin/export", pageQuery(pageToken, pageSize), nil, nil, &raw); err != nil {
		return ExportPage{}, fmt.Errorf("export: %w", err)
	}
	p := ExportPage{NextPageToken: raw.NextPageToken, Items: make([]ExportItem, len(raw.Items))}
	for i, it := range raw.Items {
		var t tenant.Tenant
		if err := json.Unmarshal(it.Tenant, &t); err != nil {
			return ExportPage{}, fmt.Errorf("export: item %d: %w", i, err)
		}
		p.Items[i] = ExportItem{Tenant: &t, Claims: it.Claims, Raw: it.Tenant}
	}
	return p, nil
}

// IDPage is a page of an export reduced to tenant ids.
type IDPage struct {
	IDs           []string
	NextPageToken string
}

// ExportIDs returns a page of the ids of every stored tenant (tombstones
// included), decoding nothing else: Export's paging, for callers that need
// only the ids.
func (c *Client) ExportIDs(ctx context.Context, pageToken string, pageSize int) (IDPage, error) {
	var raw struct {
		Items []struct {
			Tenant struct {
				ID string `json:"id"`
			} `json:"tenant"`
		} `json:"items"`
		NextPageToken string `json:"next_page_token"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/admin/export", pageQuery(pageToken, pageSize), nil, nil, &raw); err != nil {
		return IDPage{}, fmt.Errorf("export: %w", err)
	}
	p := IDPage{NextPageToken: raw.NextPageToken, IDs: make([]string, len(raw.Items))}
	for i, it := range raw.Items {
		p.IDs[i] = it.Tenant.ID
	}
	return p, nil
}

// Resync re-emits the current state of up to catalog.MaxResyncTenants
// tenants through the stream, to the named regions (none: every region),
// as catalog.Store.Resync does.
func (c *Client) Resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (catalog.ResyncResult, error) {
	body := struct {
		Tenants []catalog.ResyncRequest `json:"tenants"`
		Regions []string                `json:"regions,omitempty"`
	}{reqs, regions}
	var out catalog.ResyncResult
	_, err := c.do(ctx, http.MethodPost, "/v1/admin/resync", nil, nil, body, &out)
	return out, err
}

// ResyncAll resyncs, server side, a page of up to pageSize of every stored
// tenant after pageToken ("" from the first; Export's page tokens work too),
// and returns how many it resynced and the token of the next page ("" at
// the end). A catalog older than resync "all" refuses it: see
// IsResyncAllUnsupported.
func (c *Client) ResyncAll(ctx context.Context, pageToken string, pageSize int, regions []string) (int, string, error) {
	body := struct {
		All       bool     `json:"all"`
		PageToken string   `json:"page_token,omitempty"`
		PageSize  int      `json:"page_size,omitempty"`
		Regions   []string `json:"regions,omitempty"`
	}{true, pageToken, pageSize, regions}
	var out struct {
		Resynced      []json.RawMessage `json:"resynced"`
		NextPageToken string            `json:"next_page_token"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/v1/admin/resync", nil, nil, body, &out); err != nil {
		return 0, "", err
	}
	return len(out.Resynced), out.NextPageToken, nil
}

// IsResyncAllUnsupported reports whether err is a catalog's refusal of
// ResyncAll (one older than POST /v1/admin/resync's "all"), whose whole
// resync must then be driven by exports.
func IsResyncAllUnsupported(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		return false
	}
	for _, f := range e.Fields {
		if f.Field == "all" {
			return true
		}
	}
	return strings.Contains(e.Detail, `"all"`)
}

// HistoryPage is a page of GET /v1/tenants/{id}/history or
// /v1/admin/history, newest first. Each record keeps its JSON as served
// (Raw), which is what its hash covers.
type HistoryPage struct {
	Records       []catalog.AuditRecord `json:"records"`
	NextPageToken string                `json:"next_page_token"`
}

// History returns a page of the audit records of chain (a tenant id, or
// catalog.AdminAuditID for the resync records), newest first: up to
// pageSize (1 to catalog.MaxPageSize) after pageToken ("" for the newest).
func (c *Client) History(ctx context.Context, chain, pageToken string, pageSize int) (HistoryPage, error) {
	path := "/v1/tenants/" + url.PathEscape(chain) + "/history"
	if chain == catalog.AdminAuditID {
		path = "/v1/admin/history"
	}
	var p HistoryPage
	if _, err := c.do(ctx, http.MethodGet, path, pageQuery(pageToken, pageSize), nil, nil, &p); err != nil {
		return HistoryPage{}, err
	}
	return p, nil
}
