// Package dynamo is the distributed source of truth: a catalog.Store on one
// DynamoDB table. Every write commits the tenant document, its hostname
// claims, an audit record, an outbox entry and the outbox sequence counter in
// a single TransactWriteItems, so the outbox holds exactly the committed
// changes, in commit order.
//
// Key schema (single-table design; both keys are strings):
//
//	PK                  SK                      attributes
//	TENANTS             <tenant id>             version (N), deleted (BOOL), doc (S, JSON tenant),
//	                                            audit_head (S, hash of the newest audit record)
//	HOST#<hostname>     CLAIM                   owner (S, "" once released), claim_version (N)
//	AUDIT#<tenant id>   <version, 20 digits>    doc (S, JSON catalog.AuditRecord)
//	AUDIT#_admin        <n, 20 digits>          doc (S, JSON catalog.AuditRecord of a resync)
//	OUTBOX              <seq, 20 digits>        doc (S, JSON catalog.OutboxEntry)
//	META                OUTBOX_SEQ              seq (N): the last sequence handed out
//	META                AUDIT_HEAD#_admin       version (N), audit_head (S): head of the resync chain
//
// Tenants share one partition so that List can page through them in id order
// with strongly consistent reads (a GSI cannot be read consistently).
// Tombstones stay in it so that a re-created tenant continues the version
// sequence. A released hostname keeps its item (owner "") so that its claim
// version never goes back. Audit records of a tenant form one partition, read
// newest first; the outbox is one partition whose sort key is the
// zero-padded sequence, so a Query returns it in sequence order.
//
// Audit items are only ever put, on the condition that their key does not
// exist (append-only; the IAM policy may deny UpdateItem and DeleteItem on
// leading keys AUDIT#*). Each record is hash-chained to the one before it
// (catalog.SealAudit); the chain head rides on the tenant item (audit_head),
// which the write reads and puts anyway, so chaining costs no extra read. A
// tenant item without audit_head (written before chaining) starts its chain
// at its next record.
//
// Writes are optimistic. A write reads, with strongly consistent reads, the
// outbox counter first, then the tenant and the hostname claims it touches;
// it decides the outcome exactly as the bbolt store does (NotFound,
// AlreadyExists, VersionMismatch, HostnameTaken naming the owner); and it
// commits one transaction in which every item it changes is conditioned on
// what was read (tenant version, claim owner and version, counter value).
// Any commit after the counter read moves the counter, so the counter
// condition also covers what the write read but does not change (the claims
// it keeps). If the transaction is cancelled — a condition failed, another
// transaction conflicted, or throttling — nothing was written, and the write
// starts again from fresh reads, which then either commit or return the
// domain error that the competing write caused; after Config.MaxAttempts it
// gives up as Unavailable. The counter condition serialises all writes:
// sequences are handed out in commit order with no gaps, at the price of one
// write at a time per table, like the single-writer bbolt file.
//
// AckOutbox deletes acknowledged outbox entries (in batches; acking again
// finishes an interrupted ack); the counter keeps counting.
//
// A transaction holds at most 100 items: 4 plus one per hostname claimed or
// released. A write that would claim and release more hostnames than that in
// one go is rejected as Invalid; split it into two updates.
package dynamo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/dynamotable"
)

var _ catalog.Store = (*Store)(nil)

// API is the part of the DynamoDB client the store uses; *dynamodb.Client
// implements it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// Config configures Open.
type Config struct {
	// Client talks to DynamoDB. Required.
	Client API
	// Table is the source-of-truth table. Required.
	Table string
	// Now is the clock stamped on tenants, audit records and events; nil
	// means time.Now.
	Now func() time.Time
	// MaxAttempts bounds how often a write is re-planned after its
	// transaction was cancelled by a concurrent write; zero means 50.
	MaxAttempts int
}

// Store is a catalog.Store on a DynamoDB table. It is safe for concurrent
// use.
type Store struct {
	db          API
	table       *string
	now         func() time.Time
	maxAttempts int
}

