package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestGetLookupAndUsage: the read commands print JSON and exit 0, 1 when
// there is nothing to find, 2 on misuse.
func TestGetLookupAndUsage(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	acme := s.create(t, sampleTenant("acme", 1))
	s.waitApplied(t, "acme", acme.Version)

	out := s.mustTcsctl(t, 0, "get", "acme")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil || got["id"] != "acme" || got["version"] != float64(1) {
		t.Errorf("get acme: %v\n%s", err, out)
	}
	s.mustTcsctl(t, 1, "get", "nobody")

	for _, r := range testRegions {
		out = s.mustTcsctl(t, 0, "lookup", "WWW.Acme.Example.com.", "--region", r)
		var ans lookupAnswer
		if err := json.Unmarshal([]byte(out), &ans); err != nil || ans.Region != r || ans.Tenant.ID != "acme" || ans.Tenant.Version != 1 {
			t.Errorf("lookup in %s: %v\n%s", r, err, out)
		}
	}
	out = s.mustTcsctl(t, 0, "lookup", "acme.example.com", "--addr", s.regions[1].Addr)
	if !strings.Contains(out, `"region": "eu-west-1"`) {
		t.Errorf("lookup --addr: %s", out)
	}
	s.mustTcsctl(t, 1, "lookup", "nobody.example.com")
	s.mustTcsctl(t, 1, "lookup", "bad_host.example.com")
	s.mustTcsctl(t, 2, "lookup", "acme.example.com", "--region", "mars-1")
	s.mustTcsctl(t, 2, "lookup")
	s.mustTcsctl(t, 2, "frobnicate")
	s.mustTcsctl(t, 0, "verify", "-h")

	// A wrong token is an error naming the cause, not a finding.
	code, _, errOut := s.tcsctl(t, context.Background(), "get", "acme", "--token", "wrong")
	if code != 2 || !strings.Contains(errOut, "401") {
		t.Errorf("bad token: exit %d, %s", code, errOut)
	}
	// A catalog URL that is not http(s) is misuse, named as such.
	code, _, errOut = s.tcsctl(t, context.Background(), "get", "acme", "--catalog", "ftp://127.0.0.1")
	if code != 2 || !strings.Contains(errOut, `--catalog "ftp://127.0.0.1": want an http:// or https:// URL`) {
		t.Errorf("--catalog ftp://: exit %d, %s", code, errOut)
	}
}
