package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tcs-dev/tcs/tcs/drift"
)

// TestOutputFormats: the commands that print data take -o json and yaml
// (the same document) and a table or text; a format a command lacks is bad
// usage naming the flag.
func TestOutputFormats(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	a := s.create(t, sampleTenant("aaa", 1))
	s.waitApplied(t, "aaa", a.Version)

	var rep drift.Report
	if err := yaml.Unmarshal([]byte(s.mustTcsctl(t, 0, "verify", "--settle", "1ms", "-o", "yaml")), &rep); err != nil || !rep.Clean || rep.Tenants != 1 {
		t.Errorf("verify -o yaml: %v %+v", err, rep)
	}
	out := s.mustTcsctl(t, 0, "lookup", "aaa.example.com", "-o", "table")
	if !strings.HasPrefix(out, "HOSTNAME") || !strings.Contains(out, "aaa.example.com  aaa ") {
		t.Errorf("lookup -o table:\n%s", out)
	}
	var ans lookupAnswer
	if err := yaml.Unmarshal([]byte(s.mustTcsctl(t, 0, "lookup", "aaa.example.com", "-o", "yaml")), &ans); err != nil || ans.Tenant.ID != "aaa" {
		t.Errorf("lookup -o yaml: %v %+v", err, ans)
	}

	var rr resyncReport
	code, out, _ := s.tcsctl(t, t.Context(), "resync", "--dry-run", "--tenant", "aaa,ghost", "-o", "json")
	if err := json.Unmarshal([]byte(out), &rr); code != exitFinding || err != nil || !rr.DryRun || rr.Resynced != 1 || len(rr.Tenants) != 1 || len(rr.NotFound) != 1 || rr.NotFound[0] != "ghost" {
		t.Errorf("resync --dry-run -o json: exit %d, %v, %q", code, err, out)
	}
	if err := yaml.Unmarshal([]byte(s.mustTcsctl(t, 0, "resync", "--all", "--yes", "--checkpoint", "off", "-o", "yaml")), &rr); err != nil || rr.DryRun || rr.Resynced != 1 {
		t.Errorf("resync --all -o yaml: %v %+v", err, rr)
	}

	lines := filepath.Join(t.TempDir(), "t.jsonl")
	if err := os.WriteFile(lines, []byte(sampleTenant("bbb", 2)+"\n{\"id\":\"ccc\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var br backfillReport
	code, out, _ = s.tcsctl(t, t.Context(), "backfill", "--from", lines, "--dry-run", "-o", "json")
	if err := json.Unmarshal([]byte(out), &br); code != exitFinding || err != nil || !br.DryRun || br.WouldImport != 1 || len(br.Rejected) != 1 || br.Rejected[0].Line != 2 {
		t.Errorf("backfill --dry-run -o json: exit %d, %v, %q", code, err, out)
	}

	var tr transformReport
	if err := yaml.Unmarshal([]byte(s.mustTcsctl(t, 0, "transform", "--where", `id == "aaa"`, "--set", "labels.a=b", "--dry-run", "-o", "yaml")), &tr); err != nil || !tr.DryRun || len(tr.Results) != 1 {
		t.Errorf("transform --dry-run -o yaml: %v %+v", err, tr)
	}

	for _, args := range [][]string{
		{"resync", "--all", "--dry-run", "-o", "table"},
		{"backfill", "--from", lines, "-o", "csv"},
		{"transform", "--where", "true", "--set", "a=b", "-o", "table"},
		{"tenant", "list", "-o", "text"},
		{"audit", "--tenant", "aaa", "-o", "xml"},
	} {
		code, _, errOut := s.tcsctl(t, t.Context(), args...)
		if code != exitError || !strings.Contains(errOut, `-o "`) || !strings.Contains(errOut, ": want ") {
			t.Errorf("%v: exit %d, %s", args, code, errOut)
		}
	}
}
