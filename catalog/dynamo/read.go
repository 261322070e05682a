package dynamo

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
)

// Get returns the live tenant id. See catalog.Store.
func (s *Store) Get(ctx context.Context, id string) (*tenant.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prev, err := s.getTenant(ctx, id)
	if err != nil {
		return nil, s.wrap(ctx, err, "dynamo get tenant "+id)
	}
	if prev == nil || prev.doc.Deleted() {
		return nil, notFound(id)
	}
	return prev.doc, nil
}

// LookupHostname returns the live tenant holding hostname. See
// catalog.Store.
func (s *Store) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	op := "dynamo lookup hostname " + hostname
	// The claim and the tenant are two reads; a write between them can move
	// the hostname. The tenant document says whether it still holds it; if
	// not, read again (a few times, then report the hostname as free).
	for range 3 {
		if hostname == "" {
			break
		}
		claims, err := s.getClaims(ctx, []string{hostname})
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		owner := claims[hostname].owner
		if owner == "" {
			break
		}
		t, err := s.getTenant(ctx, owner)
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		if t != nil && !t.doc.Deleted() && t.doc.HasHostname(hostname) {
			return t.doc, nil
		}
	}
	return nil, tenant.Errorf(tenant.NotFound, "hostname %q not found", hostname)
}

// List returns a page of live tenants in page order (shard by shard, id
// order within a shard; see ComparePageOrder), of opts' segment if it
// names one. See catalog.Store.
func (s *Store) List(ctx context.Context, opts catalog.ListOptions) (catalog.Page, error) {
	if err := ctx.Err(); err != nil {
		return catalog.Page{}, err
	}
	if err := catalog.CheckSegment(opts); err != nil {
		return catalog.Page{}, err
	}
	limit := catalog.PageLimit(opts.Limit)
	var page catalog.Page
	// Tombstones are read and skipped here rather than by a filter
	// expression: a filter applies after Limit, so pages would come back
	// short anyway.
	err := s.walkTenants(ctx, opts, limit+1, func(item map[string]types.AttributeValue) (bool, error) {
		if b, ok := item[attrDeleted].(*types.AttributeValueMemberBOOL); ok && b.Value {
			return true, nil
		}
		if len(page.Tenants) == limit {
			// A further live tenant exists: there is a next page.
			page.Next = page.Tenants[limit-1].ID
			return false, nil
		}
		t, err := decodeTenant(item)
		if err != nil {
			return false, err
		}
		page.Tenants = append(page.Tenants, t)
		return true, nil
	})
	if err != nil {
		return catalog.Page{}, s.wrap(ctx, err, "dynamo list tenants after "+opts.After)
	}
	return page, nil
}

