package tenant

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzNormalizeHostname checks the properties every caller relies on: no
// panic, and an accepted hostname is canonical — a fixed point, short enough
// for DNS, and plain lower-case ASCII — and is also left alone by the IDNA
// profile itself, which proves the ASCII fast path agrees with it.
//
// The seed corpus is in testdata/fuzz/FuzzNormalizeHostname.
func FuzzNormalizeHostname(f *testing.F) {
	for _, s := range []string{
		"example.com", "Example.COM.", "example.com:8080", "bücher.de", "xn--bcher-kva.de",
		"ｅｘａｍｐｌｅ．ｃｏｍ", "192.0.2.1", "[::1]:80", "a_b.c", "*.example.com", "xn--", "xn--a.b",
		"ab--cd.com", "a.b..", "\u00ad.com", "مثال.إختبار", "example.com。", strings.Repeat("a", 64) + ".com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizeHostname(raw)
		if err != nil {
			if got != "" {
				t.Errorf("NormalizeHostname(%q) = %q with error %v; want \"\"", raw, got, err)
			}
			var fields []FieldError = ErrorFields(err)
			if ErrorCode(err) != Invalid || len(fields) != 1 || fields[0].Field != "hostname" || fields[0].Reason == "" {
				t.Errorf("NormalizeHostname(%q) error = %#v; want Invalid on field hostname with a reason", raw, err)
			}
			return
		}
		if len(got) == 0 || len(got) > maxHostnameLen {
			t.Errorf("NormalizeHostname(%q) = %q: %d bytes", raw, got, len(got))
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; !isLDH(c) && c != '.' {
				t.Fatalf("NormalizeHostname(%q) = %q: byte %q at %d is not [a-z0-9.-]", raw, got, c, i)
			}
		}
		again, err := NormalizeHostname(got)
		if err != nil || again != got {
			t.Errorf("NormalizeHostname(%q) = %q, but NormalizeHostname(%q) = %q, %v", raw, got, got, again, err)
		}
		if a, err := hostnameProfile.ToASCII(got); err != nil || a != got {
			t.Errorf("NormalizeHostname(%q) = %q, but the IDNA profile gives %q, %v", raw, got, a, err)
		}
	})
}

// FuzzPrepare decodes a tenant as the REST API does and prepares it: no
// panic, every rejection is a field error, and an accepted tenant is stable —
// preparing it again, or after a JSON round trip (as the stream carries it),
// changes nothing.
func FuzzPrepare(f *testing.F) {
	valid, _ := json.Marshal(validTenant())
	f.Add(valid)
	for _, s := range []string{
		`{"id":"acme","hostnames":["ACME.example.com.","Bücher.de:443"]}`,
		`{"id":"acme","hostnames":["a.example.com"],"status":"SUSPENDED","products":{"jira":{"users":5}}}`,
		`{"id":"acme","hostnames":["a.example.com"],"database":{"engine":"pg","host":"::ffff:10.0.0.1","port":5432,"name":"x"}}`,
		`{"id":"acme","hostnames":["a.example.com"],"database":{"password":"x"}}`,
		`{"id":"acme","hostnames":["a.example.com","A.EXAMPLE.COM"],"labels":{"db_token":"x"}}`,
		`{"id":"AB","hostnames":[],"status":"DELETED"}`,
		`{"id":"acme","hostnames":["a.example.com"],"database":null,"labels":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var tn Tenant
		if err := json.Unmarshal(doc, &tn); err != nil {
			return
		}
		err := Prepare(&tn)
		if err != nil {
			if ErrorCode(err) != Invalid || len(ErrorFields(err)) == 0 {
				t.Fatalf("Prepare error = %#v; want Invalid with fields", err)
			}
			return
		}
		again := tn.Clone()
		if err := Prepare(again); err != nil {
			t.Fatalf("second Prepare: %v\nfirst result: %+v", err, tn)
		}
		if diff := cmp.Diff(&tn, again); diff != "" {
			t.Fatalf("second Prepare changed the tenant (-first +second):\n%s", diff)
		}

		b, err := json.Marshal(&tn)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		var decoded Tenant
		if err := json.Unmarshal(b, &decoded); err != nil {
			t.Fatalf("Unmarshal of %s: %v", b, err)
		}
		if err := Prepare(&decoded); err != nil {
			t.Fatalf("Prepare after round trip: %v\njson: %s", err, b)
		}
		// omitempty turns empty maps into absent ones; that is no change.
		if diff := cmp.Diff(&tn, &decoded, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip changed the tenant (-before +after):\n%s", diff)
		}
	})
}

// FuzzPrepareFields reaches the rules faster than FuzzPrepare by fuzzing the
// field values directly rather than the JSON around them.
func FuzzPrepareFields(f *testing.F) {
	f.Add("acme", "Acme.Example.com.", "bücher.de:443", "", "jira", "", int64(25), "premium",
		"db.internal", 5432, "arn:aws:ssm:us-east-1:123456789012:parameter/x", "tier", "gold")
	f.Add("ab", "a_b", "A_B", "DELETED", "Jira", "ON", int64(-1), "\x00",
		"::ffff:10.0.0.1", 0, "hunter2", "db_password", "x")
	f.Add("a-1", "xn--bcher-kva.de", "XN--BCHER-KVA.DE", "SUSPENDED", "p", "DEACTIVATED", int64(MaxUsers), "",
		"2001:DB8::1", 65535, "vault://secret/x", "app.kubernetes.io/name", "")
	f.Fuzz(func(t *testing.T, id, h1, h2, status, product, state string, users int64, edition,
		dbHost string, dbPort int, secretRef, labelKey, labelValue string) {
		tn := &Tenant{
			ID:        id,
			Hostnames: []string{h1, h2},
			Status:    Status(status),
			Products:  map[string]Product{product: {State: ProductState(state), Users: users, Edition: edition}},
			Database: &Database{
				Engine: "postgres", Host: dbHost, Port: dbPort, Name: "acme", SecretRef: secretRef,
			},
			Labels: map[string]string{labelKey: labelValue},
		}
		err := Prepare(tn)
		if err != nil {
			if ErrorCode(err) != Invalid || len(ErrorFields(err)) == 0 {
				t.Fatalf("Prepare error = %#v; want Invalid with fields", err)
			}
			for _, fe := range ErrorFields(err) {
				if fe.Field == "" || fe.Reason == "" {
					t.Errorf("field error %+v lacks a field or a reason", fe)
				}
			}
			return
		}
		again := tn.Clone()
		if err := Prepare(again); err != nil {
			t.Fatalf("second Prepare: %v\nfirst result: %+v", err, tn)
		}
		if diff := cmp.Diff(tn, again); diff != "" {
			t.Fatalf("second Prepare changed the tenant (-first +second):\n%s", diff)
		}
	})
}
