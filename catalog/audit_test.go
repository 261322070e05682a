package catalog_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

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

// BenchmarkSealAudit is what chaining adds to every write: encoding the
// record, canonicalising it and hashing it.
func BenchmarkSealAudit(b *testing.B) {
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	doc := &tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com", "www.acme.example.com"}, Status: tenant.StatusActive,
		Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: 25, Edition: "premium"}},
		Database: &tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: "acme", SecretRef: "arn:aws:secretsmanager:us-east-1:123456789012:secret:acme"},
		Labels:   map[string]string{"tier": "gold"}, Version: 7, UpdatedAt: at}
	prev := strings.Repeat("ab", 32)
	b.ReportAllocs()
	for b.Loop() {
		rec := catalog.AuditRecord{TenantID: "acme", Version: 7, Action: catalog.ActionUpdate, Actor: "alice", At: at, Before: doc, After: doc}
		if _, err := catalog.SealAudit(&rec, prev); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCanonicalAudit checks the hand-written canonicaliser against a
// straightforward one built on encoding/json's tokenizer: on any input both
// accept, they give the same bytes, and a record's canonical form is
// canonical (canonicalising it again changes nothing).
func FuzzCanonicalAudit(f *testing.F) {
	for _, seed := range []string{
		`{"b":1,"a":{"z":[true,false,null],"hash":"x"},"hash":"y"}`,
		`{"s":"\u003c\u0026\u003e \u2028 \"\\ \b\f\n\r\t \u0001 é","n":[0,-12,3]}`,
		`{"\ufb33":1,"\ud83d\ude00":2,"a":3,"":{}}`,
		`{"a":[],"b":[[]],"c":{"d":{"e":"f"}}}`,
		`{"a":1.5}`, `{"a":1,"a":2}`, `[1,2]`, `"x"`, `{"a":"\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := catalog.CanonicalAudit(in)
		want, refErr := referenceCanonical(in)
		if (err == nil) != (refErr == nil) {
			// The reference tokenizer accepts what json.Valid does; the
			// canonicaliser may refuse more only for nesting depth.
			if !(err != nil && strings.Contains(err.Error(), "nested deeper")) {
				t.Fatalf("CanonicalAudit(%q) = %q, %v; reference %q, %v", in, got, err, want, refErr)
			}
			return
		}
		if err != nil {
			return
		}
		if string(got) != string(want) {
			t.Fatalf("CanonicalAudit(%q) = %s; reference %s", in, got, want)
		}
		again, err := catalog.CanonicalAudit(got)
		if err != nil || string(again) != string(got) {
			t.Fatalf("canonical form %s is not stable: %s, %v", got, again, err)
		}
	})
}

// referenceCanonical is RFC 8785 for integer-only JSON on encoding/json's
// tokenizer, the top-level "hash" member dropped.
func referenceCanonical(raw []byte) ([]byte, error) {
	if !json.Valid(raw) || !utf8.Valid(raw) { // encoding/json would replace bad UTF-8; RFC 8785 refuses it
		return nil, errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out bytes.Buffer
	if err := refValue(dec, &out, true); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func refValue(dec *json.Decoder, out *bytes.Buffer, top bool) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := refValue(dec, out, false); err != nil {
					return err
				}
			}
			out.WriteByte(']')
			_, err := dec.Token()
			return err
		}
		type member struct {
			key   []uint16
			name  string
			value []byte
		}
		var ms []member
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			var val bytes.Buffer
			if err := refValue(dec, &val, false); err != nil {
				return err
			}
			if name := k.(string); !(top && name == "hash") {
				ms = append(ms, member{utf16.Encode([]rune(name)), name, val.Bytes()})
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		slices.SortFunc(ms, func(a, b member) int { return slices.Compare(a.key, b.key) })
		out.WriteByte('{')
		for i, m := range ms {
			if i > 0 {
				if ms[i-1].name == m.name {
					return errors.New("repeated member")
				}
				out.WriteByte(',')
			}
			refString(out, m.name)
			out.WriteByte(':')
			out.Write(m.value)
		}
		out.WriteByte('}')
	case string:
		refString(out, v)
	case json.Number:
		s := string(v)
		if _, err := strconv.ParseInt(s, 10, 64); err != nil && !bigInteger(s) || s == "-0" || strings.HasPrefix(strings.TrimPrefix(s, "-"), "0") && len(strings.TrimPrefix(s, "-")) > 1 {
			return errors.New("not an integer")
		}
		out.WriteString(s)
	case bool:
		out.WriteString(strconv.FormatBool(v))
	case nil:
		out.WriteString("null")
	}
	return nil
}

func bigInteger(s string) bool {
	d := strings.TrimPrefix(s, "-")
	return d != "" && strings.Trim(d, "0123456789") == ""
}

func refString(out *bytes.Buffer, s string) {
	out.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			out.WriteByte('\\')
			out.WriteRune(r)
		case r == '\b':
			out.WriteString(`\b`)
		case r == '\f':
			out.WriteString(`\f`)
		case r == '\n':
			out.WriteString(`\n`)
		case r == '\r':
			out.WriteString(`\r`)
		case r == '\t':
			out.WriteString(`\t`)
		case r < 0x20:
			fmt.Fprintf(out, `\u%04x`, r)
		default:
			out.WriteRune(r)
		}
	}
	out.WriteByte('"')
}
