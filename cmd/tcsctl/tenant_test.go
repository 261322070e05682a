package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tcs-dev/tcs/catalog"
)

// tcsctlStdin runs the CLI against the system with stdin, as a terminal
// if tty.
func (s *system) tcsctlStdin(tb testing.TB, stdin string, tty bool, args ...string) (int, string, string) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	e := newEnv(s.env(), strings.NewReader(stdin), &stdout, &stderr)
	e.isTerminal = func() bool { return tty }
	return e.execute(context.Background(), args), stdout.String(), stderr.String()
}

// TestTenantCommands: tenant create, list, get, apply, patch, history and
// delete over the catalog's REST API, each in every output format; the
// version precondition refuses stale writes (exit 1, nothing changed); bad
// input is an error naming what was wrong.
func TestTenantCommands(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	s.create(t, sampleTenant("alpha", 1))
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	betaYAML := file("beta.yaml", `id: beta
hostnames: [beta.example.com]
region: eu-west-1
products:
  jira: {state: ACTIVE, users: 5}
database: {engine: postgres, host: db-1.internal, port: 5432, name: beta}
`)

	// create
	if out := s.mustTcsctl(t, 0, "tenant", "create", "-f", betaYAML); out != "tenant beta created (version 1)\n" {
		t.Errorf("create: %q", out)
	}
	code, _, errOut := s.tcsctl(t, context.Background(), "tenant", "create", "-f", betaYAML)
	if code != exitFinding || !strings.Contains(errOut, `create tenant "beta": 409`) {
		t.Errorf("create again: exit %d, %s", code, errOut)
	}
	bad := file("bad.json", `{"id":"gamma","hostnames":["gamma.example.com"],"region":"us-east-1","colour":"red"}`)
	code, _, errOut = s.tcsctl(t, context.Background(), "tenant", "create", "-f", bad)
	if code != exitFinding || !strings.Contains(errOut, "colour") {
		t.Errorf("create with an unknown field: exit %d, %s", code, errOut)
	}
	s.mustTcsctl(t, 1, "get", "gamma")

	// list
	out := s.mustTcsctl(t, 0, "tenant", "list")
	if !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "\nalpha ") || !strings.Contains(out, "\nbeta ") || !strings.Contains(out, "beta.example.com") {
		t.Errorf("list:\n%s", out)
	}
	var docs []map[string]any
	if err := json.Unmarshal([]byte(s.mustTcsctl(t, 0, "tenant", "list", "-o", "json")), &docs); err != nil || len(docs) != 2 || docs[1]["id"] != "beta" {
		t.Errorf("list -o json: %v %v", err, docs)
	}
	if err := yaml.Unmarshal([]byte(s.mustTcsctl(t, 0, "tenants", "list", "-o", "yaml", "--limit", "1")), &docs); err != nil || len(docs) != 1 || docs[0]["id"] != "alpha" {
		t.Errorf("list -o yaml --limit 1: %v %v", err, docs)
	}

	// get, in each format; the old get keeps JSON as its default
	if out := s.mustTcsctl(t, 0, "tenant", "get", "beta"); !strings.Contains(out, "VERSION") || !strings.Contains(out, "beta.example.com") || !strings.Contains(out, "jira") {
		t.Errorf("tenant get:\n%s", out)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(s.mustTcsctl(t, 0, "tenant", "get", "beta", "-o", "yaml")), &doc); err != nil || doc["region"] != "eu-west-1" {
		t.Errorf("tenant get -o yaml: %v %v", err, doc)
	}
	if err := json.Unmarshal([]byte(s.mustTcsctl(t, 0, "get", "beta")), &doc); err != nil || doc["version"] != float64(1) {
		t.Errorf("get: %v %v", err, doc)
	}
	s.mustTcsctl(t, 1, "tenant", "get", "nobody")

	// apply: create, replace at the version read, unchanged, stale version
	changed := file("beta2.yaml", strings.Replace(mustRead(t, betaYAML), "users: 5", "users: 6", 1))
	if out := s.mustTcsctl(t, 0, "tenant", "apply", "-f", changed); out != "tenant beta configured (version 2)\n" {
		t.Errorf("apply: %q", out)
	}
	if out := s.mustTcsctl(t, 0, "tenant", "apply", "-f", changed); out != "tenant beta unchanged (version 2)\n" {
		t.Errorf("apply again: %q", out)
	}
	// An edit of version 1 is refused now that the tenant is at 2.
	stale := file("stale.yaml", "version: 1\n"+strings.Replace(mustRead(t, betaYAML), "users: 5", "users: 7", 1))
	code, _, errOut = s.tcsctl(t, context.Background(), "tenant", "apply", "-f", stale)
	if code != exitFinding || !strings.Contains(errOut, "is at version 2, not 1") {
		t.Errorf("apply of a stale version: exit %d, %s", code, errOut)
	}
	if got := s.get(t, "beta"); got.Version != 2 || got.Products["jira"].Users != 6 {
		t.Errorf("after the refused apply: %+v", got)
	}
	// The output of get -o yaml applies as it is (its version is current).
	edited := strings.Replace(s.mustTcsctl(t, 0, "tenant", "get", "beta", "-o", "yaml"), "users: 6", "users: 8", 1)
	code, out, errOut = s.tcsctlStdin(t, edited, false, "tenant", "apply", "-f", "-", "-o", "json")
	var applied map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &applied) != nil || applied["version"] != float64(3) {
		t.Errorf("apply -f - of get -o yaml: exit %d, %s %s", code, out, errOut)
	}
	code, out, _ = s.tcsctlStdin(t, `{"id":"delta","hostnames":["delta.example.com"],"region":"us-east-1"}`, false, "tenant", "apply", "-f", "-")
	if code != 0 || out != "tenant delta created (version 1)\n" {
		t.Errorf("apply -f - of a new tenant: exit %d, %q", code, out)
	}
	code, _, errOut = s.tcsctl(t, context.Background(), "tenant", "apply", "-f", file("ghost.json", `{"id":"ghost","version":4,"hostnames":[],"region":"us-east-1"}`))
	if code != exitFinding || !strings.Contains(errOut, "no such tenant") {
		t.Errorf("apply with a version of a tenant that does not exist: exit %d, %s", code, errOut)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"hostnames":[]}`, `id "": `},
		{`[1, 2]`, "want one object"},
		{`{"id":"x","version":"two"}`, "version two: want a positive integer"},
		{"id: [unclosed", "neither JSON nor YAML"},
	} {
		code, _, errOut := s.tcsctl(t, context.Background(), "tenant", "apply", "-f", file("bad-apply.yaml", tc.body))
		if code != exitError || !strings.Contains(errOut, tc.want) {
			t.Errorf("apply -f %s: exit %d, %s; want 2 and %q", tc.body, code, errOut, tc.want)
		}
	}

	// patch
	if out := s.mustTcsctl(t, 0, "tenant", "patch", "beta", "--set", "labels.tier=gold", "--set", "database.port=6432"); out != "tenant beta patched (version 4)\n" {
		t.Errorf("patch: %q", out)
	}
	if got := s.get(t, "beta"); got.Labels["tier"] != "gold" || got.Database.Port != 6432 {
		t.Errorf("after patch: %+v", got)
	}
	code, _, errOut = s.tcsctl(t, context.Background(), "tenant", "patch", "beta", "--set", "labels.tier=silver", "--if-version", "2")
	if code != exitFinding || !strings.Contains(errOut, "no longer at version 2") {
		t.Errorf("patch --if-version 2: exit %d, %s", code, errOut)
	}
	s.mustTcsctl(t, 0, "tenant", "patch", "beta", "-f", file("patch.yaml", "labels: {tier: null}\n"), "--if-version", "4")
	if got := s.get(t, "beta"); got.Version != 5 || got.Labels["tier"] != "" {
		t.Errorf("after patch -f: %+v", got)
	}
	s.mustTcsctl(t, 1, "tenant", "patch", "nobody", "--set", "labels.a=b")

	// history
	var recs []catalog.AuditRecord
	if err := json.Unmarshal([]byte(s.mustTcsctl(t, 0, "tenant", "history", "beta", "-o", "json")), &recs); err != nil || len(recs) != 5 || recs[0].Version != 5 {
		t.Errorf("history -o json: %v, %d records", err, len(recs))
	}
	if out := s.mustTcsctl(t, 0, "tenant", "history", "beta", "--limit", "2"); !strings.HasPrefix(out, "TENANT") || strings.Count(out, "\nbeta ") != 2 {
		t.Errorf("history --limit 2:\n%s", out)
	}
	if out := s.mustTcsctl(t, 0, "audit", "--tenant", "beta", "-o", "yaml"); !strings.Contains(out, "tenant_id: beta") {
		t.Errorf("audit -o yaml:\n%s", out)
	}

	// delete
	code, _, errOut = s.tcsctl(t, context.Background(), "tenant", "delete", "beta", "--if-version", "3")
	if code != exitFinding || !strings.Contains(errOut, "nothing was deleted") {
		t.Errorf("delete --if-version 3: exit %d, %s", code, errOut)
	}
	s.mustTcsctl(t, 0, "get", "beta")
	if out := s.mustTcsctl(t, 0, "tenant", "delete", "beta", "--if-version", "5"); out != "tenant beta deleted\n" {
		t.Errorf("delete: %q", out)
	}
	s.mustTcsctl(t, 1, "tenant", "get", "beta")
	s.mustTcsctl(t, 1, "tenant", "delete", "beta")

	// Completion offers tenant ids from the catalog.
	if out := s.mustTcsctl(t, 0, "__complete", "tenant", "get", "al"); !strings.Contains(out, "alpha\n") || strings.Contains(out, "delta") {
		t.Errorf("completion of tenant get al: %q", out)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfirmation: commands that write many tenants refuse without --yes
// when stdin is not a terminal, ask on a terminal, and change nothing
// unless confirmed; dry runs need no confirmation.
func TestConfirmation(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	s.create(t, sampleTenant("alpha", 1))
	jsonl := filepath.Join(t.TempDir(), "t.jsonl")
	if err := os.WriteFile(jsonl, []byte(sampleTenant("beta", 2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	transform := []string{"transform", "--where", `id == "alpha"`, "--set", "labels.x=y", "--checkpoint", "off"}
	for _, args := range [][]string{
		transform,
		{"backfill", "--from", jsonl, "--checkpoint", "off"},
		{"resync", "--all", "--checkpoint", "off"},
		{"repair", "--settle", "1ms"},
	} {
		code, out, errOut := s.tcsctlStdin(t, "", false, args...)
		if code != exitError || out != "" || !strings.Contains(errOut, "needs --yes when tcsctl cannot ask (stdin is not a terminal); nothing was changed") {
			t.Errorf("%s without --yes: exit %d, %q %q", args[0], code, out, errOut)
		}
		for _, answer := range []string{"n\n", "\n", ""} {
			code, _, errOut := s.tcsctlStdin(t, answer, true, args...)
			if code != exitFinding || !strings.Contains(errOut, "Continue? [y/N]") || !strings.Contains(errOut, "not confirmed; nothing was changed") {
				t.Errorf("%s answered %q: exit %d, %q", args[0], answer, code, errOut)
			}
		}
	}
	if got := s.get(t, "alpha"); got.Version != 1 {
		t.Errorf("alpha changed without a confirmation: %+v", got)
	}
	s.mustTcsctl(t, 1, "get", "beta")
	if out := s.mustTcsctl(t, 0, "audit", "--resync", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("a resync or repair ran without a confirmation: its audit records are %s", out)
	}
	// backfill --from - cannot ask: stdin is the data.
	code, _, errOut := s.tcsctlStdin(t, sampleTenant("beta", 2)+"\n", true, "backfill", "--from", "-", "--checkpoint", "off")
	if code != exitError || !strings.Contains(errOut, "needs --yes") {
		t.Errorf("backfill --from - on a terminal: exit %d, %s", code, errOut)
	}
	// Dry runs need no confirmation.
	s.mustTcsctl(t, 0, append(transform, "--dry-run")...)
	s.mustTcsctl(t, 0, "resync", "--all", "--dry-run")
	// Confirmed on the terminal, or with --yes, it runs.
	code, out, errOut := s.tcsctlStdin(t, "yes\n", true, transform...)
	if code != 0 || !strings.Contains(errOut, `transform sets labels.x=y on every tenant matching id == "alpha". Continue? [y/N]`) || !strings.Contains(out, "changed") {
		t.Errorf("transform confirmed: exit %d, %q %q", code, out, errOut)
	}
	if got := s.get(t, "alpha"); got.Version != 2 || got.Labels["x"] != "y" {
		t.Errorf("alpha after the confirmed transform: %+v", got)
	}
	s.mustTcsctl(t, 0, "backfill", "--from", jsonl, "--checkpoint", "off", "-y")
	s.mustTcsctl(t, 0, "get", "beta")
	s.mustTcsctl(t, 0, "resync", "--all", "--checkpoint", "off", "--yes")
	if out := s.mustTcsctl(t, 0, "audit", "--resync", "-o", "json"); !strings.Contains(out, `"action": "resync`) {
		t.Errorf("resync --all --yes left no audit record: %s", out)
	}
}
