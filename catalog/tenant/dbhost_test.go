package tenant

import (
	"strings"
	"testing"
)

// TestNormalizeDatabaseHost: the canonical form Prepare stores, or an
// error whose reason names the problem.
func TestNormalizeDatabaseHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want, reason string }{
		{"DB-7.Internal.", "db-7.internal", ""},
		{"::ffff:10.0.0.1", "10.0.0.1", ""},
		{"db-7.internal:5432", "", "port"},
		{"", "", "is required"},
		{"db_7", "", ""},
	} {
		got, err := NormalizeDatabaseHost(tc.in)
		if tc.want != "" {
			if err != nil || got != tc.want {
				t.Errorf("NormalizeDatabaseHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			// The form Prepare gives database.host.
			d := &Database{Engine: "postgres", Host: tc.in, Port: 5432, Name: "x"}
			if err := Prepare(&Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}, Database: d}); err != nil || d.Host != got {
				t.Errorf("Prepare stores %q (%v), NormalizeDatabaseHost %q", d.Host, err, got)
			}
			continue
		}
		fields := ErrorFields(err)
		if err == nil || ErrorCode(err) != Invalid || len(fields) != 1 || fields[0].Field != "database.host" {
			t.Errorf("NormalizeDatabaseHost(%q) = %q, %v; want an invalid database.host", tc.in, got, err)
		}
		if tc.reason != "" && (len(fields) != 1 || !strings.Contains(fields[0].Reason, tc.reason)) {
			t.Errorf("NormalizeDatabaseHost(%q): reason %v, want one naming %q", tc.in, fields, tc.reason)
		}
	}
}
