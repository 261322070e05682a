package boltreplica

import (
	"encoding/json"
	"testing"

	"github.com/tcs-dev/tcs/tcs"
)

// FuzzParseHost checks the hand parser of hosts values against
// encoding/json: whatever it accepts, json decodes to the same record, and
// whatever PutHost writes, it accepts.
func FuzzParseHost(f *testing.F) {
	for _, rec := range []tcs.HostRecord{{TenantID: "acme", ClaimVersion: 1}, {ClaimVersion: 7}, {TenantID: "t-9", ClaimVersion: 123456789012345678}} {
		raw, err := json.Marshal(rec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	for _, s := range []string{
		`{"tenant_id":"a\"b","claim_version":1}`,
		`{"tenant_id":"a","claim_version":-1}`,
		`{"tenant_id":"a","claim_version":1e3}`,
		`{"tenant_id":"a","claim_version":9999999999999999999}`,
		`{"claim_version":1,"tenant_id":"a"}`,
		`{"tenant_id":"a","claim_version":}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		got, ok := parseHost(v)
		if !ok {
			return
		}
		var want tcs.HostRecord
		if err := json.Unmarshal(v, &want); err != nil {
			t.Fatalf("parseHost(%q) = %+v, but json says %v", v, got, err)
		}
		if got != want {
			t.Fatalf("parseHost(%q) = %+v, json decodes %+v", v, got, want)
		}
		raw, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if again, ok := parseHost(raw); !ok || again != got {
			t.Fatalf("parseHost(Marshal(%+v)) = %+v, %t", got, again, ok)
		}
	})
}

// TestEncodeHost: encodeHost writes what json.Marshal does.
func TestEncodeHost(t *testing.T) {
	t.Parallel()
	for _, rec := range []tcs.HostRecord{{TenantID: "acme", ClaimVersion: 1}, {ClaimVersion: 7}, {TenantID: "t-9", ClaimVersion: 123456789012345678},
		{TenantID: "Odd\"<id>", ClaimVersion: 2}, {TenantID: "a", ClaimVersion: -3}} {
		want, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeHost(rec)
		if err != nil || string(got) != string(want) {
			t.Errorf("encodeHost(%+v) = %s, %v; want %s", rec, got, err, want)
		}
	}
}
