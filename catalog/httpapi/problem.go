package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tcs-dev/tcs/catalog/tenant"
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
)

// httpStatus maps every error code to its HTTP status: the one table where
// domain errors meet HTTP.
var httpStatus = map[tenant.Code]int{
	tenant.Invalid:         http.StatusUnprocessableEntity,
	tenant.NotFound:        http.StatusNotFound,
	tenant.AlreadyExists:   http.StatusConflict,
	tenant.HostnameTaken:   http.StatusConflict,
	tenant.VersionMismatch: http.StatusPreconditionFailed,
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
}

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
// in full and shown only as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody reads this answer.
		w.WriteHeader(499)
		return
	}
	code := tenant.ErrorCode(err)
	if errors.Is(err, context.DeadlineExceeded) {
		code = tenant.Unavailable
	}
	status, ok := httpStatus[code]
	if !ok {
		code, status = tenant.Internal, http.StatusInternalServerError
	}
	p := Problem{
		Type:     "urn:tcs:problem:" + string(code),
		Title:    http.StatusText(status),
		Status:   status,
		Detail:   tenant.ErrorMessage(err),
		Instance: r.URL.Path,
		Errors:   tenant.ErrorFields(err),
	}
	if code == tenant.Internal || code == tenant.Unavailable {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		if code == tenant.Unavailable {
			p.Detail = "the source of truth is unavailable; retry later"
		}
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
