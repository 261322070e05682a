package main

import (
	"testing"

	"github.com/tcs-dev/tcs/internal/testdeps"
)

// TestDeps fails if tcs-sidecar links what it never runs: it is a tcs
// client and two small servers, so no AWS SDK, no bbolt, no catalog,
// stream or lookup server code.
func TestDeps(t *testing.T) {
	t.Parallel()
	const mod = "github.com/tcs-dev/tcs/"
	testdeps.Forbid(t, "github.com/aws/", "go.etcd.io/bbolt", mod+"catalog/bolt", mod+"catalog/dynamo", mod+"catalog/httpapi",
		mod+"streamer", mod+"tcs/lookup", mod+"tcs/cache", mod+"cmd/internal/backend", mod+"infra/")
}
