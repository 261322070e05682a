package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/spanctx"
)

// Resync transactions: outbox entries, the heads of their shards and the
// audit record with its chain head (first transaction only), at most
// maxTxItems items and well under DynamoDB's 4 MB per transaction.
const (
	maxResyncTxBytes  = 3 << 20
	maxExportAttempts = 10
)

// Resync appends one resync event per distinct tenant of reqs. See
// catalog.Store.
//
// The entries are appended in transactions of up to 100 items (an entry
// per tenant, a head per outbox shard touched; 3 MB at most); the first
// also appends the resync's audit record to the catalog.AdminAuditID chain
// (written even when no tenant was found: the request is what is audited).
// Each transaction is planned like a write: the heads of the shards of its
// tenants are read first, then the tenants and their hostname claims, and
// the transaction is conditioned on those heads, which every commit of one
// of its tenants moves; so the events of one transaction are one consistent
// snapshot, and a transaction cancelled by a concurrent write is planned
// again from fresh reads.
func (s *Store) Resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (catalog.ResyncResult, error) {
	if err := catalog.CheckResync(reqs, regions); err != nil {
		return catalog.ResyncResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return catalog.ResyncResult{}, err
	}
	reqs = catalog.MergeResync(reqs)
	regions = catalog.SortedSet(regions)
	if len(regions) == 0 {
		regions = nil
	}
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}
	return s.resync(ctx, reqs, regions, resyncAudit(ctx, catalog.ActionResync, catalog.ResyncAudit{Tenants: ids, Regions: regions}))
}

// resyncAudit is the audit record of a resync by the caller
// auth.FromContext(ctx) names; its version and time are set when it is
// committed.
func resyncAudit(ctx context.Context, action catalog.Action, what catalog.ResyncAudit) *catalog.AuditRecord {
	caller, _ := auth.FromContext(ctx)
	return &catalog.AuditRecord{TenantID: catalog.AdminAuditID, Action: action, Actor: caller.Name, Resync: &what}
}

