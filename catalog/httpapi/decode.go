package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// readBody reads the whole body, at most s.maxBody bytes, after checking that
// it is JSON. Content types allowed beside application/json are listed in
// extra (PATCH takes application/merge-patch+json).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, extra ...string) ([]byte, error) {
	return s.readBodyLimit(w, r, s.maxBody, extra...)
}

// readBodyLimit is readBody with its own limit on the body's size.
func (s *Server) readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64, extra ...string) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		ok := err == nil && mt == "application/json"
		for _, e := range extra {
			ok = ok || (err == nil && mt == e)
		}
		if !ok {
			want := strings.Join(append([]string{"application/json"}, extra...), " or ")
			return nil, requestError(codeUnsupportedMedia, "Content-Type", fmt.Sprintf("content type %q is not accepted; send %s", ct, want))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, requestError(codeTooLarge, "", fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
		}
		return nil, requestError(codeMalformed, "", "reading request body: "+err.Error())
	}
	return body, nil
}

// decodeStrict decodes exactly one JSON value from body into v, rejecting
// unknown fields, keys that match a field only in another case, duplicate
// keys and deep nesting (checkJSON), and turns every failure into an error
// naming the field.
func decodeStrict(body []byte, v any) error {
	return decodeStrictAs(body, v, reflect.TypeOf(v))
}

// decodeStrictAs is decodeStrict checking body's keys against schema
// rather than v's type: a merge patch decodes into a map but must name the
// fields of a tenant document.
func decodeStrictAs(body []byte, v any, schema reflect.Type) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return requestError(codeMalformed, "", "request body is empty; send a JSON object")
	}
	if err := checkJSON(body, schema); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return requestError(codeMalformed, "", "request body has data after the JSON value")
	}
	return nil
}

// jsonError classifies an encoding/json error.
func jsonError(err error) error {
	var (
		syntax    *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		domainErr *tenant.Error
	)
	switch {
	case errors.As(err, &domainErr):
		// Raised by a type's own UnmarshalJSON (database rejects secrets and
		// unknown keys there, since DisallowUnknownFields does not reach it).
		return err
	case errors.As(err, &syntax):
		return requestError(codeMalformed, "", fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, syntax.Error()))
	case errors.As(err, &typeErr):
		// Fields of the embedded document are reported as "Tenant.<field>".
		field := strings.TrimPrefix(typeErr.Field, "Tenant.")
		if field == "" {
			return requestError(codeMalformed, "", fmt.Sprintf("request body must be a JSON object, got %s", typeErr.Value))
		}
		return requestError(codeMalformed, field, fmt.Sprintf("must be %s, got %s", jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return requestError(codeMalformed, "", "malformed JSON: unexpected end of body")
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		field, _ := strconv.Unquote(rest)
		return requestError(codeMalformed, field, "unknown field")
	}
	return requestError(codeMalformed, "", "malformed JSON: "+strings.TrimPrefix(msg, "json: "))
}

func jsonTypeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "true or false"
	case kind == "map", kind == "struct", kind == "ptr":
		return "an object"
	case kind == "slice", kind == "array":
		return "an array"
	}
	return "of type " + kind
}

// decodeTenant reads a tenant document from the request body.
func (s *Server) decodeTenant(w http.ResponseWriter, r *http.Request) (*tenant.Tenant, error) {
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, err
	}
	return decodeTenantInput(body)
}

// tenantInput is a tenant document as a client sends it. Its database is
// decoded by tenant.ParseDatabase, which rejects secrets and unknown keys:
// DisallowUnknownFields would not name the key's path, nor say that TCS
// never stores secrets.
type tenantInput struct {
	tenant.Tenant
	Database *databaseInput `json:"database"`
}

type databaseInput tenant.Database

func (d *databaseInput) UnmarshalJSON(b []byte) error {
	db, err := tenant.ParseDatabase(b)
	if err != nil {
		fields := tenant.ErrorFields(err)
		for _, f := range fields {
			if f.Reason != tenant.ReasonUnknownField {
				return err // a secret-like key: a rule, not a syntax error
			}
		}
		return &tenant.Error{Code: codeMalformed, Message: "unknown field", Fields: fields}
	}
	if db != nil {
		*d = databaseInput(*db)
	}
	return nil
}

// decodeTenantInput strictly decodes a client's tenant document.
func decodeTenantInput(body []byte) (*tenant.Tenant, error) {
	var in tenantInput
	if err := decodeStrict(body, &in); err != nil {
		return nil, err
	}
	t := in.Tenant
	t.Database = (*tenant.Database)(in.Database)
	return &t, nil
}

// ifMatch parses the If-Match header: a quoted version such as "3" (the
// ETag this API sends). ok is false when the header is absent.
func ifMatch(r *http.Request) (version int64, ok bool, err error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, true, requestError(codeMalformed, "If-Match", fmt.Sprintf("If-Match %s is not an ETag of this API; send the ETag you read, such as \"3\"", h))
	}
	return v, true, nil
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// mergePatch applies an RFC 7396 JSON merge patch to target.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}
