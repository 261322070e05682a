package tenantexpr

import (
	"encoding/json"
	"strings"
	"testing"
)

const exprDoc = `{"id":"acme","hostnames":["acme.example.com","www.acme.example.com"],"status":"ACTIVE",
 "products":{"jira":{"state":"ACTIVE","users":250,"edition":"premium"},"jira-align":{"state":"DEACTIVATED","users":3}},
 "database":{"engine":"postgres","host":"db-7.us-east-1.internal","port":5432,"name":"acme"},
 "region":"us-east-1","labels":{"tier":"gold"},"version":3}`

func TestExprEval(t *testing.T) {
	t.Parallel()
	var doc map[string]any
	if err := json.Unmarshal([]byte(exprDoc), &doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`database.host == "db-7.us-east-1.internal" && status == "ACTIVE"`, true},
		{`database.host == 'db-9' || status == "SUSPENDED"`, false},
		{`!(status == "ACTIVE")`, false},
		{`products.jira.users >= 250 && products.jira.users < 251`, true},
		{`products.jira-align.state == "DEACTIVATED"`, true},
		{`products.confluence.state == "ACTIVE"`, false},
		{`products.confluence == null`, true},
		{`database.port == 5432 && version > 2`, true},
		{`region in ["eu-west-1", "us-east-1"]`, true},
		{`region in []`, false},
		{`hostnames contains "www.acme.example.com"`, true},
		{`products contains "jira"`, true},
		{`database.host contains "us-east-1"`, true},
		{`database.host =~ "^db-[0-9]+\\.us-"`, true},
		{`database.host !~ "^db-7\\."`, false},
		{`hostnames.1 == "www.acme.example.com"`, true},
		{`labels.tier == "gold" && labels.team == null`, true},
		{`labels.team < "x"`, false},                              // missing: neither less nor greater
		{`status == "ACTIVE" || products.jira.users > "x"`, true}, // short-circuit
		{`version == 3.0`, true},
		{`version != "3"`, true}, // no coercion
	} {
		e, err := Parse(tc.expr)
		if err != nil {
			t.Errorf("parse %s: %v", tc.expr, err)
			continue
		}
		got, err := e.Match(doc)
		if err != nil || got != tc.want {
			t.Errorf("%s = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
}

func TestExprErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ expr, want string }{
		{`databse.host == "x"`, `unknown field "databse"`},
		{`database.hots == "x"`, `database has no field "hots"`},
		{`id.x == "y"`, `id has no field "x"`},
		{`status == "ACTIVE" &&`, "unexpected end of expression"},
		{`status = "ACTIVE"`, "unexpected character"},
		{`(status == "ACTIVE"`, "expected ')'"},
		{`status == "ACTIVE`, "unterminated string"},
		{`region in "us-east-1"`, "needs a list"},
		{`region =~ status`, "needs a string literal"},
		{`region =~ "("`, "regular expression"},
		{`region in [status]`, "only literals"},
		{strings.Repeat("!", 100) + `(status == "x")`, "nests too deeply"},
		{strings.Repeat("a", 5000), "longer than"},
	} {
		_, err := Parse(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse %.40s: %v, want error containing %q", tc.expr, err, tc.want)
		}
	}
	var doc map[string]any
	json.Unmarshal([]byte(exprDoc), &doc)
	for _, tc := range []struct{ expr, want string }{
		{`status`, "not true or false"},
		{`products.jira.users > "x"`, "cannot order a number and a string"},
		{`!region`, "not true or false"},
		{`version contains "x"`, "cannot contain"},
	} {
		e, err := Parse(tc.expr)
		if err != nil {
			t.Fatalf("parse %s: %v", tc.expr, err)
		}
		if _, err := e.Match(doc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("eval %s: %v, want error containing %q", tc.expr, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`database.host == "db-7" && status == "ACTIVE"`, `region in ["a", 'b']`, `!(x =~ "a")`, `products.jira.users >= -1.5e3`} {
		f.Add(s)
	}
	var doc map[string]any
	json.Unmarshal([]byte(exprDoc), &doc)
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			return
		}
		_, _ = e.Match(doc) // must not panic
		again, err := Parse(e.String())
		if err != nil {
			t.Fatalf("%q parses, but its String() %q does not: %v", s, e.String(), err)
		}
		if again.String() != e.String() {
			t.Errorf("%q: String() %q parses back as %q", s, e.String(), again.String())
		}
	})
}

// TestCheckPath: a path must name part of a tenant document.
func TestCheckPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		want string // "" for accepted
	}{
		{"status", ""},
		{"database.host", ""},
		{"labels.anything", ""},
		{"products.jira.users", ""},
		{"hostnames.0", ""},
		{"statuss", `unknown field "statuss"`},
		{"database.hots", `database has no field "hots"`},
		{"database.host.x", `database.host has no field "x"`},
		{"version.x", `version has no field "x"`},
	} {
		err := CheckPath(strings.Split(tc.path, "."))
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckPath(%s) = %v, want %q", tc.path, err, tc.want)
		}
	}
}
