package client_test

import (
	"testing"

	"github.com/tcs-dev/tcs/internal/testdeps"
)

// TestDeps fails if the client library links what compute nodes should not
// pay for: the AWS SDK, or a metrics library (Hooks are how metrics get
// out).
func TestDeps(t *testing.T) {
	t.Parallel()
	testdeps.Forbid(t, "github.com/aws/", "github.com/prometheus/", "go.opentelemetry.io/", "go.etcd.io/bbolt")
}
