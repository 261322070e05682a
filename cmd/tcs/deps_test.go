package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps fails if the lookup node links what it never runs: the catalog
// stores and REST API, the stream and its publishers, or the provisioning
// code (cmd/internal/backend opens only replicas and feeds; the catalog and
// the stream are its subpackages'). Test-only imports do not count: go list
// -deps lists what the binary links.
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
	const mod = "github.com/tcs-dev/tcs/"
	forbidden := []string{mod + "catalog/bolt", mod + "catalog/dynamo", mod + "catalog/httpapi", mod + "streamer",
		mod + "infra/", "github.com/aws/aws-sdk-go-v2/service/kinesis"}
	for _, dep := range deps {
		for _, bad := range forbidden {
			if dep == bad || strings.HasPrefix(dep, bad+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(dep, bad)) {
				t.Errorf("cmd/tcs links %s", dep)
			}
		}
	}
}
