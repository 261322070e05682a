// Package httpclient is the client of the catalog's admin REST API
// (catalog/httpapi; the routes are in its openapi.json): tenants (get,
// create, replace, merge-patch, delete, list, lookup by hostname), the
// export of every stored tenant, resync and the audit history. It returns
// domain values (catalog/tenant, catalog) and turns problem+json answers
// into *Error values that keep the problem's status, type, detail and
// field errors, so that callers test them with IsNotFound,
// IsVersionMismatch, IsAlreadyExists and Retryable.
//
// tcsctl is built on it; so can anything else that talks to a catalog over
// HTTP (tests, sidecars). The caller owns the *http.Client: its transport,
// TLS and timeouts. A Client is safe for concurrent use.
package httpclient

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

// Client is a client of one catalog's admin REST API.
type Client struct {
	base       *url.URL
	token      string
	http       *http.Client
	noTokenFix string
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as the bearer token of every request: an admin
// token to write, a reader token to read.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient sends requests through hc. The default is an http.Client
// with a 60 s timeout over http.DefaultTransport.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithNoTokenHint appends hint to the detail of a 401 answer when the
// Client has no token: what the user should give (e.g. "(--token or
// TCS_ADMIN_TOKEN)").
func WithNoTokenHint(hint string) Option { return func(c *Client) { c.noTokenFix = hint } }

// New returns a client of the catalog at baseURL, an http:// or https://
// URL (a path prefix is kept; a trailing slash is not needed).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("catalog URL %q: want an http:// or https:// URL", baseURL)
	}
	c := &Client{base: u}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 60 * time.Second}
	}
	return c, nil
}

// Error is a problem answer (RFC 9457 problem+json) of the catalog, or any
// other answer that is not 2xx.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Type is the problem type URI ("urn:tcs:problem:not_found"); "" when
	// the answer was not problem+json.
	Type string
	// Detail explains the problem; for an answer that was not problem+json,
	// the start of its body.
	Detail string
	// Fields are the invalid fields of a rejected request.
	Fields []tenant.FieldError
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
	// A detail that is one field's reason (what the API sends for a
	// single invalid field) is shown once, with the field's name.
	named := -1
	for i, f := range e.Fields {
		if f.Reason == e.Detail {
			named = i
			break
		}
	}
	switch {
	case named >= 0:
		fmt.Fprintf(&b, ": %s: %s", e.Fields[named].Field, e.Detail)
	case e.Detail != "":
		b.WriteString(": " + e.Detail)
	}
	for i, f := range e.Fields {
		if i != named {
			fmt.Fprintf(&b, "; %s: %s", f.Field, f.Reason)
		}
	}
	return b.String()
}

// Code is the problem type's last part ("version_mismatch", "not_found",
// "already_exists", …: a tenant.Code).
func (e *Error) Code() string {
	return e.Type[strings.LastIndex(e.Type, ":")+1:]
}

// Status returns the HTTP status of the catalog's answer err carries, or 0
// if err is not an answer of the catalog.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsNotFound reports whether the catalog answered 404 (no such live tenant
// or hostname).
func IsNotFound(err error) bool { return Status(err) == http.StatusNotFound }

// IsVersionMismatch reports whether the catalog answered 412: If-Match
// named a version that is no longer the tenant's.
func IsVersionMismatch(err error) bool { return Status(err) == http.StatusPreconditionFailed }

// IsMoveConflict reports whether the catalog refused a write (409
// move_conflict) because it breaks the rules of the tenant's move: a step
// out of order, or a change of the database while a move is in progress.
func IsMoveConflict(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code() == string(tenant.MoveConflict)
}

// IsAlreadyExists reports whether a create found the id (or a hostname)
// taken.
func IsAlreadyExists(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code() == string(tenant.AlreadyExists)
}

// Retryable reports whether a failed call may succeed if tried again: the
// catalog said it is unavailable or overloaded (502, 503, 504, 429), or the
// request failed on the way (connection refused, reset), not because its
// context ended. A request refused before it was sent (a *tenant.Error)
// and ErrSegmentsUnsupported are not retryable.
func Retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests || e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout
	}
	if te := (*tenant.Error)(nil); errors.As(err, &te) || errors.Is(err, ErrSegmentsUnsupported) {
		return false
	}
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// MergePatch is an RFC 7396 merge patch: a key set to nil removes it.
type MergePatch map[string]any

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
// It returns the ETag of the answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, header http.Header, body, out any) (string, error) {
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
	case MergePatch:
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
		ae := &Error{Status: res.StatusCode}
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
		if res.StatusCode == http.StatusUnauthorized && c.token == "" && c.noTokenFix != "" {
			ae.Detail += " " + c.noTokenFix
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

func tenantPath(id string) string { return "/v1/tenants/" + url.PathEscape(id) }

// ifMatchHeader is the If-Match header naming version, or none for version ≤ 0.
func ifMatchHeader(version int64) http.Header {
	if version <= 0 {
		return nil
	}
	return http.Header{"If-Match": {`"` + strconv.FormatInt(version, 10) + `"`}}
}

func pageQuery(pageToken string, pageSize int) url.Values {
	q := url.Values{"page_size": {strconv.Itoa(pageSize)}}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	return q
}
