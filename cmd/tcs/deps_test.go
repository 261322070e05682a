package main

import (
	"testing"

	"github.com/tcs-dev/tcs/internal/testdeps"
)

// TestDeps fails if the lookup node links what it never runs: the catalog
// stores and REST API, the stream and its publishers, or the provisioning
// code (cmd/internal/backend opens only replicas and feeds; the catalog and
// the stream are its subpackages').
func TestDeps(t *testing.T) {
	t.Parallel()
	const mod = "github.com/tcs-dev/tcs/"
	testdeps.Forbid(t, mod+"catalog/bolt", mod+"catalog/dynamo", mod+"catalog/httpapi", mod+"streamer",
		mod+"infra/", "github.com/aws/aws-sdk-go-v2/service/kinesis")
}
