package dynamo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/spanctx"
)

// Create stores a new tenant. See catalog.Store.
func (s *Store) Create(ctx context.Context, t *tenant.Tenant, actor string) (*tenant.Tenant, error) {
	return s.write(ctx, catalog.WriteRequest{Action: catalog.ActionCreate, Tenant: t, Actor: actor})
}

// Update replaces a live tenant at expectedVersion. See catalog.Store.
func (s *Store) Update(ctx context.Context, t *tenant.Tenant, expectedVersion int64, actor string) (*tenant.Tenant, error) {
	return s.write(ctx, catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: t, ExpectedVersion: expectedVersion, Actor: actor})
}

// Delete replaces a live tenant by a tombstone and releases its hostnames.
// See catalog.Store.
func (s *Store) Delete(ctx context.Context, id string, expectedVersion int64, actor string) (*tenant.Tenant, error) {
	return s.write(ctx, catalog.WriteRequest{Action: catalog.ActionDelete, ID: id, ExpectedVersion: expectedVersion, Actor: actor})
}

// write plans and commits one change, re-planning from fresh reads whenever
// its transaction is cancelled by a concurrent write.
func (s *Store) write(ctx context.Context, req catalog.WriteRequest) (*tenant.Tenant, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("dynamo %s tenant %s", req.Action, req.TenantID())
	// The outbox entry carries the trace context of the request's span
	// (committed with the change), so that publish, apply and invalidation
	// join the write's trace.
	req.Trace = spanctx.Capture(ctx)
	// Jittered exponential backoff, so that writers that collided on an
	// outbox shard's head do not collide again in lock step.
	wait := backoff.New(5*time.Millisecond, 200*time.Millisecond, backoff.Around)
	for attempt := 1; ; attempt++ {
		out, retry, err := s.tryWrite(ctx, req)
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		if !retry {
			return out, nil
		}
		if attempt >= s.maxAttempts {
			return nil, tenant.Errorf(tenant.Unavailable, "%s: gave up after %d attempts cancelled by concurrent writes", op, attempt)
		}
		if err := wait.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// tryWrite makes one attempt: the I/O shell around catalog.PlanWrite. It
// reads what the plan needs, plans, and commits what the plan returns in
// one transaction conditioned on what it read. retry reports that the
// transaction was cancelled (nothing written) and the write must be planned
// again.
func (s *Store) tryWrite(ctx context.Context, req catalog.WriteRequest) (out *tenant.Tenant, retry bool, err error) {
	// One batch reads the head of the tenant's outbox shard, the tenant
	// and the claims of the hostnames the write asks for (a second batch
	// those it drops). The transaction appends the next entry of the
	// shard, conditioned on the head read, so each shard's sequence stays
	// gap-free and in commit order. The reads need not be one snapshot
	// (BatchGetItem reads its items in no set order): the tenant is
	// conditioned on its version, every claim the write moves on its owner
	// and version, and a claim the write keeps can only move by a write of
	// this tenant, which moves its version.
	id := req.TenantID()
	shard := shardOf(id)
	want := req.Hostnames()
	keys := []map[string]types.AttributeValue{headKey(shard), tenantKey(id)}
	for _, h := range want {
		keys = append(keys, key(prefixHost+h, skClaim))
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, false, err
	}
	seq, err := parseSeq(items[itemKey(outboxPK(shard), skOutboxHead)])
	if err != nil {
		return nil, false, fmt.Errorf("outbox shard %d: %w", shard, err)
	}
	prev, err := parseTenant(items[itemKey(tenantPK(id), id)])
	if err != nil {
		return nil, false, err
	}
	claims, err := parseClaims(items, want)
	if err != nil {
		return nil, false, err
	}
	st := catalog.WriteState{}
	if prev != nil {
		st.Current, st.AuditHead = prev.doc, prev.auditHead
	}
	var dropped []string
	for _, h := range req.ClaimsNeeded(st.Current) {
		if _, read := claims[h]; !read {
			dropped = append(dropped, h)
		}
	}
	if len(dropped) > 0 {
		more, err := s.getClaims(ctx, dropped)
		if err != nil {
			return nil, false, err
		}
		maps.Copy(claims, more)
	}
	st.Claims = planClaims(claims)
	req.At = s.now()
	p, err := catalog.PlanWrite(st, req)
	if err != nil {
		return nil, false, err
	}
	if n := len(p.Changes) + fixedTxItems; n > maxTxItems {
		return nil, false, tenant.FieldErrors([]tenant.FieldError{{Field: "hostnames",
			Reason: fmt.Sprintf("this change claims and releases %d hostnames; the DynamoDB store takes at most %d in one write: split it into two updates", len(p.Changes), maxTxItems-fixedTxItems)}})
	}

	tx := make([]types.TransactWriteItem, 0, len(p.Changes)+fixedTxItems)
	for _, c := range p.Changes {
		tx = append(tx, s.putClaim(c.Hostname, c.To.Owner, claims[c.Hostname]))
	}
	tenantPut := &types.Put{
		TableName: s.table,
		Item: map[string]types.AttributeValue{
			attrPK:        str(tenantPK(id)),
			attrSK:        str(id),
			attrVersion:   num(p.Doc.Version),
			attrDeleted:   &types.AttributeValueMemberBOOL{Value: p.Doc.Deleted()},
			attrDoc:       str(string(p.DocJSON)),
			attrAuditHead: str(p.Audit.Hash),
		},
	}
	if prev == nil {
		tenantPut.ConditionExpression = aws.String("attribute_not_exists(PK)")
	} else {
		tenantPut.ConditionExpression = aws.String("version = :v")
		tenantPut.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(prev.doc.Version)}
	}
	tx = append(tx, types.TransactWriteItem{Put: tenantPut})
	tx = append(tx, types.TransactWriteItem{Put: s.putNewRaw(prefixAudit+id, pad(uint64(p.Audit.Version)), p.AuditJSON)})
	outboxPut, err := s.putNew(outboxPK(shard), pad(seq+1), catalog.OutboxEntry{Shard: shard, Seq: seq + 1, Event: p.Event})
	if err != nil {
		return nil, false, err
	}
	tx = append(tx, types.TransactWriteItem{Put: outboxPut})
	tx = append(tx, s.headPut(shard, seq, seq+1))

	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx})
	var cancelled *types.TransactionCanceledException
	var conflict *types.TransactionConflictException
	switch {
	case errors.As(err, &cancelled) && !retryable(cancelled):
		return nil, false, err
	case errors.As(err, &cancelled), errors.As(err, &conflict):
		// A condition failed (someone wrote the tenant, a claim or the
		// shard's head since we read them) or a concurrent transaction held an
		// item: nothing was written. The next attempt's reads see the
		// competing write and either commit after it or return the domain
		// error it caused.
		return nil, true, nil
	case err != nil:
		return nil, false, err
	}
	return p.Result, false, nil
}

