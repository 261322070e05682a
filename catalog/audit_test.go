package catalog_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

func TestCanonicalAudit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want, err string
	}{
		{name: "SortsAndDropsTopHash", in: `{ "b": 1, "a": {"z": [true, false, null], "hash": "kept below the top"}, "hash": "dropped" }`,
			want: `{"a":{"hash":"kept below the top","z":[true,false,null]},"b":1}`},
		// RFC 8785 sorts by UTF-16 code units: U+FB33 (one unit) after U+1F600 (a surrogate pair, 0xD83D…).
		{name: "UTF16Order", in: `{"\ufb33":1,"\ud83d\ude00":2,"a":3}`, want: "{\"a\":3,\"\U0001F600\":2,\"\ufb33\":1}"},
		{name: "Escapes", in: `{"s":"\u003c\u0026\u003e \u2028 \"\\ \b\f\n\r\t \u0001 \u00e9"}`, want: "{\"s\":\"<&> \u2028 \\\"\\\\ \\b\\f\\n\\r\\t \\u0001 \u00e9\"}"},
		{name: "Integers", in: `{"n":[0,-1,9007199254740993]}`, want: `{"n":[0,-1,9007199254740993]}`},
		{name: "Fraction", in: `{"n":1.5}`, err: "not an integer"},
		{name: "Exponent", in: `{"n":1e3}`, err: "not an integer"},
		{name: "MinusZero", in: `{"n":-0}`, err: "not an integer"},
		{name: "RepeatedMember", in: `{"a":1,"a":2}`, err: `"a" repeated`},
		{name: "Trailing", in: `{"a":1} {}`, err: "after the record"},
		{name: "Malformed", in: `{"a":`, err: "canonical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := catalog.CanonicalAudit([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("CanonicalAudit(%s) = %s, %v; want an error saying %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("CanonicalAudit(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

// A sealed record's hash is the SHA-256 of the documented canonical form,
// written out here by hand, so that the encoding cannot drift unnoticed.
func TestSealAuditHashesTheDocumentedForm(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	rec := catalog.AuditRecord{TenantID: "acme", Version: 2, Action: catalog.ActionUpdate, Actor: "alice <ops>", At: at,
		After: &tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}, Status: tenant.StatusActive, Version: 2, UpdatedAt: at}}
	raw, err := catalog.SealAudit(&rec, "00ff")
	if err != nil {
		t.Fatal(err)
	}
	canonical := `{"action":"update","actor":"alice <ops>","after":{"hostnames":["acme.example.com"],"id":"acme","status":"ACTIVE",` +
		`"updated_at":"2026-12-06T09:00:00Z","version":2},"at":"2026-12-06T09:00:00Z","prev_hash":"00ff","tenant_id":"acme","version":2}`
	sum := sha256.Sum256([]byte(canonical))
	if want := hex.EncodeToString(sum[:]); rec.Hash != want {
		t.Fatalf("hash %s, want SHA-256 of %s = %s", rec.Hash, canonical, want)
	}
	var back catalog.AuditRecord
	if err := json.Unmarshal(raw, &back); err != nil || back.Hash != rec.Hash || back.PrevHash != "00ff" || string(back.Raw) != string(raw) {
		t.Fatalf("sealed JSON %s decodes to hash %q prev %q (%v)", raw, back.Hash, back.PrevHash, err)
	}
	if rep := catalog.VerifyChain("acme", []catalog.AuditRecord{back}, 0); len(rep.Problems) == 0 {
		t.Fatalf("a chain starting at version 2 with a prev_hash passed: %+v", rep)
	}
}
