package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// catalogClient is tcsctl's client of the catalog's admin REST API. It
// speaks JSON and turns problem+json answers into *apiError values that
// keep the problem's type, detail and fields.
type catalogClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

func newCatalogClient(base, token string, hc *http.Client) (*catalogClient, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--catalog %q: want an http:// or https:// URL", base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	return &catalogClient{base: u, token: token, http: hc}, nil
}

// apiError is a problem answer of the catalog.
type apiError struct {
	Status int
	Type   string
	Detail string
	Fields []tenant.FieldError
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, f := range e.Fields {
		if f.Reason != e.Detail {
			fmt.Fprintf(&b, "; %s: %s", f.Field, f.Reason)
		}
	}
	return b.String()
}

// code is the problem type's last part ("version_mismatch", "not_found", …).
func (e *apiError) code() string {
	return e.Type[strings.LastIndex(e.Type, ":")+1:]
}

func httpStatus(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func isNotFound(err error) bool { return httpStatus(err) == http.StatusNotFound }

func isVersionMismatch(err error) bool { return httpStatus(err) == http.StatusPreconditionFailed }

func isAlreadyExists(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.code() == string(tenant.AlreadyExists)
}

// retryable reports whether a failed call may succeed if tried again: the
// catalog said it is unavailable, or the connection failed.
func retryable(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusBadGateway || ae.Status == http.StatusGatewayTimeout
	}
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
// It returns the ETag of the answer.
func (c *catalogClient) do(ctx context.Context, method, path string, query url.Values, header http.Header, body, out any) (string, error) {
	u := *c.base
	u.Path += path
	u.RawPath = ""
	if strings.Contains(path, "%") {
		u.RawPath = c.base.Path + path
		u.Path, _ = url.PathUnescape(u.RawPath)
	}
	u.RawQuery = query.Encode()
	var rd io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case mergePatch:
		raw, err := json.Marshal(map[string]any(b))
		if err != nil {
			return "", err
		}
		rd, contentType = bytes.NewReader(raw), "application/merge-patch+json"
	case json.RawMessage:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		return "", fmt.Errorf("%s %s: reading answer: %w", method, u.Redacted(), err)
	}
	if res.StatusCode/100 != 2 {
		ae := &apiError{Status: res.StatusCode}
		var p struct {
			Type   string              `json:"type"`
			Detail string              `json:"detail"`
			Errors []tenant.FieldError `json:"errors"`
		}
		if json.Unmarshal(raw, &p) == nil {
			ae.Type, ae.Detail, ae.Fields = p.Type, p.Detail, p.Errors
		} else {
			ae.Detail = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
		}
		if res.StatusCode == http.StatusUnauthorized && c.token == "" {
			ae.Detail += " (tcsctl has no catalog token, and none by default: --token or TCS_ADMIN_TOKEN)"
		}
		return "", ae
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return "", fmt.Errorf("%s %s: decoding answer: %w", method, u.Redacted(), err)
		}
	}
	return res.Header.Get("ETag"), nil
}

// mergePatch is an RFC 7396 merge patch body.
type mergePatch map[string]any

// Get returns the live tenant id.
func (c *catalogClient) Get(ctx context.Context, id string) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id), nil, nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// GetRaw returns the live tenant id as the JSON object the API sent, so that
// fields this build does not know survive a read-modify-write.
func (c *catalogClient) GetRaw(ctx context.Context, id string) (map[string]any, error) {
	var doc map[string]any
	if _, err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id), nil, nil, nil, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// GetJSON returns the live tenant id's JSON exactly as the API sent it.
func (c *catalogClient) GetJSON(ctx context.Context, id string) (json.RawMessage, error) {
	var doc json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id), nil, nil, nil, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// LookupHostname asks the source of truth which tenant holds hostname.
