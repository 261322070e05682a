// Package workdynamo keeps the work pools' bucket leases (tcs/work) in a
// DynamoDB lease table, <prefix>-work-leases in the home region, with the
// schema of every TCS lease table (internal/leasetable: hash key the group,
// "work/<pool>", range key the lease key). One table serves every pool and
// every region's tcs nodes, so a pool's members share its tenants whichever
// region they join through.
//
// Cost: a member's round reads its pool's group (256 bucket items and one
// item per member, about 40 KB: some 10 read units, strongly consistent)
// every lease duration / 8, and the pool's renewals write about 256 items
// every lease duration / 4 whatever the number of members (about 100
// writes a second with the default 10 s duration); tcs/work's
// BenchmarkSteadyState measures the operations.
package workdynamo

import (
	"context"

	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/leasetable"
	"github.com/tcs-dev/tcs/tcs/work"
)

// API is the part of the DynamoDB client the work leases need (no
// DeleteItem: the nodes never delete a lease, and their IAM policy does not
// let them); *dynamodb.Client implements it.
type API = leasetable.KeeperAPI

// Open checks that table exists (a missing one is an error naming it and
// the command that creates it) and returns work.Leases over it.
func Open(ctx context.Context, db API, table string) (work.Leases, error) {
	keeper, err := leasetable.OpenKeeper(ctx, db, table, "work", "workdynamo: tcs nodes")
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, pool, owner string) (lease.Store, error) {
		return &leasetable.Table{DB: keeper, Name: table, Group: work.Group(pool), Owner: owner}, nil
	}, nil
}
