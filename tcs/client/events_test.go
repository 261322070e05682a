package client_test

import (
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// replicatestEvent puts tenant id at version holding hostnames (each at
// claim version version).
func replicatestEvent(id string, version int64, hostnames ...string) *tenant.ChangeEvent {
	claims := map[string]int64{}
	for _, h := range hostnames {
		claims[h] = version
	}
	return replicatest.Event(id, version, claims, nil)
}

// replicatestTake makes tenant to, at toVersion, take hostname h from
// whoever held it (claim version 10, above any other in these tests) while
// keeping its own hostname own.
func replicatestTake(to string, toVersion int64, h, own string) *tenant.ChangeEvent {
	return replicatest.Event(to, toVersion, map[string]int64{h: 10, own: toVersion}, nil)
}
