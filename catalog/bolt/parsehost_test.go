package bolt

import (
	"encoding/json"
	"testing"
)

// FuzzParseHostname holds parseHostname to encoding/json's answers: where
// it accepts a value, json decodes the same record from it.
func FuzzParseHostname(f *testing.F) {
	for _, rec := range []hostnameRecord{{"acme", 1}, {"", 7}, {"t-0001", 123456789012345678}, {"a", 0}} {
		raw, _ := json.Marshal(rec)
		f.Add(raw)
	}
	for _, s := range []string{`{"tenant_id":"Acme","claim_version":1}`, `{"tenant_id":"a\"b","claim_version":1}`, `{"tenant_id":"a","claim_version":-1}`,
		`{"tenant_id":"a","claim_version":01}`, `{"tenant_id":"a","claim_version":1234567890123456789}`, `{"tenant_id":"a","claim_version":1} `,
		`{"claim_version":1,"tenant_id":"a"}`, `{"tenant_id":"a","claim_version":}`, `{"tenant_id":"a"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		got, ok := parseHostname(v)
		if !ok {
			return
		}
		var want hostnameRecord
		if err := json.Unmarshal(v, &want); err != nil {
			t.Fatalf("parseHostname(%q) = %+v, but json rejects it: %v", v, got, err)
		}
		if got != want {
			t.Fatalf("parseHostname(%q) = %+v, json says %+v", v, got, want)
		}
	})
}

// TestParseHostnameTakesMarshalled: the form putJSON writes is parsed by
// hand, not left to encoding/json.
func TestParseHostnameTakesMarshalled(t *testing.T) {
	t.Parallel()
	for _, rec := range []hostnameRecord{{"acme", 1}, {"", 7}, {"t-0001", 42}} {
		raw, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := parseHostname(raw); !ok || got != rec {
			t.Errorf("parseHostname(%s) = %+v, %v; want %+v", raw, got, ok, rec)
		}
	}
}