// resync resyncs the merged reqs, appending audit with the first
// transaction.
func (s *Store) resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string, audit *catalog.AuditRecord) (catalog.ResyncResult, error) {
	var res catalog.ResyncResult
	wait := backoff.New(5*time.Millisecond, 200*time.Millisecond, backoff.Around)
	for attempt := 1; len(reqs) > 0; {
		n, done, retry, err := s.tryResync(ctx, reqs, regions, audit)
		if err != nil {
			return catalog.ResyncResult{}, s.wrap(ctx, err, "dynamo resync")
		}
		if retry {
			if attempt >= s.maxAttempts {
				return catalog.ResyncResult{}, tenant.Errorf(tenant.Unavailable, "dynamo resync: gave up after %d attempts cancelled by concurrent writes", attempt)
			}
			attempt++
			if err := wait.Wait(ctx); err != nil {
				return catalog.ResyncResult{}, err
			}
			continue
		}
		attempt = 1
		wait.Reset()
		audit = nil // committed with the first transaction
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
// if they fit in one transaction), and audit unless it is nil. It returns
// how many requests it settled and the version resynced of each found;
// retry reports that the transaction was cancelled and nothing was written.
//
// The transaction appends each tenant's entry to its shard and moves the
// heads of the shards it touches, conditioned on the heads read first: any
// write of one of its tenants moves that tenant's shard head, so the
// entries of one transaction are one consistent snapshot.
func (s *Store) tryResync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string, audit *catalog.AuditRecord) (n int, done map[string]int64, retry bool, err error) {
	// The prefix that fits: an entry per request, a head per shard, and
	// the audit record with its chain head.
	var shards []int
	seen := map[int]bool{}
	cut := 0
	for ; cut < len(reqs); cut++ {
		sh := shardOf(reqs[cut].ID)
		heads := len(shards)
		if !seen[sh] {
			heads++
		}
		if cut+1+heads+2 > maxTxItems {
			break
		}
		if !seen[sh] {
			seen[sh] = true
			shards = append(shards, sh)
		}
	}
	reqs = reqs[:cut]
	headKeys := make([]map[string]types.AttributeValue, len(shards))
	for i, sh := range shards {
		headKeys[i] = headKey(sh)
	}
	headItems, err := s.batchGet(ctx, headKeys)
	if err != nil {
		return 0, nil, false, err
	}
	heads := make(map[int]uint64, len(shards))
	for _, sh := range shards {
		if heads[sh], err = parseSeq(headItems[itemKey(outboxPK(sh), skOutboxHead)]); err != nil {
			return 0, nil, false, fmt.Errorf("outbox shard %d: %w", sh, err)
		}
	}

	keys := make([]map[string]types.AttributeValue, len(reqs), len(reqs)+1)
	for i, r := range reqs {
		keys[i] = tenantKey(r.ID)
	}
	if audit != nil {
		keys = append(keys, key(pkMeta, skAdminHead))
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return 0, nil, false, err
	}
	docs := make([]*tenant.Tenant, len(reqs))
	var hostnames []string
	for i, r := range reqs {
		st, err := parseTenant(items[itemKey(tenantPK(r.ID), r.ID)])
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
	claims, err := s.getClaims(ctx, catalog.SortedSet(hostnames))
	if err != nil {
		return 0, nil, false, err
	}
	planned := planClaims(claims)

	at := s.now().UTC().Truncate(time.Microsecond)
	trace := spanctx.Capture(ctx)
	done = map[string]int64{}
	added := map[int]uint64{}
	var tx []types.TransactWriteItem
	size := 0
	for n = 0; n < len(reqs); n++ {
		doc := docs[n]
		if doc == nil {
			continue
		}
		sh := shardOf(doc.ID)
		seq := heads[sh] + added[sh] + 1
		ev := catalog.ResyncEvent(doc, planned, reqs[n].Hostnames, regions, at, trace)
		put, err := s.putNew(outboxPK(sh), pad(seq), catalog.OutboxEntry{Shard: sh, Seq: seq, Event: ev})
		if err != nil {
			return 0, nil, false, err
		}
		itemSize := len(put.Item[attrDoc].(*types.AttributeValueMemberS).Value) + 100
		if len(tx) > 0 && size+itemSize > maxResyncTxBytes {
			break // the rest goes into the next transaction
		}
		size += itemSize
		tx = append(tx, types.TransactWriteItem{Put: put})
		added[sh]++
		done[doc.ID] = doc.Version
	}
	if len(tx) == 0 && audit == nil {
		return n, done, false, nil // none of them exists
	}
	if audit != nil {
		items, err := s.auditAdmin(items[itemKey(pkMeta, skAdminHead)], audit, at)
		if err != nil {
			return 0, nil, false, err
		}
		tx = append(tx, items...)
	}
	for _, sh := range shards {
		if k := added[sh]; k > 0 {
			tx = append(tx, s.headPut(sh, heads[sh], heads[sh]+k))
		}
	}

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

// auditAdmin returns the puts that append audit, stamped at, to the
// catalog.AdminAuditID chain whose head item is head (nil: no record yet):
// the record under a new key and the head, conditioned on the head read.
func (s *Store) auditAdmin(head map[string]types.AttributeValue, audit *catalog.AuditRecord, at time.Time) ([]types.TransactWriteItem, error) {
	var version int64
	var prev string
	headPut := &types.Put{TableName: s.table, ConditionExpression: aws.String("attribute_not_exists(PK)")}
	if len(head) > 0 {
		v, err := numAttr(head, attrVersion)
		if err != nil {
			return nil, fmt.Errorf("stored audit head of %s: %w", catalog.AdminAuditID, err)
		}
		h, ok := head[attrAuditHead].(*types.AttributeValueMemberS)
		if !ok {
			return nil, fmt.Errorf("stored audit head of %s has no hash", catalog.AdminAuditID)
		}
		version, prev = v, h.Value
		headPut.ConditionExpression = aws.String("version = :v")
		headPut.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(v)}
	}
	rec := *audit
	rec.Version, rec.At = version+1, at
	sealed, err := catalog.SealAudit(&rec, prev)
	if err != nil {
		return nil, err
	}
	headPut.Item = map[string]types.AttributeValue{
		attrPK: str(pkMeta), attrSK: str(skAdminHead), attrVersion: num(rec.Version), attrAuditHead: str(rec.Hash),
	}
	return []types.TransactWriteItem{
		{Put: s.putNewRaw(prefixAudit+catalog.AdminAuditID, pad(uint64(rec.Version)), sealed)},
		{Put: headPut},
	}, nil
}

// Export returns a page of every stored tenant, tombstones included, with
// its claims, in page order (as List). See catalog.Store.
//
// The page's tenants are read with strongly consistent Queries, then their
// claims, then their versions again: the claims of the hostnames a tenant
// holds change only when that tenant is written, so a tenant whose version
// did not move is consistent with the claims read; one that moved is read
// again on its own. Each item is thus a consistent state of its tenant; the
// page is not one snapshot across tenants (DynamoDB has no such read).
func (s *Store) Export(ctx context.Context, opts catalog.ListOptions) (catalog.ExportPage, error) {
	if err := ctx.Err(); err != nil {
		return catalog.ExportPage{}, err
	}
	if err := catalog.CheckSegment(opts); err != nil {
		return catalog.ExportPage{}, err
	}
	op := "dynamo export tenants after " + opts.After
	limit := catalog.ExportLimit(opts.Limit)
	var page catalog.ExportPage
	var docs []*tenant.Tenant
	err := s.walkTenants(ctx, opts, limit+1, func(item map[string]types.AttributeValue) (bool, error) {
		t, err := decodeTenant(item)
		if err != nil {
			return false, err
		}
		docs = append(docs, t)
		return len(docs) <= limit, nil
	})
	if err != nil {
		return catalog.ExportPage{}, s.wrap(ctx, err, op)
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
		read, err := s.getClaims(ctx, catalog.SortedSet(hostnames))
		if err != nil {
			return nil, err
		}
		claims := planClaims(read)
		ids := make([]string, len(todo))
		for j, i := range todo {
			ids[j] = docs[i].ID
			items[i] = catalog.ExportItem{Tenant: docs[i], Claims: catalog.HeldClaims(docs[i], claims)}
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
		keys[i] = tenantKey(id)
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*tenant.Tenant, len(ids))
	for _, id := range ids {
		st, err := parseTenant(items[itemKey(tenantPK(id), id)])
		if err != nil {
			return nil, err
		}
		if st != nil {
			out[id] = st.doc
		}
	}
	return out, nil
}

// ResyncAll reads a page of the stored tenants after the id after in page
// order (Export) and resyncs it (Resync, in its transactions of up to 100
// items). A tenant
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
	ids := make([]string, len(page.Items))
	for i, it := range page.Items {
		reqs[i] = catalog.ResyncRequest{ID: it.Tenant.ID}
		ids[i] = it.Tenant.ID
	}
	regions = catalog.SortedSet(regions)
	if len(regions) == 0 {
		regions = nil
	}
	res, err := s.resync(ctx, reqs, regions, resyncAudit(ctx, catalog.ActionResyncAll, catalog.ResyncAudit{All: true, After: after, Tenants: ids, Regions: regions}))
	if err != nil {
		return catalog.ResyncResult{}, "", err
	}
	res.NotFound = nil
	return res, page.Next, nil
}
