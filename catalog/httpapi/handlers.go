package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// maxUnconditionalRetries bounds how often an update without If-Match (the
// product actions) re-reads and retries after losing a race.
const maxUnconditionalRetries = 32

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := s.decodeTenant(w, r)
	if err != nil {
		return err
	}
	if err := tenant.Prepare(t); err != nil {
		return err
	}
	op := storeOp{method: "Create", what: "create tenant " + t.ID, write: true,
		check: fmt.Sprintf("GET /v1/tenants/%s: 404 means it was not created; otherwise GET /v1/tenants/%s/history shows whether the create is yours", t.ID, t.ID)}
	created, err := storeCall(s, r.Context(), op, func(ctx context.Context) (*tenant.Tenant, error) {
		return s.store.Create(ctx, t, actorFrom(r.Context()))
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/tenants/"+url.PathEscape(created.ID))
	writeTenant(w, http.StatusCreated, created)
	return nil
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	t, err := s.get(r.Context(), id)
	if err != nil {
		return err
	}
	writeTenant(w, http.StatusOK, t)
	return nil
}

// tenantList is the body of GET /v1/tenants.
type tenantList struct {
	Tenants       []*tenant.Tenant `json:"tenants"`
	NextPageToken string           `json:"next_page_token,omitempty"`
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := pageSize(q)
	if err != nil {
		return err
	}
	var after string
	if tok := q.Get("page_token"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		after, _ = strings.CutPrefix(string(raw), "t:")
		if err != nil || tenant.ValidateID(after) != nil {
			return requestError(codeMalformed, "page_token", "page_token is not one this API returned")
		}
	}
	opts, err := listSegment(q)
	if err != nil {
		return err
	}
	opts.After, opts.Limit = after, limit
	page, err := storeCall(s, r.Context(), storeOp{method: "List", what: "list tenants"}, func(ctx context.Context) (catalog.Page, error) {
		return s.store.List(ctx, opts)
	})
	if err != nil {
		return err
	}
	out := tenantList{Tenants: page.Tenants}
	if out.Tenants == nil {
		out.Tenants = []*tenant.Tenant{}
	}
	if page.Next != "" {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("t:" + page.Next))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

// listSegment reads the query's segment and segments (absent: 0), a 400
// naming the one that is not an integer or out of range.
func listSegment(q url.Values) (catalog.ListOptions, error) {
	var opts catalog.ListOptions
	for _, p := range []struct {
		name string
		to   *int
	}{{"segment", &opts.Segment}, {"segments", &opts.Segments}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return opts, requestError(codeMalformed, p.name, fmt.Sprintf("%s must be an integer, got %q", p.name, v))
		}
		*p.to = n
	}
	if err := catalog.CheckSegment(opts); err != nil {
		f := tenant.ErrorFields(err)[0]
		return opts, requestError(codeMalformed, f.Field, f.Field+" "+f.Reason)
	}
	return opts, nil
}

func pageSize(q url.Values) (int, error) {
	v := q.Get("page_size")
	if v == "" {
		return catalog.DefaultPageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > catalog.MaxPageSize {
		return 0, requestError(codeMalformed, "page_size", fmt.Sprintf("page_size must be an integer from 1 to %d, got %q", catalog.MaxPageSize, v))
	}
	return n, nil
}

func (s *Server) replaceTenant(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	expected, err := requireIfMatch(r)
	if err != nil {
		return err
	}
	next, err := s.decodeTenant(w, r)
	if err != nil {
		return err
	}
	if next.ID != "" && next.ID != id {
		return requestError(tenant.Invalid, "id", fmt.Sprintf("id is immutable: body has %q, path has %q", next.ID, id))
	}
	return s.update(w, r, id, expected, func(*tenant.Tenant) (*tenant.Tenant, error) {
		return next.Clone(), nil
	})
}

func (s *Server) patchTenant(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	expected, err := requireIfMatch(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r, "application/merge-patch+json")
	if err != nil {
		return err
	}
	var patch map[string]any
	if err := decodeStrictAs(body, &patch, reflect.TypeFor[tenantInput]()); err != nil {
		return err
	}
	if v, ok := patch["id"]; ok && v != id {
		return requestError(tenant.Invalid, "id", fmt.Sprintf("id is immutable: patch sets %v, path has %q", v, id))
	}
	return s.update(w, r, id, expected, func(cur *tenant.Tenant) (*tenant.Tenant, error) {
		doc, err := json.Marshal(cur)
		if err != nil {
			return nil, err
		}
		var target any
		if err := json.Unmarshal(doc, &target); err != nil {
			return nil, err
		}
		merged, err := json.Marshal(mergePatch(target, patch))
		if err != nil {
			return nil, err
		}
		return decodeTenantInput(merged)
	})
}

// productBody is the optional body of the product actions.
type productBody struct {
	Users   *int64  `json:"users"`
	Edition *string `json:"edition"`
}

func (s *Server) productAction(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	product, verb, ok := strings.Cut(r.PathValue("action"), ":")
	if !ok || (verb != "activate" && verb != "deactivate") {
		return requestError(codeRouteNotFound, "", fmt.Sprintf("no route for %s %s: use products/{product}:activate or :deactivate", r.Method, r.URL.Path))
	}
	expected, _, err := ifMatch(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var pb productBody
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeStrict(body, &pb); err != nil {
			return err
		}
	}
	if verb == "deactivate" && (pb.Users != nil || pb.Edition != nil) {
		return requestError(tenant.Invalid, "", "deactivate takes no body; users and edition are kept")
	}
	return s.update(w, r, id, expected, func(cur *tenant.Tenant) (*tenant.Tenant, error) {
		p, had := cur.Products[product]
		if verb == "deactivate" {
			if !had {
				return nil, tenant.Errorf(tenant.NotFound, "tenant %q has no product %q", id, product)
			}
			p.State = tenant.ProductDeactivated
		} else {
			p.State = tenant.ProductActive
			if pb.Users != nil {
				p.Users = *pb.Users
			}
			if pb.Edition != nil {
				p.Edition = *pb.Edition
			}
		}
		if cur.Products == nil {
			cur.Products = map[string]tenant.Product{}
		}
		cur.Products[product] = p
		return cur, nil
	})
}

// update is the read-modify-write behind PUT, PATCH and the product actions.
// expected is the version the caller read (If-Match), or 0 to apply to
// whatever is current, retrying when a concurrent write wins. A change that
// changes nothing is not written: no new version, no event.
func (s *Server) update(w http.ResponseWriter, r *http.Request, id string, expected int64, mutate func(*tenant.Tenant) (*tenant.Tenant, error)) error {
	ctx := r.Context()
	for attempt := 0; ; attempt++ {
		cur, err := s.get(ctx, id)
		if err != nil {
			return err
		}
		if expected != 0 && cur.Version != expected {
			return versionMismatch(id, expected, cur.Version)
		}
		next, err := mutate(cur.Clone())
		if err != nil {
			return err
		}
		next.ID, next.Version, next.UpdatedAt, next.UpdatedBy = cur.ID, cur.Version, cur.UpdatedAt, cur.UpdatedBy
		if err := tenant.Prepare(next); err != nil {
			return err
		}
		if sameDocument(cur, next) {
			writeTenant(w, http.StatusOK, cur)
			return nil
		}
		op := storeOp{method: "Update", what: "update tenant " + id, write: true,
			check: fmt.Sprintf(`GET /v1/tenants/%s: ETag "%d" means it did not commit; if the ETag is "%d", GET /v1/tenants/%s/history shows whether version %d is your change`,
				id, cur.Version, cur.Version+1, id, cur.Version+1)}
		updated, err := storeCall(s, ctx, op, func(ctx context.Context) (*tenant.Tenant, error) {
			return s.store.Update(ctx, next, cur.Version, actorFrom(ctx))
		})
		if tenant.ErrorCode(err) == tenant.VersionMismatch && expected == 0 && attempt < maxUnconditionalRetries {
			continue
		}
		if err != nil {
			return err
		}
		writeTenant(w, http.StatusOK, updated)
		return nil
	}
}

func versionMismatch(id string, expected, current int64) error {
	return &tenant.Error{
		Code:    tenant.VersionMismatch,
		Message: fmt.Sprintf("tenant %q is at version %d, not %d: read it again and retry", id, current, expected),
		Fields:  []tenant.FieldError{{Field: "If-Match", Reason: fmt.Sprintf("version %d is not current (%d)", expected, current)}},
	}
}

// sameDocument reports whether two prepared documents have the same content,
// ignoring the fields the store sets.
func sameDocument(a, b *tenant.Tenant) bool {
	strip := func(t *tenant.Tenant) *tenant.Tenant {
		c := t.Clone()
		c.Version, c.UpdatedAt, c.UpdatedBy = 0, time.Time{}, ""
		return c
	}
	return tenant.Equal(strip(a), strip(b))
}

func (s *Server) deleteTenant(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	expected, _, err := ifMatch(r)
	if err != nil {
		return err
	}
	op := storeOp{method: "Delete", what: "delete tenant " + id, write: true,
		check: fmt.Sprintf("GET /v1/tenants/%s: a live tenant means it did not commit; on 404, GET /v1/tenants/%s/history shows whether the delete is yours", id, id)}
	tomb, err := storeCall(s, r.Context(), op, func(ctx context.Context) (*tenant.Tenant, error) {
		return s.store.Delete(ctx, id, expected, actorFrom(r.Context()))
	})
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(tomb.Version))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// historyPage is the body of GET /v1/tenants/{id}/history.
type historyPage struct {
	Records       []catalog.AuditRecord `json:"records"`
	NextPageToken string                `json:"next_page_token,omitempty"`
}

// historyPageToken decodes a history page_token ("" for the first page):
// the version the page starts below.
func historyPageToken(q url.Values) (int64, error) {
	tok := q.Get("page_token")
	if tok == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	v, ok := strings.CutPrefix(string(raw), "v:")
	before, _ := strconv.ParseInt(v, 10, 64)
	if err != nil || !ok || before < 1 {
		return 0, requestError(codeMalformed, "page_token", "page_token is not one this API returned")
	}
	return before, nil
}

func (s *Server) tenantHistory(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := pageSize(q)
	if err != nil {
		return err
	}
	before, err := historyPageToken(q)
	if err != nil {
		return err
	}
	// Ask for one more than a page to learn whether another page exists.
	recs, err := storeCall(s, r.Context(), storeOp{method: "History", what: "read the history of tenant " + id}, func(ctx context.Context) ([]catalog.AuditRecord, error) {
		return s.store.History(ctx, id, catalog.HistoryOptions{Before: before, Limit: limit + 1})
	})
	if err != nil {
		return err
	}
	out := historyPage{Records: recs}
	if len(recs) > limit {
		out.Records = recs[:limit]
		last := out.Records[limit-1].Version
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("v:" + strconv.FormatInt(last, 10)))
	}
	if out.Records == nil {
		out.Records = []catalog.AuditRecord{}
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

func (s *Server) lookupHostname(w http.ResponseWriter, r *http.Request) error {
	h, err := tenant.NormalizeHostname(r.PathValue("hostname"))
	if err != nil {
		return err
	}
	t, err := storeCall(s, r.Context(), storeOp{method: "LookupHostname", what: "look up hostname " + h}, func(ctx context.Context) (*tenant.Tenant, error) {
		return s.store.LookupHostname(ctx, h)
	})
	if err != nil {
		return err
	}
	writeTenant(w, http.StatusOK, t)
	return nil
}

// get reads a live tenant under the request's store deadline.
func (s *Server) get(ctx context.Context, id string) (*tenant.Tenant, error) {
	return storeCall(s, ctx, storeOp{method: "Get", what: "read tenant " + id}, func(ctx context.Context) (*tenant.Tenant, error) {
		return s.store.Get(ctx, id)
	})
}

func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := tenant.ValidateID(id); err != nil {
		return "", err
	}
	return id, nil
}

func requireIfMatch(r *http.Request) (int64, error) {
	v, ok, err := ifMatch(r)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, requestError(codePreconditionNeeded, "If-Match", "If-Match is required: send the ETag of the version you read, such as If-Match: \"3\"")
	}
	return v, nil
}

func writeTenant(w http.ResponseWriter, status int, t *tenant.Tenant) {
	w.Header().Set("ETag", etag(t.Version))
	writeJSON(w, status, "application/json", t)
}