func (c *catalogClient) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodGet, "/v1/hostnames/"+url.PathEscape(hostname), nil, nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Create creates a tenant from its JSON document.
func (c *catalogClient) Create(ctx context.Context, doc json.RawMessage) (*tenant.Tenant, error) {
	var t tenant.Tenant
	if _, err := c.do(ctx, http.MethodPost, "/v1/tenants", nil, nil, doc, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Patch applies a merge patch to tenant id if it is at version ifMatch.
func (c *catalogClient) Patch(ctx context.Context, id string, ifMatch int64, patch mergePatch) (*tenant.Tenant, error) {
	var t tenant.Tenant
	h := http.Header{"If-Match": {`"` + strconv.FormatInt(ifMatch, 10) + `"`}}
	if _, err := c.do(ctx, http.MethodPatch, "/v1/tenants/"+url.PathEscape(id), nil, h, patch, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Delete deletes tenant id if it is at version ifMatch.
func (c *catalogClient) Delete(ctx context.Context, id string, ifMatch int64) error {
	h := http.Header{"If-Match": {`"` + strconv.FormatInt(ifMatch, 10) + `"`}}
	_, err := c.do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(id), nil, h, nil, nil)
	return err
}

// listPage is the body of GET /v1/tenants, with each tenant kept as raw
// JSON (see GetRaw).
type listPage struct {
	Tenants       []map[string]any `json:"tenants"`
	NextPageToken string           `json:"next_page_token"`
}

// List returns a page of live tenants in the catalog's page order.
func (c *catalogClient) List(ctx context.Context, pageToken string, pageSize int) (listPage, error) {
	q := url.Values{"page_size": {strconv.Itoa(pageSize)}}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	var p listPage
	_, err := c.do(ctx, http.MethodGet, "/v1/tenants", q, nil, nil, &p)
	return p, err
}

// exportItem is one tenant of an export: its document (tombstones
// included) and the claim versions of the hostnames it holds.
type exportItem struct {
	Tenant *tenant.Tenant  `json:"tenant"`
	Claims []tenant.Claim  `json:"claims"`
	Raw    json.RawMessage `json:"-"`
}

// exportPage is the body of GET /v1/admin/export.
type exportPage struct {
	Items         []exportItem `json:"items"`
	NextPageToken string       `json:"next_page_token"`
}

// maxExportPage and maxResync are the catalog's limits per request.
const (
	maxExportPage = 1000
	maxResync     = 1000
)

// Export returns a page of every stored tenant, tombstones included, in id
// order. Each item keeps the tenant's raw JSON as the API sent it.
func (c *catalogClient) Export(ctx context.Context, pageToken string, pageSize int) (exportPage, error) {
	q := url.Values{"page_size": {strconv.Itoa(pageSize)}}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	var raw struct {
		Items []struct {
			Tenant json.RawMessage `json:"tenant"`
			Claims []tenant.Claim  `json:"claims"`
		} `json:"items"`
		NextPageToken string `json:"next_page_token"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/admin/export", q, nil, nil, &raw); err != nil {
		return exportPage{}, fmt.Errorf("export: %w", err)
	}
	p := exportPage{NextPageToken: raw.NextPageToken, Items: make([]exportItem, len(raw.Items))}
	for i, it := range raw.Items {
		var t tenant.Tenant
		if err := json.Unmarshal(it.Tenant, &t); err != nil {
			return exportPage{}, fmt.Errorf("export: item %d: %w", i, err)
		}
		p.Items[i] = exportItem{Tenant: &t, Claims: it.Claims, Raw: it.Tenant}
	}
	return p, nil
}

// resyncTenant names a tenant to re-emit and extra hostnames to settle.
type resyncTenant struct {
	ID        string   `json:"id"`
	Hostnames []string `json:"hostnames,omitempty"`
}

// resyncResult is the answer of POST /v1/admin/resync.
type resyncResult struct {
	Resynced []struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	} `json:"resynced"`
	NotFound []string `json:"not_found"`
}

// Resync re-emits the current state of up to maxResync tenants through the
// stream, to the named regions (none: every region).
func (c *catalogClient) Resync(ctx context.Context, tenants []resyncTenant, regions []string) (resyncResult, error) {
	body := struct {
		Tenants []resyncTenant `json:"tenants"`
		Regions []string       `json:"regions,omitempty"`
	}{tenants, regions}
	var out resyncResult
	_, err := c.do(ctx, http.MethodPost, "/v1/admin/resync", nil, nil, body, &out)
	return out, err
}

// resyncAll resyncs, server side, a page of up to pageSize of every stored
// tenant after pageToken ("" from the first; export's page tokens work too),
// and returns the token of the next page ("" at the end).
func (c *catalogClient) resyncAll(ctx context.Context, pageToken string, pageSize int, regions []string) (int, string, error) {
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

// noResyncAll reports whether err is a catalog's refusal of "all": true
// (one older than POST /v1/admin/resync's "all"), whose whole resync must
// then be driven by exports.
func noResyncAll(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return false
	}
	for _, f := range ae.Fields {
		if f.Field == "all" {
			return true
		}
	}
	return strings.Contains(ae.Detail, `"all"`)
}

// exportIDPage is a page of an export reduced to tenant ids.
type exportIDPage struct {
	IDs  []string
	Next string
}

// exportIDs returns a page of the ids of every stored tenant (tombstones
// included), decoding nothing else.
func (c *catalogClient) exportIDs(ctx context.Context, pageToken string, pageSize int) (exportIDPage, error) {
	q := url.Values{"page_size": {strconv.Itoa(pageSize)}}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	var raw struct {
		Items []struct {
			Tenant struct {
				ID string `json:"id"`
			} `json:"tenant"`
		} `json:"items"`
		NextPageToken string `json:"next_page_token"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/admin/export", q, nil, nil, &raw); err != nil {
		return exportIDPage{}, fmt.Errorf("export: %w", err)
	}
	p := exportIDPage{Next: raw.NextPageToken, IDs: make([]string, len(raw.Items))}
	for i, it := range raw.Items {
		p.IDs[i] = it.Tenant.ID
	}
	return p, nil
}