// Key attribute names and fixed key values; see the package comment.
const (
	attrPK           = "PK"
	attrSK           = "SK"
	attrVersion      = "version"
	attrDeleted      = "deleted"
	attrDoc          = "doc"
	attrOwner        = "owner"
	attrClaimVersion = "claim_version"
	attrSeq          = "seq"
	attrAuditHead    = "audit_head"

	pkTenants    = "TENANTS"
	pkOutbox     = "OUTBOX"
	pkMeta       = "META"
	skClaim      = "CLAIM"
	skOutboxSeq  = "OUTBOX_SEQ"
	skAdminHead  = "AUDIT_HEAD#" + catalog.AdminAuditID
	prefixHost   = "HOST#"
	prefixAudit  = "AUDIT#"
	maxTxItems   = 100
	fixedTxItems = 4 // tenant, audit, outbox, counter
)

// Open checks that the table exists and is usable and returns a store on it.
// A missing table is an error naming it and how to create it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("dynamo open: no client")
	}
	if cfg.Table == "" {
		return nil, errors.New("dynamo open: no table name")
	}
	s := &Store{db: cfg.Client, table: aws.String(cfg.Table), now: cfg.Now, maxAttempts: cfg.MaxAttempts}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = 50
	}
	if err := s.Ping(ctx); err != nil {
		return nil, fmt.Errorf("dynamo open: %w", err)
	}
	return s, nil
}

// Close does nothing: the caller owns the client.
func (s *Store) Close() error { return nil }

// Ping checks that the table exists and is active.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	out, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: s.table})
	var missing *types.ResourceNotFoundException
	switch {
	case errors.As(err, &missing):
		return fmt.Errorf("catalog table %q does not exist: create it (PK and SK string keys; see package catalog/dynamo) with dynamo.CreateTable or from the infrastructure code in infra/", *s.table)
	case err != nil:
		return s.wrap(ctx, err, "dynamo ping table "+*s.table)
	case out.Table == nil || out.Table.TableStatus != types.TableStatusActive:
		status := types.TableStatus("unknown")
		if out.Table != nil {
			status = out.Table.TableStatus
		}
		return tenant.Errorf(tenant.Unavailable, "catalog table %q is %s, not ACTIVE", *s.table, status)
	}
	return nil
}

// CreateTableAPI is what CreateTable needs; *dynamodb.Client implements it.
type CreateTableAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// TableInput is the catalog table as the store expects it: its key schema
// and on-demand capacity. CreateTable creates it; infra/aws/home.yaml
// declares the same table (a test keeps the two in step).
func TableInput(table string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	}
}

// CreateTable creates the catalog table (on-demand capacity) and waits until
// it is active. A table that already exists is left as it is. Production
// tables come from the IaC in infra/, which adds point-in-time recovery and
// deletion protection.
func CreateTable(ctx context.Context, client CreateTableAPI, table string) error {
	if _, err := dynamotable.Create(ctx, client, TableInput(table)); err != nil {
		return fmt.Errorf("dynamo catalog: %w", err)
	}
	return nil
}

// claim is the stored state of one hostname; a hostname never claimed is
// free at claim version 0 and has no item (exists false).
type claim struct {
	owner   string
	version int64
	exists  bool
}

// Create stores a new tenant. See catalog.Store.
func (s *Store) Create(ctx context.Context, t *tenant.Tenant, actor string) (*tenant.Tenant, error) {
	if err := checkWritable(t); err != nil {
		return nil, err
	}
	return s.write(ctx, "dynamo create tenant "+t.ID, t.ID, actor, t.Hostnames, func(prev *stored) (catalog.Action, *tenant.Tenant, error) {
		if prev != nil && !prev.doc.Deleted() {
			return "", nil, tenant.Errorf(tenant.AlreadyExists, "tenant %q already exists", t.ID)
		}
		return catalog.ActionCreate, t, nil
	})
}

// Update replaces a live tenant at expectedVersion. See catalog.Store.
func (s *Store) Update(ctx context.Context, t *tenant.Tenant, expectedVersion int64, actor string) (*tenant.Tenant, error) {
	if err := checkWritable(t); err != nil {
		return nil, err
	}
	return s.write(ctx, "dynamo update tenant "+t.ID, t.ID, actor, t.Hostnames, func(prev *stored) (catalog.Action, *tenant.Tenant, error) {
		if prev == nil || prev.doc.Deleted() {
			return "", nil, notFound(t.ID)
		}
		if prev.doc.Version != expectedVersion {
			return "", nil, versionMismatch(t.ID, prev.doc.Version, expectedVersion)
		}
		return catalog.ActionUpdate, t, nil
	})
}

