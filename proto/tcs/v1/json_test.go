package tcsv1_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// TestTenantJSONRoundTripProperty: a wire tenant goes to the one JSON form
// and back without loss, and its JSON is what the REST API's writer makes
// of the domain tenant.
func TestTenantJSONRoundTripProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		p := tcsv1.TenantToProto(genTenant().Draw(rt, "tenant"))
		b, err := tcsv1.TenantJSON(p)
		if err != nil {
			rt.Fatalf("TenantJSON: %v", err)
		}
		back, err := tcsv1.TenantFromJSON(b)
		if err != nil {
			rt.Fatalf("TenantFromJSON(%s): %v", b, err)
		}
		if d := cmp.Diff(p, back, protocmp.Transform()); d != "" {
			rt.Fatalf("proto → JSON → proto (-want +got):\n%s\nJSON: %s", d, b)
		}
		d, err := tcsv1.TenantFromProto(p)
		if err != nil {
			rt.Fatal(err)
		}
		var rest bytes.Buffer
		enc := json.NewEncoder(&rest)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			rt.Fatal(err)
		}
		if !bytes.Equal(rest.Bytes(), b) {
			rt.Fatalf("TenantJSON = %s, the REST writer makes %s", b, rest.Bytes())
		}
	})
}

// TestTenantJSONShape pins the one JSON form's spelling: what protojson
// would render differently (enum prefixes, int64 as strings, camelCase) is
// rendered as the REST API does.
func TestTenantJSONShape(t *testing.T) {
	t.Parallel()
	p := tcsv1.TenantToProto(&tenant.Tenant{
		ID: "acme", Hostnames: []string{"acme.example.com"}, Status: tenant.StatusActive,
		Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: 40}},
		Database: &tenant.Database{Engine: "postgres", Host: "db<1>", Port: 5432, Name: "acme", SecretRef: "arn:x"},
		Version:  3, UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), UpdatedBy: "sre",
	})
	b, err := tcsv1.TenantJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"acme","hostnames":["acme.example.com"],"status":"ACTIVE","products":{"jira":{"state":"ACTIVE","users":40}},` +
		`"database":{"engine":"postgres","host":"db<1>","port":5432,"name":"acme","secret_ref":"arn:x"},"version":3,` +
		`"updated_at":"2026-01-02T03:04:05.0000006Z","updated_by":"sre"}` + "\n"
	if string(b) != want {
		t.Errorf("TenantJSON =\n%s\nwant\n%s", b, want)
	}
	if b, err := tcsv1.MarshalTenantJSON(nil); err != nil || string(b) != "null\n" {
		t.Errorf("MarshalTenantJSON(nil) = %q, %v", b, err)
	}
}

func TestTenantFromJSONRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"unknown key", `{"id":"a","Colour":"red"}`, `unknown field "Colour"`},
		{"wrong type", `{"id":"a","version":"3"}`, "version: want a JSON int64, got string"},
		{"protojson enum", `{"id":"a","status":"TENANT_STATUS_ACTIVE"}`, `status: unknown tenant status "TENANT_STATUS_ACTIVE"`},
		{"product state", `{"id":"a","products":{"jira":{"state":"ON","users":1}}}`, `products["jira"].state: unknown product state "ON"`},
		{"two documents", `{"id":"a"} {"id":"b"}`, "more than one document"},
		{"not JSON", `{`, "tenant JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tcsv1.TenantFromJSON([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) || tenant.ErrorCode(err) != tenant.Invalid {
				t.Errorf("TenantFromJSON(%s) = %v (code %s), want an invalid error with %q", tc.in, err, tenant.ErrorCode(err), tc.want)
			}
		})
	}
}
