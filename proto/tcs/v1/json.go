package tcsv1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// MarshalTenantJSON returns t in TCS's one JSON form: exactly the body the
// catalog REST API serves for it (GET /v1/tenants/{id}), final newline
// included. nil gives "null\n".
func MarshalTenantJSON(t *tenant.Tenant) ([]byte, error) {
	var buf bytes.Buffer
	// The REST API's writer: no HTML escaping (a hostname or label with
	// "<" or "&" stays readable), one document per line.
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("encode tenant %s as JSON: %w", tenantID(t), err)
	}
	return buf.Bytes(), nil
}

// TenantJSON returns the wire tenant p in TCS's one JSON form (see
// MarshalTenantJSON): the document the REST API and tcs-sidecar serve for
// the same tenant, byte for byte. It fails as TenantFromProto does, on an
// enum value or a timestamp this build cannot convert.
func TenantJSON(p *Tenant) ([]byte, error) {
	t, err := TenantFromProto(p)
	if err != nil {
		return nil, err
	}
	return MarshalTenantJSON(t)
}

// TenantFromJSON parses a tenant in TCS's one JSON form into its wire
// form; TenantJSON(TenantFromJSON(b)) gives b back for any document the
// REST API serves. It fails with a tenant.Invalid error naming the field
// at fault for a key the form does not have, a value of the wrong type, or
// a status, product state or move step that is not one of the domain's (the wire
// could not carry it). It does not otherwise validate the tenant.
func TenantFromJSON(b []byte) (*Tenant, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var t tenant.Tenant
	if err := dec.Decode(&t); err != nil {
		return nil, jsonError(err)
	}
	if dec.More() {
		return nil, tenant.Errorf(tenant.Invalid, "tenant JSON: more than one document")
	}
	var fields []tenant.FieldError
	if t.Status != "" && statusToProto(t.Status) == TenantStatus_TENANT_STATUS_UNSPECIFIED {
		fields = append(fields, tenant.FieldError{Field: "status", Reason: fmt.Sprintf("unknown tenant status %q", t.Status)})
	}
	for k, v := range t.Products {
		if v.State != "" && productStateToProto(v.State) == ProductState_PRODUCT_STATE_UNSPECIFIED {
			fields = append(fields, tenant.FieldError{Field: fmt.Sprintf("products[%q].state", k), Reason: fmt.Sprintf("unknown product state %q", v.State)})
		}
	}
	if m := t.Migration; m != nil && m.Step != "" && moveStepToProto(m.Step) == MoveStep_MOVE_STEP_UNSPECIFIED {
		fields = append(fields, tenant.FieldError{Field: "migration.step", Reason: fmt.Sprintf("unknown move step %q", m.Step)})
	}
	if err := tenant.FieldErrors(fields); err != nil {
		return nil, err
	}
	return TenantToProto(&t), nil
}

// jsonError turns a decoding error into a tenant.Invalid error naming the
// field when encoding/json says which.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return tenant.FieldErrors([]tenant.FieldError{{Field: te.Field, Reason: fmt.Sprintf("want a JSON %s, got %s", te.Type, te.Value)}})
	}
	return tenant.Errorf(tenant.Invalid, "tenant JSON: %v", err)
}

func tenantID(t *tenant.Tenant) string {
	if t == nil {
		return "<nil>"
	}
	return t.ID
}