// Delete replaces a live tenant by a tombstone and releases its hostnames.
// See catalog.Store.
func (s *Store) Delete(ctx context.Context, id string, expectedVersion int64, actor string) (*tenant.Tenant, error) {
	return s.write(ctx, "dynamo delete tenant "+id, id, actor, nil, func(prev *stored) (catalog.Action, *tenant.Tenant, error) {
		if prev == nil || prev.doc.Deleted() {
			return "", nil, notFound(id)
		}
		if expectedVersion != 0 && prev.doc.Version != expectedVersion {
			return "", nil, versionMismatch(id, prev.doc.Version, expectedVersion)
		}
		return catalog.ActionDelete, &tenant.Tenant{ID: id, Status: tenant.StatusDeleted}, nil
	})
}

// stored is a tenant item as read: the document (tombstone or not) and the
// hash of its newest audit record ("" if written before chaining).
type stored struct {
	doc       *tenant.Tenant
	auditHead string
}

// decideFunc checks a write against the stored tenant (nil if none) and
// returns the action and the document to store (version and stamps are set
// by write).
type decideFunc func(prev *stored) (catalog.Action, *tenant.Tenant, error)

// write plans and commits one change, re-planning from fresh reads whenever
// its transaction is cancelled by a concurrent write.
func (s *Store) write(ctx context.Context, op, id, actor string, hostnames []string, decide decideFunc) (*tenant.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		out, retry, err := s.tryWrite(ctx, id, actor, hostnames, decide)
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		if !retry {
			return out, nil
		}
		if attempt >= s.maxAttempts {
			return nil, tenant.Errorf(tenant.Unavailable, "%s: gave up after %d attempts cancelled by concurrent writes", op, attempt)
		}
		// Jittered exponential backoff, so that writers that collided on the
		// outbox counter do not collide again in lock step.
		sleep := backoff/2 + rand.N(backoff)
		backoff = min(backoff*2, 200*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(sleep):
		}
	}
}

