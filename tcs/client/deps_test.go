package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps fails if the client library links what compute nodes should not
// pay for: the AWS SDK, or a metrics library (Hooks are how metrics get
// out). Test-only imports do not count: go list -deps lists what a binary
// importing the package links.
func TestDeps(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps gave %d packages; is this the package directory?", len(deps))
	}
	forbidden := []string{"github.com/aws/", "github.com/prometheus/", "go.opentelemetry.io/", "go.etcd.io/bbolt"}
	for _, dep := range deps {
		for _, bad := range forbidden {
			if strings.Contains(dep, bad) {
				t.Errorf("tcs/client links %s", dep)
			}
		}
	}
}
