package httpclient_test

import (
	"testing"

	"github.com/tcs-dev/tcs/internal/testdeps"
)

// TestDeps fails if the REST client links what a program that only talks
// to the catalog over HTTP should not pay for: a storage engine, the AWS
// SDK, gRPC or a metrics library.
func TestDeps(t *testing.T) {
	t.Parallel()
	testdeps.Forbid(t, "github.com/aws/", "github.com/prometheus/", "go.etcd.io/bbolt", "google.golang.org/grpc",
		"github.com/tcs-dev/tcs/catalog/httpapi", "github.com/tcs-dev/tcs/catalog/bolt")
}