// tryWrite makes one attempt. retry reports that the transaction was
// cancelled (nothing written) and the write must be planned again.
func (s *Store) tryWrite(ctx context.Context, id, actor string, hostnames []string, decide decideFunc) (out *tenant.Tenant, retry bool, err error) {
	// The outbox counter is read first, on its own: every write that
	// commits after this read moves it, and the transaction is conditioned
	// on it, so the later reads (one batch for the tenant and the claims of
	// the hostnames the write asks for, one for those it drops) cannot be
	// torn by a concurrent commit without the transaction being cancelled.
	// BatchGetItem alone would not do: it reads its items in no set order.
	seq, err := s.getSeq(ctx)
	if err != nil {
		return nil, false, err
	}
	want := sortedSet(hostnames)
	keys := []map[string]types.AttributeValue{key(pkTenants, id)}
	for _, h := range want {
		keys = append(keys, key(prefixHost+h, skClaim))
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, false, err
	}
	prev, err := parseTenant(items[itemKey(pkTenants, id)])
	if err != nil {
		return nil, false, err
	}
	action, next, err := decide(prev)
	if err != nil {
		return nil, false, err
	}
	if !slices.Equal(sortedSet(next.Hostnames), want) {
		return nil, false, fmt.Errorf("internal: write of tenant %s read the claims of %v but stores %v", id, want, next.Hostnames)
	}
	version := int64(1)
	var prevDoc *tenant.Tenant
	if prev != nil {
		version = prev.doc.Version + 1
		prevDoc = prev.doc
	}
	var dropped []string
	if prevDoc != nil && !prevDoc.Deleted() {
		for _, h := range sortedSet(prevDoc.Hostnames) {
			if _, kept := slices.BinarySearch(want, h); !kept {
				dropped = append(dropped, h)
			}
		}
	}
	claims, err := parseClaims(items, want)
	if err != nil {
		return nil, false, err
	}
	if len(dropped) > 0 {
		more, err := s.getClaims(ctx, dropped)
		if err != nil {
			return nil, false, err
		}
		maps.Copy(claims, more)
	}

	at := s.now().UTC().Truncate(time.Microsecond)
	doc := next.Clone()
	doc.Version = version
	doc.UpdatedAt = at
	doc.UpdatedBy = actor

	var tx []types.TransactWriteItem
	var held, released []tenant.Claim
	for _, h := range want {
		c := claims[h]
		if c.owner != id {
			if c.owner != "" {
				return nil, false, tenant.Errorf(tenant.HostnameTaken, "hostname %q is owned by tenant %q", h, c.owner)
			}
			tx = append(tx, s.putClaim(h, id, c))
			c = claim{owner: id, version: c.version + 1, exists: true}
		}
		held = append(held, tenant.Claim{Hostname: h, Version: c.version})
	}
	for _, h := range dropped {
		c := claims[h]
		if c.owner != id {
			continue // not ours to release
		}
		tx = append(tx, s.putClaim(h, "", c))
		released = append(released, tenant.Claim{Hostname: h, Version: c.version + 1})
	}
	if n := len(tx) + fixedTxItems; n > maxTxItems {
		return nil, false, tenant.FieldErrors([]tenant.FieldError{{Field: "hostnames",
			Reason: fmt.Sprintf("this change claims and releases %d hostnames; the DynamoDB store takes at most %d in one write: split it into two updates", len(tx), maxTxItems-fixedTxItems)}})
	}

	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, false, err
	}
	// Hand back what was stored, decoded, so that writes return exactly what
	// a later Get returns (nil vs empty maps included).
	out = new(tenant.Tenant)
	if err := decode(string(raw), out, "tenant", id); err != nil {
		return nil, false, err
	}
	var before *tenant.Tenant
	if action != catalog.ActionCreate {
		before = prevDoc
	}
	rec := catalog.AuditRecord{TenantID: id, Version: version, Action: action, Actor: actor, At: at, Before: before, After: doc}
	var prevHead string
	if prev != nil {
		prevHead = prev.auditHead
	}
	sealed, err := catalog.SealAudit(&rec, prevHead)
	if err != nil {
		return nil, false, err
	}
	tenantPut := &types.Put{
		TableName: s.table,
		Item: map[string]types.AttributeValue{
			attrPK:        str(pkTenants),
			attrSK:        str(id),
			attrVersion:   num(version),
			attrDeleted:   &types.AttributeValueMemberBOOL{Value: doc.Deleted()},
			attrDoc:       str(string(raw)),
			attrAuditHead: str(rec.Hash),
		},
	}
	if prev == nil {
		tenantPut.ConditionExpression = aws.String("attribute_not_exists(PK)")
	} else {
		tenantPut.ConditionExpression = aws.String("version = :v")
		tenantPut.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(prev.doc.Version)}
	}
	tx = append(tx, types.TransactWriteItem{Put: tenantPut})

	tx = append(tx, types.TransactWriteItem{Put: s.putNewRaw(prefixAudit+id, pad(uint64(version)), sealed)})

	entry := catalog.OutboxEntry{Seq: seq + 1, Event: tenant.ChangeEvent{
		TenantID:    id,
		Version:     version,
		Tenant:      doc,
		Claims:      held,
		Released:    released,
		CommittedAt: at,
	}}
	outboxPut, err := s.putNew(pkOutbox, pad(seq+1), entry)
	if err != nil {
		return nil, false, err
	}
	tx = append(tx, types.TransactWriteItem{Put: outboxPut})

	tx = append(tx, s.counterPut(seq, seq+1))

	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx})
	var cancelled *types.TransactionCanceledException
	var conflict *types.TransactionConflictException
	switch {
	case errors.As(err, &cancelled) && !retryable(cancelled):
		return nil, false, err
	case errors.As(err, &cancelled), errors.As(err, &conflict):
		// A condition failed (someone wrote the tenant, a claim or the
		// counter since we read them) or a concurrent transaction held an
		// item: nothing was written. The next attempt's reads see the
		// competing write and either commit after it or return the domain
		// error it caused.
		return nil, true, nil
	case err != nil:
		return nil, false, err
	}
	return out, false, nil
}

