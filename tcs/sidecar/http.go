package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs/client"
)

// The HTTP routes.
const (
	lookupPrefix = "/v1/lookup/"
	batchPath    = "/v1/lookup:batch"
)

// Header values shared by every answer (never modified); those a lookup
// hit carries in both servers' forms (hitHeaders).
var (
	jsonType    = newHeaderValue("application/json")
	nosniff     = newHeaderValue("nosniff")
	isTrue      = newHeaderValue("true")
	problemType = []string{"application/problem+json"}
	retryAfter  = []string{"1"}
)

// The names of a lookup hit's headers, canonical for net/http's header map
// and for fasthttp's SetCanonical alike.
var (
	hdrContentType = newHeaderName("Content-Type")
	hdrNosniff     = newHeaderName("X-Content-Type-Options")
	hdrETag        = newHeaderName("Etag")
	hdrAge         = newHeaderName("Age")
	hdrRegion      = newHeaderName("Tcs-Region")
	hdrStale       = newHeaderName("Tcs-Stale")
)

// headerName is a header's canonical name in net/http's form (s) and
// fasthttp's (b), made once so that a hit converts nothing.
type headerName struct {
	s string
	b []byte
}

func newHeaderName(name string) headerName { return headerName{s: name, b: []byte(name)} }

// headerValue is a header's one value in net/http's form (s) and
// fasthttp's (b); neither is ever modified.
type headerValue struct {
	s []string
	b []byte
}

func newHeaderValue(v string) headerValue { return headerValue{s: []string{v}, b: []byte(v)} }

// headerSetter is where a lookup hit's headers go: net/http's header map
// (mapHeader, ServeHTTP) or fasthttp's response header (fastHeader,
// ServeFastHTTP). Each is a struct of its own shape, so that hitHeaders is
// compiled once for each and calls set directly.
type headerSetter interface {
	set(name *headerName, v *headerValue)
}

// mapHeader is an http.Header as a headerSetter.
type mapHeader struct{ h http.Header }

func (h mapHeader) set(name *headerName, v *headerValue) { h.h[name.s] = v.s }

// hitHeaders sets on h the headers of a lookup hit answering e with meta:
// the one list both ServeHTTP and ServeFastHTTP send.
func hitHeaders[H headerSetter](s *Server, h H, e *encoded, meta *client.Meta) {
	h.set(&hdrContentType, &jsonType)
	h.set(&hdrNosniff, &nosniff)
	h.set(&hdrETag, &e.etag)
	if meta.Region != "" {
		h.set(&hdrAge, ageValue(meta.Age))
		h.set(&hdrRegion, s.regionValue(meta.Region))
	}
	if meta.Stale {
		h.set(&hdrStale, &isTrue)
	}
}

// Problem is an RFC 9457 problem details document, in the catalog REST
// API's shape.
type Problem struct {
	Type     string              `json:"type"`
	Title    string              `json:"title"`
	Status   int                 `json:"status"`
	Detail   string              `json:"detail,omitempty"`
	Instance string              `json:"instance,omitempty"`
	Errors   []tenant.FieldError `json:"errors,omitempty"`
}

// Problem types beyond tenant's codes (the REST API's names where it has
// the same problem).
const (
	codeMalformed        tenant.Code = "malformed_request"
	codeTooLarge         tenant.Code = "request_too_large"
	codeUnsupportedMedia tenant.Code = "unsupported_media_type"
	codeRouteNotFound    tenant.Code = "route_not_found"
	codeMethodNotAllowed tenant.Code = "method_not_allowed"
	codeNotReached       tenant.Code = "version_not_reached"
	// Requests Serve's fasthttp could not read (Server.serveError).
	codeHeaderTooLarge tenant.Code = "request_header_too_large"
	codeTimeout        tenant.Code = "request_timeout"
)

var httpStatus = map[tenant.Code]int{
	tenant.NotFound:      http.StatusNotFound,
	tenant.Invalid:       http.StatusBadRequest,
	tenant.Unavailable:   http.StatusServiceUnavailable,
	tenant.Internal:      http.StatusInternalServerError,
	codeMalformed:        http.StatusBadRequest,
	codeTooLarge:         http.StatusRequestEntityTooLarge,
	codeUnsupportedMedia: http.StatusUnsupportedMediaType,
	codeRouteNotFound:    http.StatusNotFound,
	codeMethodNotAllowed: http.StatusMethodNotAllowed,
	codeNotReached:       http.StatusServiceUnavailable,
	codeHeaderTooLarge:   http.StatusRequestHeaderFieldsTooLarge,
	codeTimeout:          http.StatusRequestTimeout,
}

