package httpclient_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps fails if the REST client links what a program that only talks
// to the catalog over HTTP should not pay for: a storage engine, the AWS
// SDK, gRPC or a metrics library. Test-only imports do not count: go list
// -deps lists what a binary importing the package links.
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
	forbidden := []string{"github.com/aws/", "github.com/prometheus/", "go.etcd.io/bbolt", "google.golang.org/grpc", "github.com/tcs-dev/tcs/catalog/httpapi", "github.com/tcs-dev/tcs/catalog/bolt"}
	for _, dep := range deps {
		for _, bad := range forbidden {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("catalog/httpclient links %s", dep)
			}
		}
	}
}