// retryable reports whether every reason a transaction was cancelled is one
// that a fresh attempt can resolve: a failed condition (a concurrent write
// changed what the plan was based on), a conflict with another transaction,
// or throttling. A validation error (say, an item over 400 KB) is not.
// counterPut moves the outbox counter from seq, as the write read it, to
// next, on the condition that no other write moved it meanwhile (seq 0: the
// counter does not exist yet). It serialises all writes; see the package
// comment.
func (s *Store) counterPut(seq, next uint64) types.TransactWriteItem {
	counter := &types.Put{
		TableName: s.table,
		Item:      map[string]types.AttributeValue{attrPK: str(pkMeta), attrSK: str(skOutboxSeq), attrSeq: unum(next)},
	}
	if seq == 0 {
		counter.ConditionExpression = aws.String("attribute_not_exists(PK)")
	} else {
		counter.ConditionExpression = aws.String("seq = :s")
		counter.ExpressionAttributeValues = map[string]types.AttributeValue{":s": unum(seq)}
	}
	return types.TransactWriteItem{Put: counter}
}

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

// List returns a page of live tenants in id order. See catalog.Store.
func (s *Store) List(ctx context.Context, opts catalog.ListOptions) (catalog.Page, error) {
	if err := ctx.Err(); err != nil {
		return catalog.Page{}, err
	}
	limit := catalog.PageLimit(opts.Limit)
	in := &dynamodb.QueryInput{
		TableName:                 s.table,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(pkTenants)},
		// Tombstones are read and skipped here rather than by a filter
		// expression: a filter applies after Limit, so pages would come back
		// short anyway.
		Limit: aws.Int32(int32(limit + 1)),
	}
	if opts.After != "" {
		in.KeyConditionExpression = aws.String("PK = :pk AND SK > :after")
		in.ExpressionAttributeValues[":after"] = str(opts.After)
	}
	var page catalog.Page
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return catalog.Page{}, s.wrap(ctx, err, "dynamo list tenants after "+opts.After)
		}
		for _, item := range out.Items {
			if b, ok := item[attrDeleted].(*types.AttributeValueMemberBOOL); ok && b.Value {
				continue
			}
			t, err := decodeTenant(item)
			if err != nil {
				return catalog.Page{}, s.wrap(ctx, err, "dynamo list tenants after "+opts.After)
			}
			if len(page.Tenants) == limit {
				// A further live tenant exists: there is a next page.
				page.Next = page.Tenants[limit-1].ID
				return page, nil
			}
			page.Tenants = append(page.Tenants, t)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return page, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
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
	var out []catalog.AuditRecord
	for {
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, s.wrap(ctx, err, op)
		}
		for _, item := range res.Items {
			var rec catalog.AuditRecord
			if err := decodeItem(item, &rec, "audit record"); err != nil {
				return nil, s.wrap(ctx, err, op)
			}
			out = append(out, rec)
		}
		if len(out) >= limit || len(res.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
		in.Limit = aws.Int32(int32(limit - len(out)))
	}
}

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

// getTenant returns the stored item of id, tombstone or not, or nil.
func (s *Store) getTenant(ctx context.Context, id string) (*stored, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      s.table,
		Key:            key(pkTenants, id),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	return parseTenant(out.Item)
}