// newProblem makes the problem of code; its title is the status text.
func newProblem(code tenant.Code, detail string, fields ...tenant.FieldError) *Problem {
	status := httpStatus[code]
	if code == tenant.Invalid {
		code = codeMalformed // a bad hostname is a bad request here
	}
	return &Problem{Type: "urn:tcs:problem:" + string(code), Title: http.StatusText(status), Status: status, Detail: detail, Errors: fields}
}

// outcome classifies a lookup's error (nil: ok).
type outcome int

const (
	outcomeOK outcome = iota
	outcomeNotFound
	outcomeInvalid
	outcomeUnavailable
	outcomeNotReached
	outcomeCanceled
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "not_found", "invalid", "unavailable", "version_not_reached", "canceled", "error"}

func classify(err error) outcome {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, client.ErrNotFound):
		return outcomeNotFound
	case errors.Is(err, client.ErrInvalidHostname):
		return outcomeInvalid
	case errors.Is(err, client.ErrTooOld):
		return outcomeNotReached
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrClosed):
		return outcomeUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return outcomeCanceled
	}
	return outcomeError
}

// lookupProblem is the problem of a failed lookup of hostname (nil for
// outcomeCanceled: nobody reads it).
func (s *Server) lookupProblem(hostname string, err error) *Problem {
	switch classify(err) {
	case outcomeNotFound:
		return newProblem(tenant.NotFound, fmt.Sprintf("no live tenant owns hostname %q", hostname))
	case outcomeInvalid:
		reason := invalidReason(hostname)
		return newProblem(tenant.Invalid, fmt.Sprintf("invalid hostname %q: %s", hostname, reason), tenant.FieldError{Field: "hostname", Reason: reason})
	case outcomeUnavailable:
		s.log.Warn("lookup unavailable", "hostname", hostname, "err", err)
		return newProblem(tenant.Unavailable, "no TCS region answered and no cached answer was left to serve; retry later")
	case outcomeNotReached:
		return newProblem(codeNotReached, err.Error())
	case outcomeCanceled:
		return nil
	}
	s.log.Error("lookup failed", "hostname", hostname, "err", err)
	return newProblem(tenant.Internal, "internal error")
}

// invalidReason says why hostname, which the client refused, cannot be
// normalised (the client's error says only that it cannot).
func invalidReason(hostname string) string {
	if _, err := tenant.NormalizeHostname(hostname); err != nil {
		if fs := tenant.ErrorFields(err); len(fs) > 0 {
			return fs[0].Reason
		}
	}
	return "not a hostname"
}

