package dynamo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Resync transactions: up to maxTxItems-1 outbox entries and the counter,
// and well under DynamoDB's 4 MB per transaction.
const (
	maxResyncPerTx    = maxTxItems - 1
	maxResyncTxBytes  = 3 << 20
	maxExportAttempts = 10
)

// Resync appends one resync event per distinct tenant of reqs. See
// catalog.Store.
//
// The entries are appended in transactions of up to 99 (and 3 MB). Each
// transaction is planned like a write: the outbox counter is read first,
// then the tenants and their hostname claims, and the transaction is
// conditioned on the counter, which every commit moves; so the events of one
// transaction are one consistent snapshot, and a transaction cancelled by a
// concurrent write is planned again from fresh reads.
func (s *Store) Resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (catalog.ResyncResult, error) {
	if err := catalog.CheckResync(reqs, regions); err != nil {
		return catalog.ResyncResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return catalog.ResyncResult{}, err
	}
	reqs = catalog.MergeResync(reqs)
	regions = sortedSet(regions)
	if len(regions) == 0 {
		regions = nil
	}
	var res catalog.ResyncResult
	backoff := 5 * time.Millisecond
	for attempt := 1; len(reqs) > 0; {
		n, done, retry, err := s.tryResync(ctx, reqs[:min(len(reqs), maxResyncPerTx)], regions)
		if err != nil {
			return catalog.ResyncResult{}, s.wrap(ctx, err, "dynamo resync")
		}
		if retry {
			if attempt >= s.maxAttempts {
				return catalog.ResyncResult{}, tenant.Errorf(tenant.Unavailable, "dynamo resync: gave up after %d attempts cancelled by concurrent writes", attempt)
			}
			attempt++
			sleep := backoff/2 + rand.N(backoff)
			backoff = min(backoff*2, 200*time.Millisecond)
			select {
			case <-ctx.Done():
				return catalog.ResyncResult{}, ctx.Err()
			case <-time.After(sleep):
			}
			continue
		}
		attempt, backoff = 1, 5*time.Millisecond
		for _, r := range reqs[:n] {
			if v, ok := done[r.ID]; ok {
				res.Resynced = append(res.Resynced, catalog.ResyncedTenant{ID: r.ID, Version: v})
			} else {
				res.NotFound = append(res.NotFound, r.ID)
			}
		}
		reqs = reqs[n:]
	}
	return res, nil
}

// tryResync plans and commits the resync of a prefix of reqs (all of them
// if they fit in one transaction). It returns how many requests it settled
// and the version resynced of each found; retry reports that the
// transaction was cancelled and nothing was written.
func (s *Store) tryResync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (n int, done map[string]int64, retry bool, err error) {
	seq, err := s.getSeq(ctx)
	if err != nil {
		return 0, nil, false, err
	}
	keys := make([]map[string]types.AttributeValue, len(reqs))
	for i, r := range reqs {
		keys[i] = key(pkTenants, r.ID)
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return 0, nil, false, err
	}
	docs := make([]*tenant.Tenant, len(reqs))
	var hostnames []string
	for i, r := range reqs {
		st, err := parseTenant(items[itemKey(pkTenants, r.ID)])
		if err != nil {
			return 0, nil, false, err
		}
		if st == nil {
			continue
		}
		docs[i] = st.doc
		hostnames = append(hostnames, st.doc.Hostnames...)
		hostnames = append(hostnames, r.Hostnames...)
	}
	claims, err := s.getClaims(ctx, sortedSet(hostnames))
	if err != nil {
		return 0, nil, false, err
	}

	at := s.now().UTC().Truncate(time.Microsecond)
	done = map[string]int64{}
	var tx []types.TransactWriteItem
	size := 0
	for n = 0; n < len(reqs); n++ {
		doc := docs[n]
		if doc == nil {
			continue
		}
		ev := tenant.ChangeEvent{
			TenantID:    doc.ID,
			Version:     doc.Version,
			Tenant:      doc,
			Claims:      heldClaims(claims, doc),
			CommittedAt: at,
			Resync:      true,
			Regions:     regions,
		}
		for _, h := range reqs[n].Hostnames {
			if c := claims[h]; !doc.HasHostname(h) && c.exists && c.owner == "" {
				ev.Released = append(ev.Released, tenant.Claim{Hostname: h, Version: c.version})
			}
		}
		put, err := s.putNew(pkOutbox, pad(seq+uint64(len(tx))+1), catalog.OutboxEntry{Seq: seq + uint64(len(tx)) + 1, Event: ev})
		if err != nil {
			return 0, nil, false, err
		}
		itemSize := len(put.Item[attrDoc].(*types.AttributeValueMemberS).Value) + 100
		if len(tx) > 0 && size+itemSize > maxResyncTxBytes {
			break // the rest goes into the next transaction
		}
		size += itemSize
		tx = append(tx, types.TransactWriteItem{Put: put})
		done[doc.ID] = doc.Version
	}
	if len(tx) == 0 {
		return n, done, false, nil // none of them exists
	}
	tx = append(tx, s.counterPut(seq, seq+uint64(len(tx))))

	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx})
	var cancelled *types.TransactionCanceledException
	var conflict *types.TransactionConflictException
	switch {
	case errors.As(err, &cancelled) && !retryable(cancelled):
		return 0, nil, false, err
	case errors.As(err, &cancelled), errors.As(err, &conflict):
		return 0, nil, true, nil
	case err != nil:
		return 0, nil, false, err
	}
	return n, done, false, nil
}

