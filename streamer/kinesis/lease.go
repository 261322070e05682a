package kinesis

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tcs-dev/tcs/internal/leasetable"
)

// Lease table attributes; see the package comment.
const (
	attrGroup = leasetable.AttrGroup
	attrShard = leasetable.AttrShard

	// ShardEnd is the checkpoint of a shard that was closed (split or
	// merged) and read to its end.
	ShardEnd = "SHARD_END"
)

// errLeaseLost is a conditional write that failed because the lease is no
// longer the writer's (or, for a take, changed since it was read).
var errLeaseLost = leasetable.ErrLost

// Lease is one consumer group's lease of one shard, as stored.
type Lease struct {
	Shard string
	// Owner is the worker holding the lease; "" when free.
	Owner string
	// Checkpoint is the sequence number of the last record the group
	// processed in the shard, ShardEnd, or "" if none.
	Checkpoint string
	// Parents are the shards this one was split or merged from.
	Parents []string
	// Counter changes with every write to the lease.
	Counter int64
	// Pending is a worker that asked the owner for the lease.
	Pending string

	token string
}

// Leases returns the group's leases, in shard order, read consistently.
func (s *Stream) Leases(ctx context.Context, group string) ([]Lease, error) {
	ls, err := s.leaseTable(group).list(ctx)
	if err != nil {
		return nil, wrap(ctx, err, fmt.Sprintf("kinesis leases of group %q", group))
	}
	return ls, nil
}

// leaseTable is one group's view of the lease table, written as one owner
// (a leasetable.Table, in Kinesis shard order, retried as the stream retries).
type leaseTable struct{ t *leasetable.Table }

func (s *Stream) leaseTable(group string) *leaseTable {
	name := "" // a Stream that only appends has no lease table
	if s.table != nil {
		name = *s.table
	}
	return &leaseTable{t: &leasetable.Table{
		DB: s.db, Name: name, Group: group, Owner: s.owner, Now: s.now,
		Retry: s.retryOp, Compare: compareShardIDs,
		CallOptions: []func(*dynamodb.Options){oneDynamoAttempt},
	}}
}

func fromTable(l leasetable.Lease) Lease {
	return Lease{Shard: l.Key, Owner: l.Owner, Checkpoint: l.Checkpoint, Parents: l.Parents, Counter: l.Counter, Pending: l.Pending, token: l.Token}
}

func toTable(l Lease) leasetable.Lease {
	return leasetable.Lease{Key: l.Shard, Owner: l.Owner, Checkpoint: l.Checkpoint, Parents: l.Parents, Counter: l.Counter, Pending: l.Pending, Token: l.token}
}

// list reads every lease of the group.
func (t *leaseTable) list(ctx context.Context) ([]Lease, error) {
	ls, err := t.t.List(ctx)
	if err != nil {
		return nil, err
	}
	leases := make([]Lease, len(ls))
	for i, l := range ls {
		leases[i] = fromTable(l)
	}
	return leases, nil
}

// create adds a free lease for shard, unless one exists.
func (t *leaseTable) create(ctx context.Context, shard string, parents []string) error {
	return t.t.Create(ctx, shard, parents)
}

// remove deletes shard's lease if it is still finished (checkpointed at
// ShardEnd). It reports whether it removed it.
func (t *leaseTable) remove(ctx context.Context, shard string) (bool, error) {
	return t.t.RemoveIfCheckpoint(ctx, shard, ShardEnd)
}

// take makes l (as read) this worker's, with a new token, if nobody changed
// it since it was read.
func (t *leaseTable) take(ctx context.Context, l Lease) (Lease, error) {
	taken, err := t.t.Take(ctx, toTable(l))
	return fromTable(taken), err
}

// renew bumps the counter of a lease this worker holds and returns it, so
// that the owner sees steal requests.
func (t *leaseTable) renew(ctx context.Context, shard, token string) (Lease, error) {
	l, err := t.t.Renew(ctx, shard, token)
	return fromTable(l), err
}

// checkpoint records the last sequence processed (or ShardEnd) in a lease
// this worker holds. It renews the lease too.
func (t *leaseTable) checkpoint(ctx context.Context, shard, token, seq string) error {
	return t.t.Checkpoint(ctx, shard, token, seq)
}

// finish checkpoints a shard at ShardEnd and frees its lease in one write.
func (t *leaseTable) finish(ctx context.Context, shard, token string) error {
	return t.t.Finish(ctx, shard, token, ShardEnd)
}

// release frees a lease this worker holds.
func (t *leaseTable) release(ctx context.Context, shard, token string) error {
	return t.t.Release(ctx, shard, token)
}

// handOver gives a lease this worker holds to the worker that asked for it.
func (t *leaseTable) handOver(ctx context.Context, shard, token, to string) error {
	return t.t.HandOver(ctx, shard, token, to)
}

// requestSteal asks l's owner (as read) to hand l over to this worker. It
// does not change the counter: the request does not keep a dead owner's
// lease alive.
func (t *leaseTable) requestSteal(ctx context.Context, l Lease) error {
	return t.t.RequestSteal(ctx, toTable(l))
}

// compareShardIDs orders Kinesis shard ids ("shardId-000000000012") by their
// number, which is creation order; other ids as strings.
func compareShardIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
