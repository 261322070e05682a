package httpapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// MaxResyncBodyBytes caps the body of POST /v1/admin/resync: a thousand
// tenants with a few hostnames each fit many times over.
const MaxResyncBodyBytes = 1 << 20

// resyncCheck is how to learn the outcome of a resync that timed out.
const resyncCheck = "nothing: a resync changes no tenant and re-emitting is harmless, so send the same request again"

// resyncBody is the body of POST /v1/admin/resync.
type resyncBody struct {
	Tenants []resyncTenant `json:"tenants"`
	Regions []string       `json:"regions"`
	// All, instead of Tenants, resyncs a page of every stored tenant
	// (catalog.Store.ResyncAll): up to PageSize of them after PageToken, an
	// export page token or a NextPageToken of an earlier answer.
	All       bool   `json:"all"`
	PageToken string `json:"page_token"`
	PageSize  int    `json:"page_size"`
}

type resyncTenant struct {
	ID        string   `json:"id"`
	Hostnames []string `json:"hostnames"`
}

// resyncResponse is the answer of POST /v1/admin/resync.
type resyncResponse struct {
	Resynced []catalog.ResyncedTenant `json:"resynced"`
	NotFound []string                 `json:"not_found"`
	// NextPageToken continues an "all" resync; absent at the end.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// resync re-emits the current state of the tenants named through the
// stream (see catalog.Store.Resync). Hostnames are normalised as everywhere
// else; a request with any malformed id, hostname or region is rejected
// whole, naming each field at fault, and changes nothing. The store audits
// the resync in the catalog.AdminAuditID chain (GET /v1/admin/history),
// naming the caller the request's context carries (auth.FromContext).
func (s *Server) resync(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBodyLimit(w, r, max(s.maxBody, MaxResyncBodyBytes))
	if err != nil {
		return err
	}
	var in resyncBody
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	if in.All {
		return s.resyncAll(w, r, in)
	}
	if in.PageToken != "" || in.PageSize != 0 {
		field := "page_token"
		if in.PageToken == "" {
			field = "page_size"
		}
		return requestError(codeMalformed, field, field+" goes only with \"all\": true")
	}
	switch n := len(in.Tenants); {
	case n == 0:
		return requestError(codeMalformed, "tenants", "tenants is required: name 1 to "+strconv.Itoa(catalog.MaxResyncTenants)+" tenants")
	case n > catalog.MaxResyncTenants:
		return requestError(codeMalformed, "tenants", fmt.Sprintf("tenants has %d entries; at most %d are allowed per request", n, catalog.MaxResyncTenants))
	}
	// Check every field, in request order, so that one answer names them
	// all; hostnames are normalised here, as on every other route.
	reqs := make([]catalog.ResyncRequest, len(in.Tenants))
	var fields []tenant.FieldError
	for i, t := range in.Tenants {
		reqs[i] = catalog.ResyncRequest{ID: t.ID, Hostnames: make([]string, 0, len(t.Hostnames))}
		if err := tenant.ValidateID(t.ID); err != nil {
			fields = append(fields, named(err, fmt.Sprintf("tenants[%d].id", i))...)
		}
		if n := len(t.Hostnames); n > tenant.MaxHostnames {
			fields = append(fields, tenant.FieldError{Field: fmt.Sprintf("tenants[%d].hostnames", i),
				Reason: fmt.Sprintf("has %d entries; at most %d are allowed", n, tenant.MaxHostnames)})
			continue
		}
		for j, h := range t.Hostnames {
			norm, err := tenant.NormalizeHostname(h)
			if err != nil {
				fields = append(fields, named(err, fmt.Sprintf("tenants[%d].hostnames[%d]", i, j))...)
				continue
			}
			reqs[i].Hostnames = append(reqs[i].Hostnames, norm)
		}
	}
	for i, region := range in.Regions {
		if err := tenant.ValidateRegion(region); err != nil {
			fields = append(fields, named(err, fmt.Sprintf("regions[%d]", i))...)
		}
	}
	if len(fields) > 0 {
		return &tenant.Error{Code: tenant.Invalid, Message: "invalid resync request", Fields: fields}
	}
	what := fmt.Sprintf("resync %d tenants", len(reqs))
	if len(reqs) == 1 {
		what = "resync 1 tenant"
	}
	op := storeOp{method: "Resync", what: what, write: true, check: resyncCheck}
	res, err := storeCall(s, r.Context(), op, func(ctx context.Context) (catalog.ResyncResult, error) {
		return s.store.Resync(ctx, reqs, in.Regions)
	})
	if err != nil {
		return err
	}
	out := resyncResponse{Resynced: res.Resynced, NotFound: res.NotFound}
	if out.Resynced == nil {
		out.Resynced = []catalog.ResyncedTenant{}
	}
	if out.NotFound == nil {
		out.NotFound = []string{}
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

// resyncAll resyncs a page of every stored tenant (catalog.Store.ResyncAll)
// and answers with the token of the next page, if any. Each page is audited
// as a resync-all in the catalog.AdminAuditID chain.
func (s *Server) resyncAll(w http.ResponseWriter, r *http.Request, in resyncBody) error {
	if len(in.Tenants) > 0 {
		return requestError(codeMalformed, "tenants", "give either tenants or \"all\": true, not both")
	}
	if in.PageSize < 0 || in.PageSize > catalog.MaxResyncTenants {
		return requestError(codeMalformed, "page_size", fmt.Sprintf("page_size must be from 1 to %d (0 or absent: %d)", catalog.MaxResyncTenants, catalog.MaxResyncTenants))
	}
	after, ok := parseExportToken(in.PageToken)
	if !ok {
		return requestError(codeMalformed, "page_token", "page_token is not one this API returned")
	}
	var fields []tenant.FieldError
	for i, region := range in.Regions {
		if err := tenant.ValidateRegion(region); err != nil {
			fields = append(fields, named(err, fmt.Sprintf("regions[%d]", i))...)
		}
	}
	if len(fields) > 0 {
		return &tenant.Error{Code: tenant.Invalid, Message: "invalid resync request", Fields: fields}
	}
	type page struct {
		res  catalog.ResyncResult
		next string
	}
	op := storeOp{method: "ResyncAll", what: "resync a page of all tenants", write: true, check: resyncCheck}
	pg, err := storeCall(s, r.Context(), op, func(ctx context.Context) (page, error) {
		res, next, err := s.store.ResyncAll(ctx, after, in.PageSize, in.Regions)
		return page{res, next}, err
	})
	if err != nil {
		return err
	}
	res, next := pg.res, pg.next
	out := resyncResponse{Resynced: res.Resynced, NotFound: []string{}}
	if out.Resynced == nil {
		out.Resynced = []catalog.ResyncedTenant{}
	}
	if next != "" {
		out.NextPageToken = exportToken(next)
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

// adminHistory serves the audit records of resync and resync-all (the
// catalog.AdminAuditID chain), newest first, paged as a tenant's history.
func (s *Server) adminHistory(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := pageSize(q)
	if err != nil {
		return err
	}
	before, err := historyPageToken(q)
	if err != nil {
		return err
	}
	recs, err := storeCall(s, r.Context(), storeOp{method: "History", what: "read the resync audit records"}, func(ctx context.Context) ([]catalog.AuditRecord, error) {
		return s.store.History(ctx, catalog.AdminAuditID, catalog.HistoryOptions{Before: before, Limit: limit + 1})
	})
	if err != nil {
		return err
	}
	out := historyPage{Records: recs}
	if len(recs) > limit {
		out.Records = recs[:limit]
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("v:" + strconv.FormatInt(out.Records[limit-1].Version, 10)))
	}
	if out.Records == nil {
		out.Records = []catalog.AuditRecord{}
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

// parseExportToken returns the id an export page token (or a resync "all"
// token, the same) continues after; "" is the start.
func parseExportToken(tok string) (string, bool) {
	if tok == "" {
		return "", true
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	id, ok := strings.CutPrefix(string(raw), "x:")
	if err != nil || !ok || tenant.ValidateID(id) != nil {
		return "", false
	}
	return id, true
}

func exportToken(after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("x:" + after))
}

// named returns the field errors of err under the name field.
func named(err error, field string) []tenant.FieldError {
	fs := tenant.ErrorFields(err)
	out := make([]tenant.FieldError, len(fs))
	for i, f := range fs {
		out[i] = tenant.FieldError{Field: field, Reason: f.Reason}
	}
	return out
}

// exportPage is the body of GET /v1/admin/export.
type exportPage struct {
	Items         []exportItem `json:"items"`
	NextPageToken string       `json:"next_page_token,omitempty"`
}

type exportItem struct {
	Tenant *tenant.Tenant `json:"tenant"`
	Claims []tenant.Claim `json:"claims"`
}

// export returns a page of every stored tenant, tombstones included, with
// the claim versions of its hostnames, in the store's page order.
func (s *Server) export(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := catalog.DefaultExportPageSize
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > catalog.MaxExportPageSize {
			return requestError(codeMalformed, "page_size", fmt.Sprintf("page_size must be an integer from 1 to %d, got %q", catalog.MaxExportPageSize, v))
		}
		limit = n
	}
	after, ok := parseExportToken(q.Get("page_token"))
	if !ok {
		return requestError(codeMalformed, "page_token", "page_token is not one this API returned")
	}
	page, err := storeCall(s, r.Context(), storeOp{method: "Export", what: "export tenants"}, func(ctx context.Context) (catalog.ExportPage, error) {
		return s.store.Export(ctx, catalog.ListOptions{After: after, Limit: limit})
	})
	if err != nil {
		return err
	}
	out := exportPage{Items: make([]exportItem, len(page.Items))}
	for i, it := range page.Items {
		out.Items[i] = exportItem{Tenant: it.Tenant, Claims: it.Claims}
		if out.Items[i].Claims == nil {
			out.Items[i].Claims = []tenant.Claim{}
		}
	}
	if page.Next != "" {
		out.NextPageToken = exportToken(page.Next)
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}