// heldClaims returns the claims of the hostnames doc holds, sorted by
// hostname. A hostname whose claim names another owner (which a commit never
// leaves behind) is left out rather than claimed for doc.
func heldClaims(claims map[string]claim, doc *tenant.Tenant) []tenant.Claim {
	var out []tenant.Claim
	for _, h := range sortedSet(doc.Hostnames) {
		if c := claims[h]; c.owner == doc.ID {
			out = append(out, tenant.Claim{Hostname: h, Version: c.version})
		}
	}
	return out
}

// Export returns a page of every stored tenant, tombstones included, with
// its claims. See catalog.Store.
//
// The page's tenants are read with one strongly consistent Query, then their
// claims, then their versions again: the claims of the hostnames a tenant
// holds change only when that tenant is written, so a tenant whose version
// did not move is consistent with the claims read; one that moved is read
// again on its own. Each item is thus a consistent state of its tenant; the
// page is not one snapshot across tenants (DynamoDB has no such read).
func (s *Store) Export(ctx context.Context, opts catalog.ListOptions) (catalog.ExportPage, error) {
	if err := ctx.Err(); err != nil {
		return catalog.ExportPage{}, err
	}
	op := "dynamo export tenants after " + opts.After
	limit := catalog.ExportLimit(opts.Limit)
	in := &dynamodb.QueryInput{
		TableName:                 s.table,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(pkTenants)},
		Limit:                     aws.Int32(int32(limit + 1)),
	}
	if opts.After != "" {
		in.KeyConditionExpression = aws.String("PK = :pk AND SK > :after")
		in.ExpressionAttributeValues[":after"] = str(opts.After)
	}
	var page catalog.ExportPage
	var docs []*tenant.Tenant
	for len(docs) <= limit {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return catalog.ExportPage{}, s.wrap(ctx, err, op)
		}
		for _, item := range out.Items {
			t, err := decodeTenant(item)
			if err != nil {
				return catalog.ExportPage{}, s.wrap(ctx, err, op)
			}
			docs = append(docs, t)
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
		in.Limit = aws.Int32(int32(limit + 1 - len(docs)))
	}
	if len(docs) > limit {
		docs = docs[:limit]
		page.Next = docs[limit-1].ID
	}
	items, err := s.consistentItems(ctx, docs)
	if err != nil {
		return catalog.ExportPage{}, s.wrap(ctx, err, op)
	}
	page.Items = items
	return page, nil
}

// consistentItems pairs each document with the claims of its hostnames,
// reading again any tenant written while its claims were read.
func (s *Store) consistentItems(ctx context.Context, docs []*tenant.Tenant) ([]catalog.ExportItem, error) {
	items := make([]catalog.ExportItem, len(docs))
	todo := make([]int, len(docs)) // indexes of docs still to settle
	for i := range docs {
		todo[i] = i
	}
	for attempt := 1; len(todo) > 0; attempt++ {
		if attempt > maxExportAttempts {
			return nil, tenant.Errorf(tenant.Unavailable, "tenant %s changed on each of %d reads", docs[todo[0]].ID, maxExportAttempts)
		}
		var hostnames []string
		for _, i := range todo {
			hostnames = append(hostnames, docs[i].Hostnames...)
		}
		claims, err := s.getClaims(ctx, sortedSet(hostnames))
		if err != nil {
			return nil, err
		}
		ids := make([]string, len(todo))
		for j, i := range todo {
			ids[j] = docs[i].ID
			items[i] = catalog.ExportItem{Tenant: docs[i], Claims: heldClaims(claims, docs[i])}
		}
		now, err := s.getTenants(ctx, ids)
		if err != nil {
			return nil, err
		}
		var again []int
		for _, i := range todo {
			cur := now[docs[i].ID]
			if cur == nil {
				return nil, fmt.Errorf("tenant %s vanished from the table", docs[i].ID)
			}
			if cur.Version != docs[i].Version {
				docs[i] = cur
				again = append(again, i)
			}
		}
		todo = again
	}
	return items, nil
}

// getTenants reads the stored documents of ids, which must be distinct
// (strongly consistent).
func (s *Store) getTenants(ctx context.Context, ids []string) (map[string]*tenant.Tenant, error) {
	keys := make([]map[string]types.AttributeValue, len(ids))
	for i, id := range ids {
		keys[i] = key(pkTenants, id)
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*tenant.Tenant, len(ids))
	for _, id := range ids {
		st, err := parseTenant(items[itemKey(pkTenants, id)])
		if err != nil {
			return nil, err
		}
		if st != nil {
			out[id] = st.doc
		}
	}
	return out, nil
}

// ResyncAll reads a page of the stored tenants after the id after (Export)
// and resyncs it (Resync, in its transactions of up to 99 entries). A tenant
// purged between the two is skipped rather than reported: ResyncAll names
// no ids. See catalog.Store.
func (s *Store) ResyncAll(ctx context.Context, after string, limit int, regions []string) (catalog.ResyncResult, string, error) {
	if err := catalog.CheckResyncAll(after, regions); err != nil {
		return catalog.ResyncResult{}, "", err
	}
	page, err := s.Export(ctx, catalog.ListOptions{After: after, Limit: catalog.ResyncAllLimit(limit)})
	if err != nil {
		return catalog.ResyncResult{}, "", err
	}
	if len(page.Items) == 0 {
		return catalog.ResyncResult{}, "", nil
	}
	reqs := make([]catalog.ResyncRequest, len(page.Items))
	for i, it := range page.Items {
		reqs[i] = catalog.ResyncRequest{ID: it.Tenant.ID}
	}
	res, err := s.Resync(ctx, reqs, regions)
	if err != nil {
		return catalog.ResyncResult{}, "", err
	}
	res.NotFound = nil
	return res, page.Next, nil
}