// ServeHTTP serves the HTTP/JSON API under /v1/ and hands other paths to
// Config.Fallback.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, lookupPrefix):
		s.serveLookup(w, request{ctx: r.Context(), method: r.Method, hostname: path[len(lookupPrefix):], rawQuery: r.URL.RawQuery})
	case path == batchPath:
		if r.Method != http.MethodPost {
			s.methodNotAllowed(w, r.Method, path, "POST")
			return
		}
		s.serveBatch(w, r)
	case s.fallback != nil && !strings.HasPrefix(path, "/v1/"):
		s.fallback.ServeHTTP(w, r)
	default:
		s.writeProblem(w, path, newProblem(codeRouteNotFound, fmt.Sprintf("no route %s %s: the sidecar serves GET %s{hostname} and POST %s", r.Method, truncate(path, 256), lookupPrefix, batchPath)))
	}
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, method, path, allow string) {
	w.Header().Set("Allow", allow)
	s.writeProblem(w, path, newProblem(codeMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s: use %s", method, truncate(path, 256), allow)))
}

// request is what a lookup reads of an HTTP request, from net/http's or
// from fasthttp's (ServeFastHTTP).
type request struct {
	ctx      context.Context
	method   string
	hostname string // the path after lookupPrefix, not unescaped again
	rawQuery string
}

// path is the request's path, as net/http parsed it.
func (r *request) path() string { return lookupPrefix + r.hostname }

// serveLookup answers GET or HEAD /v1/lookup/{hostname} on w.
func (s *Server) serveLookup(w http.ResponseWriter, r request) {
	e, meta, start := s.lookup(&r, func() http.ResponseWriter { return w })
	if e == nil {
		return
	}
	hitHeaders(s, mapHeader{w.Header()}, e, &meta)
	w.WriteHeader(http.StatusOK)
	w.Write(e.json)
	s.m.http[opLookup][outcomeOK].observe(start)
}

// lookup is a GET or HEAD /v1/lookup/{hostname} up to its answer. A hit
// returns the document e and its meta, for the caller to answer (the
// headers of hitHeaders, then e.json) and observe from start; anything
// else lookup observes and answers itself, on the writer miss returns,
// and returns a nil e.
func (s *Server) lookup(r *request, miss func() http.ResponseWriter) (e *encoded, meta client.Meta, start time.Time) {
	if r.method != http.MethodGet && r.method != http.MethodHead {
		s.methodNotAllowed(miss(), r.method, r.path(), "GET, HEAD")
		return nil, meta, start
	}
	hostname := r.hostname
	start = time.Now()
	if hostname == "" {
		s.m.http[opLookup][outcomeInvalid].observe(start)
		s.writeProblem(miss(), r.path(), newProblem(codeMalformed, "no hostname: GET "+lookupPrefix+"{hostname}", tenant.FieldError{Field: "hostname", Reason: "empty"}))
		return nil, meta, start
	}
	var (
		t   *tenant.Tenant
		err error
	)
	if r.rawQuery == "" {
		t, meta, err = s.lk.LookupMeta(r.ctx, hostname)
	} else {
		var p *Problem
		t, p, err = s.lookupAtLeast(r.ctx, r.rawQuery, hostname)
		if p != nil {
			s.m.http[opLookup][outcomeInvalid].observe(start)
			s.writeProblem(miss(), r.path(), p)
			return nil, meta, start
		}
	}
	o := classify(err)
	if err == nil {
		if e, err = s.enc.of(t); err == nil {
			return e, meta, start
		}
		o = outcomeError
	}
	s.m.http[opLookup][o].observe(start)
	w := miss()
	if o == outcomeNotFound && meta.Stale {
		w.Header()["Tcs-Stale"] = isTrue.s
		w.Header()["Age"] = ageValue(meta.Age).s
	}
	s.writeProblem(w, r.path(), s.lookupProblem(hostname, err))
	return nil, meta, start
}

// lookupAtLeast is a lookup with ?min_version=V[&tenant_id=ID]; p is the
// problem with the query, if any.
func (s *Server) lookupAtLeast(ctx context.Context, rawQuery, hostname string) (*tenant.Tenant, *Problem, error) {
	q, _ := url.ParseQuery(rawQuery) // as url.URL.Query: what parses
	unknown, found := "", false
	for k := range q { // the least unknown key, so that the answer is always the same
		if k != "min_version" && k != "tenant_id" && (!found || k < unknown) {
			unknown, found = k, true
		}
	}
	if found {
		return nil, newProblem(codeMalformed, fmt.Sprintf("unknown query parameter %q: the lookup takes min_version and tenant_id", truncate(unknown, 64)), tenant.FieldError{Field: unknown, Reason: "unknown query parameter"}), nil
	}
	raw := q.Get("min_version")
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < 1 {
		return nil, newProblem(codeMalformed, fmt.Sprintf("min_version must be a positive integer (a version the catalog answered a write with), got %q", truncate(raw, 64)), tenant.FieldError{Field: "min_version", Reason: "not a positive integer"}), nil
	}
	if !q.Has("tenant_id") {
		t, err := s.lk.LookupAtLeast(ctx, hostname, v)
		return t, nil, err
	}
	id := q.Get("tenant_id")
	if err := tenant.ValidateID(id); err != nil {
		return nil, newProblem(codeMalformed, fmt.Sprintf("tenant_id %q is not a tenant id", truncate(id, 64)), tenant.FieldError{Field: "tenant_id", Reason: tenant.ErrorMessage(err)}), nil
	}
	t, err := s.lk.LookupTenantAtLeast(ctx, hostname, id, v)
	return t, nil, err
}

// regionValue returns the TCS-Region header value of region, the same
// value as long as the region does not change.
func (s *Server) regionValue(region string) *headerValue {
	if v := s.lastRegion.Load(); v != nil && v.s[0] == region {
		return v
	}
	v := newHeaderValue(region)
	s.lastRegion.Store(&v)
	return &v
}

// batchRequest is the body of POST /v1/lookup:batch.
type batchRequest struct {
	Hostnames []string `json:"hostnames"`
}

// batchResult is one hostname's answer in a batch: Tenant, or Error.
type batchResult struct {
	Hostname string          `json:"hostname"`
	Tenant   json.RawMessage `json:"tenant,omitempty"`
	// Region, AgeSeconds and Stale say where the answer came from, as the
	// headers of a single lookup do.
	Region     string   `json:"region,omitempty"`
	AgeSeconds *float64 `json:"age_seconds,omitempty"`
	Stale      bool     `json:"stale,omitempty"`
	Error      *Problem `json:"error,omitempty"`
}

type batchResponse struct {
	Results []batchResult `json:"results"`
}

func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o, p := s.batch(w, r)
	s.m.http[opBatch][o].observe(start)
	if p != nil {
		s.writeProblem(w, r.URL.Path, p)
	}
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request) (outcome, *Problem) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return outcomeInvalid, newProblem(codeUnsupportedMedia, fmt.Sprintf("the body must be application/json, got %q", truncate(ct, 64)))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBatchBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return outcomeInvalid, newProblem(codeTooLarge, fmt.Sprintf("the body is over %d bytes", MaxBatchBody))
		}
		return outcomeCanceled, nil
	}
	var req batchRequest
	if p := decodeStrict(body, &req); p != nil {
		return outcomeInvalid, p
	}
	switch n := len(req.Hostnames); {
	case req.Hostnames == nil:
		return outcomeInvalid, newProblem(codeMalformed, `the body must be {"hostnames":[...]}`, tenant.FieldError{Field: "hostnames", Reason: "required"})
	case n > MaxBatch:
		return outcomeInvalid, newProblem(codeMalformed, fmt.Sprintf("%d hostnames: at most %d in one batch", n, MaxBatch), tenant.FieldError{Field: "hostnames", Reason: fmt.Sprintf("at most %d", MaxBatch)})
	}
	results, err := s.lk.BatchLookup(r.Context(), req.Hostnames)
	if err != nil {
		return classify(err), s.lookupProblem("", err)
	}
	out := batchResponse{Results: make([]batchResult, len(results))}
	for i, res := range results {
		br := &out.Results[i]
		br.Hostname = res.Hostname
		br.Stale = res.Meta.Stale
		if res.Meta.Region != "" {
			br.Region = res.Meta.Region
			age := res.Meta.Age.Seconds()
			br.AgeSeconds = &age
		}
		err := res.Err
		if err == nil {
			var e *encoded
			if e, err = s.enc.of(res.Tenant); err == nil {
				br.Tenant = e.json
				continue
			}
		}
		br.Region, br.AgeSeconds = "", nil
		if res.Meta.Stale && classify(err) == outcomeNotFound {
			age := res.Meta.Age.Seconds()
			br.AgeSeconds = &age
		}
		if br.Error = s.lookupProblem(res.Hostname, err); br.Error == nil {
			br.Error = newProblem(tenant.Unavailable, "the lookup was cancelled")
		}
	}
	writeJSON(w, http.StatusOK, jsonType.s, out)
	return outcomeOK, nil
}

// decodeStrict decodes body into v, refusing unknown keys, trailing data
// and wrong types, with a problem naming the key.
func decodeStrict(body []byte, v any) *Problem {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return newProblem(codeMalformed, fmt.Sprintf("%s: want a JSON %s, got %s", te.Field, te.Type, te.Value), tenant.FieldError{Field: te.Field, Reason: "wrong type"})
		}
		return newProblem(codeMalformed, "malformed JSON: "+err.Error())
	}
	if dec.More() {
		return newProblem(codeMalformed, "malformed JSON: more than one document")
	}
	return nil
}

// writeProblem writes p about the request for path; a nil p (the caller
// went away) writes a bare 499, as the REST API does.
func (s *Server) writeProblem(w http.ResponseWriter, path string, p *Problem) {
	if p == nil {
		w.WriteHeader(499)
		return
	}
	p.Instance = truncate(path, 256)
	if p.Status == http.StatusServiceUnavailable {
		w.Header()["Retry-After"] = retryAfter
	}
	writeJSON(w, p.Status, problemType, p)
}

func writeJSON(w http.ResponseWriter, status int, contentType []string, v any) {
	h := w.Header()
	h["Content-Type"] = contentType
	h["X-Content-Type-Options"] = nosniff.s
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