// headPut moves the head of an outbox shard from seq, as the write read
// it, to next, on the condition that no other write moved it meanwhile
// (seq 0: the head does not exist yet, or is at 0). It serialises the writes of one
// shard; see the package comment.
func (s *Store) headPut(shard int, seq, next uint64) types.TransactWriteItem {
	counter := &types.Put{
		TableName: s.table,
		Item:      map[string]types.AttributeValue{attrPK: str(outboxPK(shard)), attrSK: str(skOutboxHead), attrSeq: unum(next)},
	}
	if seq == 0 {
		// Never written, or made at 0 by MigrateLayout.
		counter.ConditionExpression = aws.String("attribute_not_exists(PK) OR seq = :s")
	} else {
		counter.ConditionExpression = aws.String("seq = :s")
	}
	counter.ExpressionAttributeValues = map[string]types.AttributeValue{":s": unum(seq)}
	return types.TransactWriteItem{Put: counter}
}

// retryable reports whether every reason a transaction was cancelled is one
// that a fresh attempt can resolve: a failed condition (a concurrent write
// changed what the plan was based on), a conflict with another transaction,
// or throttling. A validation error (say, an item over 400 KB) is not.
func retryable(e *types.TransactionCanceledException) bool {
	for _, r := range e.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "", "None", "ConditionalCheckFailed", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded":
		default:
			return false
		}
	}
	return true
}

// putClaim makes h owned by owner ("" releases it) one claim version above
// c, conditioned on c still being the stored state.
func (s *Store) putClaim(h, owner string, c claim) types.TransactWriteItem {
	put := &types.Put{
		TableName: s.table,
		Item: map[string]types.AttributeValue{
			attrPK:           str(prefixHost + h),
			attrSK:           str(skClaim),
			attrOwner:        str(owner),
			attrClaimVersion: num(c.version + 1),
		},
	}
	if !c.exists {
		put.ConditionExpression = aws.String("attribute_not_exists(PK)")
	} else {
		put.ConditionExpression = aws.String("claim_version = :cv AND #o = :o")
		put.ExpressionAttributeNames = map[string]string{"#o": attrOwner}
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":cv": num(c.version), ":o": str(c.owner)}
	}
	return types.TransactWriteItem{Put: put}
}

// putNew puts v as JSON under a key that must not exist yet.
func (s *Store) putNew(pk, sk string, v any) (*types.Put, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.putNewRaw(pk, sk, raw), nil
}

// putNewRaw puts the JSON raw under a key that must not exist yet.
func (s *Store) putNewRaw(pk, sk string, raw []byte) *types.Put {
	return &types.Put{
		TableName:           s.table,
		Item:                map[string]types.AttributeValue{attrPK: str(pk), attrSK: str(sk), attrDoc: str(string(raw))},
		ConditionExpression: aws.String("attribute_not_exists(PK)"),
	}
}
