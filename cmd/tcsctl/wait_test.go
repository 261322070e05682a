package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/catalog/httpclient"
)

// TestWait: wait exits 0 once a write has reached every region; for a
// version no region has it exits 1 when its timeout runs out, naming every
// node that has not; bad input is a usage error.
func TestWait(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	acme := s.create(t, sampleTenant("acme", 1))
	if err := s.patch(t, "acme", acme.Version, `{"labels":{"tier":"gold"}}`); err != nil {
		t.Fatal(err)
	}

	out := s.mustTcsctl(t, 0, "wait", "acme", "--version", "2")
	if !strings.Contains(out, "tenant acme at version 2 has reached every region, node and acknowledging client cache") ||
		!strings.Contains(out, "tcs-eu-west-1") {
		t.Errorf("wait, done:\n%s", out)
	}
	out = s.mustTcsctl(t, 0, "wait", "acme", "--version", "1", "-o", "json")
	var p httpclient.Propagation
	if err := json.Unmarshal([]byte(out), &p); err != nil || !p.Done || len(p.Regions) != 3 || p.Regions[0].Nodes[0].ReplicaVersion != 2 {
		t.Errorf("wait -o json: %v\n%s", err, out)
	}

	code, out, errOut := s.tcsctl(t, context.Background(), "wait", "acme", "--version", "3", "--timeout", "1s")
	if code != exitFinding {
		t.Fatalf("wait for a version never written: exit %d, want %d\n%s%s", code, exitFinding, out, errOut)
	}
	for _, r := range testRegions {
		if want := r + "/tcs-" + r + ": replica at version 2"; !strings.Contains(errOut, want) || !strings.Contains(out, want) {
			t.Errorf("timeout does not name %q:\nstdout:\n%s\nstderr:\n%s", want, out, errOut)
		}
	}
	if !strings.Contains(errOut, "has not reached version 3 everywhere within 1s") {
		t.Errorf("timeout message: %s", errOut)
	}

	for _, args := range [][]string{
		{"wait", "acme"},
		{"wait", "acme", "--version", "0"},
		{"wait", "acme", "--version", "x"},
		{"wait", "--version", "1"},
		{"wait", "acme", "--version", "1", "-o", "table"},
	} {
		if code, _, errOut := s.tcsctl(t, context.Background(), args...); code != exitError || errOut == "" {
			t.Errorf("%q: exit %d, want %d with a message; %s", args, code, exitError, errOut)
		}
	}
	code, _, errOut = s.tcsctl(t, context.Background(), "wait", "NOT_AN_ID", "--version", "1")
	if code != exitError || !strings.Contains(errOut, "id") {
		t.Errorf("bad id: exit %d, %s", code, errOut)
	}
}
