package dynamo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
)

// OutboxShards returns Shards. See catalog.Store.
func (s *Store) OutboxShards() int { return Shards }

// checkShard rejects a shard number out of [0, Shards).
func checkShard(shard int) error {
	if shard < 0 || shard >= Shards {
		return tenant.Errorf(tenant.Invalid, "outbox shard %d does not exist: the DynamoDB outbox has shards 0 to %d", shard, Shards-1)
	}
	return nil
}

// OutboxHeads reads the head of every shard, in one strongly consistent
// BatchGetItem of Shards keys. See catalog.Store.
func (s *Store) OutboxHeads(ctx context.Context) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	heads, _, err := s.readHeads(ctx)
	if err != nil {
		return nil, s.wrap(ctx, err, "dynamo outbox heads")
	}
	return heads, nil
}

// readHeads returns the head of every shard, and whether its item exists:
// a shard without one has never been written, so it holds no tenant
// (MigrateLayout creates the heads of the shards it fills).
func (s *Store) readHeads(ctx context.Context) ([]uint64, []bool, error) {
	keys := make([]map[string]types.AttributeValue, Shards)
	for i := range keys {
		keys[i] = headKey(i)
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	heads, used := make([]uint64, Shards), make([]bool, Shards)
	for i := range heads {
		item := items[itemKey(outboxPK(i), skOutboxHead)]
		used[i] = item != nil
		if heads[i], err = parseSeq(item); err != nil {
			return nil, nil, fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return heads, used, nil
}

// ReadOutbox returns up to limit entries of shard after the sequence after,
// oldest first. A limit ≤ 0 means catalog.DefaultPageSize.
func (s *Store) ReadOutbox(ctx context.Context, shard int, after uint64, limit int) ([]catalog.OutboxEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkShard(shard); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = catalog.DefaultPageSize
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	op := fmt.Sprintf("dynamo read outbox shard %d after %d", shard, after)
	// The shard's head item sorts before every entry ("#" < "0"), so SK >
	// after never returns it.
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("PK = :pk AND SK > :after"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(outboxPK(shard)), ":after": str(pad(after)),
		},
		Limit: aws.Int32(int32(min(limit, math.MaxInt32))),
	}
	return queryItems[catalog.OutboxEntry](ctx, s, in, limit, "outbox entry", op)
}

// OutboxDepth reads the heads, then counts the entries of each shard with
// any (COUNT queries, a page at a time) up to max, and reads the oldest
// entry of each for the oldest commit time. See catalog.Store.
func (s *Store) OutboxDepth(ctx context.Context, max int) (int, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	if max <= 0 {
		max = math.MaxInt // no cap
	}
	heads, err := s.OutboxHeads(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	var (
		n      int
		oldest time.Time
	)
	for shard, head := range heads {
		if head == 0 {
			continue // never written
		}
		first, err := s.ReadOutbox(ctx, shard, 0, 1)
		if err != nil {
			return 0, time.Time{}, err
		}
		if len(first) == 0 {
			continue
		}
		if at := first[0].Event.CommittedAt; oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
		if n >= max {
			continue // still looking for the oldest
		}
		c, err := s.countShard(ctx, shard, max-n)
		if err != nil {
			return 0, time.Time{}, err
		}
		n += c
	}
	return min(n, max), oldest, nil
}

// countShard counts the entries of shard, up to max.
func (s *Store) countShard(ctx context.Context, shard, max int) (int, error) {
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("PK = :pk AND SK > :head"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(outboxPK(shard)), ":head": str(skOutboxHead),
		},
		Select: types.SelectCount,
		Limit:  aws.Int32(int32(min(max, math.MaxInt32))),
	}
	n := 0
	for n < max {
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return 0, s.wrap(ctx, err, fmt.Sprintf("dynamo outbox depth of shard %d", shard))
		}
		n += int(res.Count)
		if len(res.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
		in.Limit = aws.Int32(int32(min(max-n, math.MaxInt32)))
	}
	return n, nil
}

// AckOutbox deletes every entry of shard up to and including upTo. The
// deletes are batched, not one transaction: a failure part way leaves some
// acked entries behind, and acking again removes them. The shard's head is
// untouched, so sequences keep counting from where they were.
func (s *Store) AckOutbox(ctx context.Context, shard int, upTo uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkShard(shard); err != nil {
		return err
	}
	op := fmt.Sprintf("dynamo ack outbox shard %d up to %d", shard, upTo)
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("PK = :pk AND SK BETWEEN :first AND :upto"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(outboxPK(shard)), ":first": str(pad(0)), ":upto": str(pad(upTo)),
		},
		ProjectionExpression: aws.String("PK, SK"),
	}
	for {
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return s.wrap(ctx, err, op)
		}
		for batch := range slices.Chunk(res.Items, 25) {
			if err := s.deleteBatch(ctx, batch); err != nil {
				return s.wrap(ctx, err, op)
			}
		}
		if len(res.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
}

// deleteBatch deletes up to 25 keys, resending what DynamoDB leaves
// unprocessed.
func (s *Store) deleteBatch(ctx context.Context, keys []map[string]types.AttributeValue) error {
	reqs := make([]types.WriteRequest, len(keys))
	for i, k := range keys {
		reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}}
	}
	pending := map[string][]types.WriteRequest{*s.table: reqs}
	for wait := backoff.New(10*time.Millisecond, time.Second, backoff.Around); len(pending[*s.table]) > 0; {
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
		if err != nil {
			return err
		}
		pending = out.UnprocessedItems
		if len(pending[*s.table]) == 0 {
			return nil
		}
		if err := wait.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// parseSeq returns the sequence in a head item (0 when the item does not
// exist).
func parseSeq(item map[string]types.AttributeValue) (uint64, error) {
	if len(item) == 0 {
		return 0, nil
	}
	n, ok := item[attrSeq].(*types.AttributeValueMemberN)
	if !ok {
		return 0, errors.New("stored outbox head has no seq")
	}
	seq, err := strconv.ParseUint(n.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stored outbox head: %w", err)
	}
	return seq, nil
}