func parseTenant(item map[string]types.AttributeValue) (*stored, error) {
	if len(item) == 0 {
		return nil, nil
	}
	t, err := decodeTenant(item)
	if err != nil {
		return nil, err
	}
	st := &stored{doc: t}
	if h, ok := item[attrAuditHead].(*types.AttributeValueMemberS); ok {
		st.auditHead = h.Value
	}
	return st, nil
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

// parseClaims picks the claims of hostnames out of items (keyed by itemKey);
// a hostname without an item is free at claim version 0.
func parseClaims(items map[string]map[string]types.AttributeValue, hostnames []string) (map[string]claim, error) {
	claims := make(map[string]claim, len(hostnames))
	for _, h := range hostnames {
		item := items[itemKey(prefixHost+h, skClaim)]
		if item == nil {
			claims[h] = claim{}
			continue
		}
		v, err := numAttr(item, attrClaimVersion)
		if err != nil {
			return nil, fmt.Errorf("stored hostname claim %s: %w", h, err)
		}
		c := claim{version: v, exists: true}
		if owner, ok := item[attrOwner].(*types.AttributeValueMemberS); ok {
			c.owner = owner.Value
		}
		claims[h] = c
	}
	return claims, nil
}

// batchGet reads keys with strongly consistent reads, 100 at a time,
// resending what DynamoDB leaves unprocessed. It returns the items found,
// keyed by itemKey. The reads are not one snapshot; writes condition every
// item they change and the outbox counter (read before them), so a write
// planned on reads torn by a concurrent commit is cancelled, not committed.
func (s *Store) batchGet(ctx context.Context, keys []map[string]types.AttributeValue) (map[string]map[string]types.AttributeValue, error) {
	items := make(map[string]map[string]types.AttributeValue, len(keys))
	for batch := range slices.Chunk(keys, 100) {
		req := map[string]types.KeysAndAttributes{*s.table: {Keys: batch, ConsistentRead: aws.Bool(true)}}
		for backoff := 10 * time.Millisecond; ; backoff = min(backoff*2, time.Second) {
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
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
		}
	}
	return items, nil
}

func itemKey(pk, sk string) string { return pk + "\x00" + sk }

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

// checkWritable rejects what no store can write whatever Prepare let through:
// no tenant, no id, or a caller-made tombstone (only Delete makes those).
func checkWritable(t *tenant.Tenant) error {
	switch {
	case t == nil:
		return tenant.Errorf(tenant.Invalid, "no tenant")
	case t.ID == "":
		return tenant.FieldErrors([]tenant.FieldError{{Field: "id", Reason: "required"}})
	case t.Deleted():
		return tenant.FieldErrors([]tenant.FieldError{{Field: "status", Reason: "DELETED is set only by a delete"}})
	}
	return nil
}

func notFound(id string) error {
	return tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
}

func versionMismatch(id string, stored, expected int64) error {
	return tenant.Errorf(tenant.VersionMismatch, "tenant %q is at version %d, not %d", id, stored, expected)
}

func decodeTenant(item map[string]types.AttributeValue) (*tenant.Tenant, error) {
	t := new(tenant.Tenant)
	if err := decodeItem(item, t, "tenant"); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeItem unmarshals the JSON document of a stored item.
func decodeItem(item map[string]types.AttributeValue, into any, what string) error {
	sk, _ := item[attrSK].(*types.AttributeValueMemberS)
	var k string
	if sk != nil {
		k = sk.Value
	}
	doc, ok := item[attrDoc].(*types.AttributeValueMemberS)
	if !ok {
		return fmt.Errorf("stored %s %s has no document", what, k)
	}
	return decode(doc.Value, into, what, k)
}

// decode unmarshals a stored document. Its errors never keep a *tenant.Error
// (which a strict UnmarshalJSON in package tenant may return): a stored
// document that fails to decode is corruption or skew between versions, an
// internal error, not the caller's invalid input.
func decode(raw string, into any, what, key string) error {
	if err := json.Unmarshal([]byte(raw), into); err != nil {
		return fmt.Errorf("decode stored %s %s: %s", what, key, err)
	}
	return nil
}

func numAttr(item map[string]types.AttributeValue, name string) (int64, error) {
	n, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("no number %s", name)
	}
	return strconv.ParseInt(n.Value, 10, 64)
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: str(pk), attrSK: str(sk)}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func unum(n uint64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(n, 10)}
}

// pad formats n so that string order is numeric order.
func pad(n uint64) string { return fmt.Sprintf("%020d", n) }

// sortedSet returns the distinct values of s in order.
func sortedSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// wrap returns domain errors and context errors as they are (a call that
// failed because ctx ended returns ctx's error), and prefixes anything else
// with the operation.
func (s *Store) wrap(ctx context.Context, err error, op string) error {
	if err == nil {
		return nil
	}
	var domain *tenant.Error
	if errors.As(err, &domain) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("%s: %w", op, err)
}
