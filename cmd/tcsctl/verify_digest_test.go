package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/tcs/drift"
)

// TestVerifyDigest: with --digest, a system that agrees is found clean from
// the bucket digests alone (no full verify); once regions drift, the
// digests name the regions that differ and the full verify reports every
// finding, as verify without --digest does.
func TestVerifyDigest(t *testing.T) {
	t.Parallel()
	s, docs := driftSystem(t)
	code, out, errOut := s.tcsctl(t, context.Background(), "verify", "--digest")
	if code != 0 || !strings.Contains(out, "clean: every region agrees with the source of truth; 3 region(s)") || !strings.Contains(out, "8 tenant(s)") {
		t.Errorf("verify --digest on a healthy system: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "digest:") {
		t.Errorf("verify --digest on a healthy system ran the full verify:\n%s", errOut)
	}

	want := injectDrift(t, s, docs)
	code, out, errOut = s.tcsctl(t, context.Background(), "verify", "--digest", "-o", "json", "--settle", "50ms")
	if code != 1 {
		t.Fatalf("verify --digest after drift: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, region := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		if !strings.Contains(errOut, "digest: "+region+" differs from the source of truth in ") {
			t.Errorf("stderr does not name %s as differing:\n%s", region, errOut)
		}
	}
	var rep drift.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("verify --digest -o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(want, findingKeys(rep.Findings)); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	s.mustTcsctl(t, 0, "repair", "--yes", "--settle", "50ms")
	if code, out, errOut := s.tcsctl(t, context.Background(), "verify", "--digest"); code != 0 || strings.Contains(errOut, "digest:") {
		t.Errorf("verify --digest after repair: exit %d\n%s%s", code, out, errOut)
	}
}
