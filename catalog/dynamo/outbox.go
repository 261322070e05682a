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
)

// ReadOutbox returns up to limit entries after the sequence after, oldest
// first. A limit ≤ 0 means catalog.DefaultPageSize.
func (s *Store) ReadOutbox(ctx context.Context, after uint64, limit int) ([]catalog.OutboxEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = catalog.DefaultPageSize
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	op := fmt.Sprintf("dynamo read outbox after %d", after)
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("PK = :pk AND SK > :after"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(pkOutbox), ":after": str(pad(after)),
		},
		Limit: aws.Int32(int32(min(limit, math.MaxInt32))),
	}
	var out []catalog.OutboxEntry
	for {
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		for _, item := range res.Items {
			var e catalog.OutboxEntry
			if err := decodeItem(item, &e, "outbox entry"); err != nil {
				return nil, s.wrap(ctx, err, op)
			}
			out = append(out, e)
		}
		if len(out) >= limit || len(res.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
		in.Limit = aws.Int32(int32(min(limit-len(out), math.MaxInt32)))
	}
}

// OutboxDepth counts the outbox partition's items up to max (COUNT queries,
// a page at a time) and reads the oldest for its commit time. See
// catalog.Store.
func (s *Store) OutboxDepth(ctx context.Context, max int) (int, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	if max <= 0 {
		max = math.MaxInt // no cap
	}
	const op = "dynamo outbox depth"
	first, err := s.ReadOutbox(ctx, 0, 1)
	if err != nil {
		return 0, time.Time{}, err
	}
	if len(first) == 0 {
		return 0, time.Time{}, nil
	}
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(pkOutbox),
		},
		Select: types.SelectCount,
		Limit:  aws.Int32(int32(min(max, math.MaxInt32))),
	}
	n := 0
	for n < max {
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return 0, time.Time{}, s.wrap(ctx, err, op)
		}
		n += int(res.Count)
		if len(res.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
		in.Limit = aws.Int32(int32(min(max-n, math.MaxInt32)))
	}
	return min(n, max), first[0].Event.CommittedAt, nil
}

// AckOutbox deletes every entry up to and including upTo. The deletes are
// batched, not one transaction: a failure part way leaves some acked entries
// behind, and acking again removes them. The sequence counter is untouched,
// so sequences keep counting from where they were.
func (s *Store) AckOutbox(ctx context.Context, upTo uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := fmt.Sprintf("dynamo ack outbox up to %d", upTo)
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("PK = :pk AND SK <= :upto"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(pkOutbox), ":upto": str(pad(upTo)),
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
	for backoff := 10 * time.Millisecond; len(pending[*s.table]) > 0; backoff = min(backoff*2, time.Second) {
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
		if err != nil {
			return err
		}
		pending = out.UnprocessedItems
		if len(pending[*s.table]) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
	return nil
}

// getSeq returns the last outbox sequence handed out (0 before the first
// write).
func (s *Store) getSeq(ctx context.Context) (uint64, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      s.table,
		Key:            key(pkMeta, skOutboxSeq),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, err
	}
	return parseSeq(out.Item)
}

// parseSeq returns the sequence in the counter item (0 before the first
// write, when the item does not exist).
func parseSeq(item map[string]types.AttributeValue) (uint64, error) {
	if len(item) == 0 {
		return 0, nil
	}
	n, ok := item[attrSeq].(*types.AttributeValueMemberN)
	if !ok {
		return 0, errors.New("stored outbox counter has no seq")
	}
	seq, err := strconv.ParseUint(n.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stored outbox counter: %w", err)
	}
	return seq, nil
}
