package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/httpclient"
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
		e, err := parseExpr(tc.expr)
		if err != nil {
			t.Errorf("parse %s: %v", tc.expr, err)
			continue
		}
		got, err := matches(e, doc)
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
		_, err := parseExpr(tc.expr)
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
		e, err := parseExpr(tc.expr)
		if err != nil {
			t.Fatalf("parse %s: %v", tc.expr, err)
		}
		if _, err := matches(e, doc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("eval %s: %v, want error containing %q", tc.expr, err, tc.want)
		}
	}
}

func FuzzParseExpr(f *testing.F) {
	for _, s := range []string{`database.host == "db-7" && status == "ACTIVE"`, `region in ["a", 'b']`, `!(x =~ "a")`, `products.jira.users >= -1.5e3`} {
		f.Add(s)
	}
	var doc map[string]any
	json.Unmarshal([]byte(exprDoc), &doc)
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseExpr(s)
		if err != nil {
			return
		}
		_, _ = matches(e, doc) // must not panic
		again, err := parseExpr(e.String())
		if err != nil {
			t.Fatalf("%q parses, but its String() %q does not: %v", s, e.String(), err)
		}
		if again.String() != e.String() {
			t.Errorf("%q: String() %q parses back as %q", s, e.String(), again.String())
		}
	})
}

func TestSetAndPatch(t *testing.T) {
	t.Parallel()
	var as []assignment
	for _, s := range []string{"database.host=db-9", "database.port=6432", `labels.n="5432"`, "labels.old=null", `hostnames=["a.example.com"]`, "products.jira.users=30"} {
		a, err := parseSet(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		as = append(as, a)
	}
	patch, err := buildPatch(as)
	if err != nil {
		t.Fatal(err)
	}
	want := httpclient.MergePatch{
		"database":  map[string]any{"host": "db-9", "port": float64(6432)},
		"labels":    map[string]any{"n": "5432", "old": nil},
		"hostnames": []any{"a.example.com"},
		"products":  map[string]any{"jira": map[string]any{"users": float64(30)}},
	}
	if diff := cmp.Diff(want, patch); diff != "" {
		t.Errorf("patch (-want +got):\n%s", diff)
	}
	before := map[string]any{"id": "x", "version": float64(2), "labels": map[string]any{"old": "1", "keep": "k"},
		"database": map[string]any{"host": "db-7", "port": float64(5432), "name": "x"}, "hostnames": []any{"x.example.com"}}
	after := applyPatch(before, map[string]any(patch)).(map[string]any)
	got := diffDocs(before, after)
	wantDiff := []change{
		{"database.host", "db-7", "db-9"}, {"database.port", float64(5432), float64(6432)},
		{"hostnames", []any{"x.example.com"}, []any{"a.example.com"}},
		{"labels.n", nil, "5432"}, {"labels.old", "1", nil},
		{"products.jira.users", nil, float64(30)},
	}
	if diff := cmp.Diff(wantDiff, got); diff != "" {
		t.Errorf("diff (-want +got):\n%s", diff)
	}
	if before["labels"].(map[string]any)["old"] != "1" {
		t.Error("applyPatch changed its input")
	}
	if diff := cmp.Diff([]string{"a.example.com", "x.example.com"}, affectedHostnames(before, after)); diff != "" {
		t.Errorf("hostnames affected (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"id=x", "version=3", "updated_by=me", "nonsense", "database.hots=x", "hostnames.0=a.example.com", "=x"} {
		if _, err := parseSet(bad); err == nil {
			t.Errorf("--set %s accepted", bad)
		}
	}
	a1, _ := parseSet("labels={}")
	a2, _ := parseSet("labels.x=1")
	if _, err := buildPatch([]assignment{a1, a2}); err == nil {
		t.Error("overlapping --set accepted")
	}
	if _, err := buildPatch([]assignment{a2, a1}); err == nil {
		t.Error("overlapping --set accepted (other order)")
	}
}