// walkTenants calls yield with each stored tenant item (tombstones
// included) that follows the id opts.After in page order, until yield
// returns false or an error, or no item follows: from After's shard (the
// ids above After) through the last shard, one strongly consistent Query
// of up to pageSize items at a time. After "" starts at the first item of
// shard 0. The shards' heads are read first (one BatchGetItem), and shards
// never written are skipped: on a small table a page costs a few Queries,
// not one per shard.
//
// If opts names a segment (catalog.SegmentOf), only the shards that can
// hold it are read (segmentShard), and, unless its count divides Shards
// (then those shards hold nothing else), items of other segments are
// skipped.
func (s *Store) walkTenants(ctx context.Context, opts catalog.ListOptions, pageSize int, yield func(map[string]types.AttributeValue) (bool, error)) error {
	after := opts.After
	start := 0
	if after != "" {
		start = shardOf(after)
	}
	_, used, err := s.readHeads(ctx)
	if err != nil {
		return err
	}
	filter := opts.Segments > 0 && Shards%opts.Segments != 0
	for shard := start; shard < Shards; shard++ {
		if !used[shard] || !segmentShard(shard, opts) {
			continue
		}
		in := &dynamodb.QueryInput{
			TableName:                 s.table,
			ConsistentRead:            aws.Bool(true),
			KeyConditionExpression:    aws.String("PK = :pk"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(tenantShardPK(shard))},
			Limit:                     aws.Int32(int32(min(pageSize, math.MaxInt32))),
		}
		if after != "" && shard == start {
			in.KeyConditionExpression = aws.String("PK = :pk AND SK > :after")
			in.ExpressionAttributeValues[":after"] = str(after)
		}
		for {
			out, err := s.db.Query(ctx, in)
			if err != nil {
				return err
			}
			for _, item := range out.Items {
				if filter {
					if sk, _ := item[attrSK].(*types.AttributeValueMemberS); sk == nil || !opts.InSegment(sk.Value) {
						continue
					}
				}
				more, err := yield(item)
				if err != nil || !more {
					return err
				}
			}
			if len(out.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	return nil
}

// segmentShard reports whether shard can hold tenants of opts' segment
// (every shard can when opts names none). Tenant t is in shard h mod Shards
// and segment h mod n, h its hash (catalog.SegmentOf); so segment i's
// tenants are in the shards s ≡ i (mod gcd(n, Shards)).
func segmentShard(shard int, opts catalog.ListOptions) bool {
	if opts.Segments == 0 {
		return true
	}
	g := gcd(opts.Segments, Shards)
	return shard%g == opts.Segment%g
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// History returns the audit records of id, newest first. See catalog.Store.
// A Before ≤ 0 starts at the newest record.
func (s *Store) History(ctx context.Context, id string, opts catalog.HistoryOptions) ([]catalog.AuditRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	op := "dynamo history of tenant " + id
	if id != catalog.AdminAuditID {
		prev, err := s.getTenant(ctx, id)
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		if prev == nil {
			return nil, notFound(id)
		}
	}
	limit := catalog.PageLimit(opts.Limit)
	in := &dynamodb.QueryInput{
		TableName:                 s.table,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(prefixAudit + id)},
		ScanIndexForward:          aws.Bool(false),
		Limit:                     aws.Int32(int32(limit)),
	}
	if opts.Before > 0 {
		in.KeyConditionExpression = aws.String("PK = :pk AND SK < :before")
		in.ExpressionAttributeValues[":before"] = str(pad(uint64(opts.Before)))
	}
	return queryItems[catalog.AuditRecord](ctx, s, in, limit, "audit record", op)
}

// queryItems runs in page after page until it has limit items or the
// query ends, decoding each item into a T (what names it in errors).
func queryItems[T any](ctx context.Context, s *Store, in *dynamodb.QueryInput, limit int, what, op string) ([]T, error) {
	var out []T
	for {
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		for _, item := range res.Items {
			var v T
			if err := decodeItem(item, &v, what); err != nil {
				return nil, s.wrap(ctx, err, op)
			}
			out = append(out, v)
		}
		if len(out) >= limit || len(res.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
		in.Limit = aws.Int32(int32(min(limit-len(out), math.MaxInt32)))
	}
}

// getTenant returns the stored item of id, tombstone or not, or nil.
func (s *Store) getTenant(ctx context.Context, id string) (*stored, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      s.table,
		Key:            tenantKey(id),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	return parseTenant(out.Item)
}

// getClaims returns the stored claims of hostnames (strongly consistent).
func (s *Store) getClaims(ctx context.Context, hostnames []string) (map[string]claim, error) {
	keys := make([]map[string]types.AttributeValue, len(hostnames))
	for i, h := range hostnames {
		keys[i] = key(prefixHost+h, skClaim)
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	return parseClaims(items, hostnames)
}

// batchGet reads keys with strongly consistent reads, 100 at a time,
// resending what DynamoDB leaves unprocessed. It returns the items found,
// keyed by itemKey. The reads are not one snapshot; see tryWrite for why a
// write planned on reads torn by a concurrent commit is cancelled, not
// committed.
func (s *Store) batchGet(ctx context.Context, keys []map[string]types.AttributeValue) (map[string]map[string]types.AttributeValue, error) {
	items := make(map[string]map[string]types.AttributeValue, len(keys))
	for batch := range slices.Chunk(keys, 100) {
		req := map[string]types.KeysAndAttributes{*s.table: {Keys: batch, ConsistentRead: aws.Bool(true)}}
		for wait := backoff.New(10*time.Millisecond, time.Second, backoff.Around); ; {
			out, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, err
			}
			for _, item := range out.Responses[*s.table] {
				pk, _ := item[attrPK].(*types.AttributeValueMemberS)
				sk, _ := item[attrSK].(*types.AttributeValueMemberS)
				if pk == nil || sk == nil {
					return nil, fmt.Errorf("stored item without a key: %v", item)
				}
				items[itemKey(pk.Value, sk.Value)] = item
			}
			req = out.UnprocessedKeys
			if len(req[*s.table].Keys) == 0 {
				break
			}
			if err := wait.Wait(ctx); err != nil {
				return nil, err
			}
		}
	}
	return items, nil
}
