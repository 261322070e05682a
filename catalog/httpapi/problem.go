package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/requestid"
)

// Problem is an RFC 9457 problem details document. Every rejection the API
// makes is one, naming the fields at fault in Errors.
type Problem struct {
	Type     string              `json:"type"`
	Title    string              `json:"title"`
	Status   int                 `json:"status"`
	Detail   string              `json:"detail,omitempty"`
	Instance string              `json:"instance,omitempty"`
	Errors   []tenant.FieldError `json:"errors,omitempty"`
	// Operation names the store call that timed out (store_timeout and
	// write_outcome_unknown answers).
	Operation string `json:"operation,omitempty"`
}

// Problem types beyond the domain error codes, for failures of the HTTP
// exchange itself.
const (
	codeMalformed          tenant.Code = "malformed_request"
	codeTooLarge           tenant.Code = "request_too_large"
	codeUnsupportedMedia   tenant.Code = "unsupported_media_type"
	codePreconditionNeeded tenant.Code = "precondition_required"
	codeUnauthenticated    tenant.Code = "unauthenticated"
	codeForbidden          tenant.Code = "forbidden"
	codeRouteNotFound      tenant.Code = "route_not_found"
	codeMethodNotAllowed   tenant.Code = "method_not_allowed"
	// codeStoreTimeout: the source of truth did not answer in time; nothing
	// was written (a read, or a write that had not started).
	codeStoreTimeout tenant.Code = "store_timeout"
	// codeOutcomeUnknown: a write did not answer in time after it reached
	// the source of truth, so it may or may not have committed.
	codeOutcomeUnknown tenant.Code = "write_outcome_unknown"
)

// problemTitle overrides the status text as the title of some problems.
var problemTitle = map[tenant.Code]string{
	codeOutcomeUnknown: "Write outcome unknown",
	codeStoreTimeout:   "Source of truth timed out",
}

// httpStatus maps every error code to its HTTP status: the one table where
// domain errors meet HTTP.
var httpStatus = map[tenant.Code]int{
	tenant.Invalid:         http.StatusUnprocessableEntity,
	tenant.NotFound:        http.StatusNotFound,
	tenant.AlreadyExists:   http.StatusConflict,
	tenant.HostnameTaken:   http.StatusConflict,
	tenant.VersionMismatch: http.StatusPreconditionFailed,
	tenant.MoveConflict:    http.StatusConflict,
	tenant.Unavailable:     http.StatusServiceUnavailable,
	tenant.Internal:        http.StatusInternalServerError,
	codeMalformed:          http.StatusBadRequest,
	codeTooLarge:           http.StatusRequestEntityTooLarge,
	codeUnsupportedMedia:   http.StatusUnsupportedMediaType,
	codePreconditionNeeded: http.StatusPreconditionRequired,
	codeUnauthenticated:    http.StatusUnauthorized,
	codeForbidden:          http.StatusForbidden,
	codeRouteNotFound:      http.StatusNotFound,
	codeMethodNotAllowed:   http.StatusMethodNotAllowed,
	codeStoreTimeout:       http.StatusServiceUnavailable,
	codeOutcomeUnknown:     http.StatusServiceUnavailable,
	codeRateLimited:        http.StatusTooManyRequests,
	codeNotConfigured:      http.StatusNotImplemented,
	codeNodesUnavailable:   http.StatusServiceUnavailable,
}

// maxProblemErrors bounds the field errors one answer lists, so that a
// body of thousands of bad labels does not get an answer larger than
// itself.
const maxProblemErrors = 100

// requestError is an error of the HTTP exchange (bad JSON, missing header…),
// as opposed to a domain error. It carries the same parts as tenant.Error.
func requestError(code tenant.Code, field, reason string) error {
	e := &tenant.Error{Code: code, Message: reason}
	if field != "" {
		e.Fields = []tenant.FieldError{{Field: field, Reason: reason}}
	}
	return e
}

// writeError turns err into a problem response. Internal errors are logged
// in full and shown only as "internal error". A store call that got no
// answer (timed out, or lost its connection) is a 503:
// "write_outcome_unknown" when a write had reached the store (it may have
// committed; the detail says how to find out), "store_timeout" (or
// "unavailable") otherwise. Every 503 carries Retry-After.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody reads this answer.
		w.WriteHeader(499)
		return
	}
	code := tenant.ErrorCode(err)
	detail := tenant.ErrorMessage(err)
	var op string
	var none *noAnswer
	var limited *rateLimited
	switch {
	case errors.As(err, &limited):
		code, detail = codeRateLimited, limited.Error()
		w.Header().Set("Retry-After", retryAfterSeconds(limited.retry))
		s.rateLimited.WithLabelValues(limited.by).Inc()
		if n, ok := s.limitLog.Allow(time.Now()); ok {
			s.log.WarnContext(r.Context(), "requests rate limited", "request_id", requestid.FromContext(r.Context()), "by", limited.by, "method", methodLabel(r.Method),
				"path", truncate(r.URL.Path, 256), "limited_since_last_warning", n)
		}
	case errors.As(err, &none):
		op, code = none.op.what, codeStoreTimeout
		what := fmt.Sprintf("the source of truth did not answer %s within %v", op, none.limit)
		switch {
		case none.lost:
			code = tenant.Unavailable
			what = fmt.Sprintf("the connection to the source of truth failed during %s", op)
		case none.err != nil:
			// The store's backend gave up first (an AWS SDK deadline).
			what = fmt.Sprintf("the source of truth timed out on %s", op)
		}
		detail = what + "; retry later"
		switch {
		case none.op.write && none.started:
			code = codeOutcomeUnknown
			detail = what + ": the write may or may not have committed. " +
				"Before retrying, wait Retry-After seconds and check: " + none.op.check
		case none.op.write:
			detail = fmt.Sprintf("the source of truth was too busy to start %s within %v: nothing was written; retry later", op, none.limit)
		}
	case errors.Is(err, context.DeadlineExceeded):
		code = tenant.Unavailable
	}
	status, ok := httpStatus[code]
	if !ok {
		code, status = tenant.Internal, http.StatusInternalServerError
	}
	title := problemTitle[code]
	if title == "" {
		title = http.StatusText(status)
	}
	p := Problem{
		Type:      "urn:tcs:problem:" + string(code),
		Title:     title,
		Status:    status,
		Detail:    detail,
		Instance:  truncate(r.URL.Path, 256),
		Errors:    tenant.ErrorFields(err),
		Operation: op,
	}
	if n := len(p.Errors); n > maxProblemErrors {
		p.Errors = append(p.Errors[:maxProblemErrors:maxProblemErrors], tenant.FieldError{Field: "", Reason: fmt.Sprintf("and %d more errors", n-maxProblemErrors)})
	}
	if status == http.StatusInternalServerError || status == http.StatusServiceUnavailable {
		// A store outage fails every request: log the first of each
		// second in full, and how many were held back.
		if n, ok := s.failLog.Allow(time.Now()); ok {
			s.log.ErrorContext(r.Context(), "request failed", "request_id", requestid.FromContext(r.Context()), "method", methodLabel(r.Method), "path", truncate(r.URL.Path, 256), "problem", code, "err", err, "failed_since_last_logged", n)
		}
		if code == tenant.Unavailable {
			p.Detail = "the source of truth is unavailable; retry later"
		}
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", s.retryAfter)
	}
	if code == codeUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tcs-catalog"`)
	}
	writeJSON(w, status, "application/problem+json", p)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
