// Package dynamo is the distributed source of truth: a catalog.Store on one
// DynamoDB table. Every write commits the tenant document, its hostname
// claims, an audit record, an outbox entry and its outbox shard's head in a
// single TransactWriteItems, so the outbox holds exactly the committed
// changes, each shard in commit order.
//
// Key schema (single-table design; both keys are strings; <s> is the
// tenant's shard, catalog.OutboxShard(id, Shards), in decimal):
//
//	PK                  SK                      attributes
//	TENANTS#<s>         <tenant id>             version (N), deleted (BOOL), doc (S, JSON tenant),
//	                                            audit_head (S, hash of the newest audit record)
//	HOST#<hostname>     CLAIM                   owner (S, "" once released), claim_version (N)
//	AUDIT#<tenant id>   <version, 20 digits>    doc (S, JSON catalog.AuditRecord)
//	AUDIT#_admin        <n, 20 digits>          doc (S, JSON catalog.AuditRecord of a resync)
//	OUTBOX#<s>          #HEAD                   seq (N): the last sequence handed out in shard s
//	OUTBOX#<s>          <seq, 20 digits>        doc (S, JSON catalog.OutboxEntry)
//	META                AUDIT_HEAD#_admin       version (N), audit_head (S): head of the resync chain
//
// # Why a sharded outbox
//
// Tenants and the outbox are split into Shards shards by a hash of the
// tenant id. A write reads the head of its tenant's outbox shard and commits
// its entry at the next sequence, conditioned on the head it read: the
// writes of one shard are serialised by that condition (so each shard's
// sequence is gap-free and in commit order, and a publisher that reads a
// shard after its last position misses nothing), while writes in different
// shards touch no common item and commit concurrently. One tenant is always
// in one shard, so its changes keep their order; its writes are serialised
// by the version condition on its document anyway. Hostname claims stay
// exclusive because every claim a write moves is conditioned on the owner
// and claim version it read (see tryWrite for why no snapshot read is
// needed).
//
// The alternative, the table's own DynamoDB Stream as the change feed, was
// not taken: stream records live 24 hours and a consumer that falls further
// behind loses them (an outbox entry stays until it is published); the
// stream needs its own shard-lease machinery (the KCL's) rather than a
// Query; DynamoDB Local's streams differ from the real ones in the details
// that matter here (shard splits); and the embedded store, which has no
// stream, would then share no code path with it. Sharded heads keep the
// publisher's contract (read after a position, acknowledge up to one) per
// shard, and let several publishers split the shards between them.
//
// Tenants live in TENANTS#<shard> rather than one partition, so that no
// partition carries every tenant write. List and Export stay strongly
// consistent (a Query per shard; a GSI cannot be read consistently) but run
// shard by shard, id order within a shard: ComparePageOrder gives the order,
// and a page token (the last id of a page) still resumes it. A list by
// segment (catalog.ListOptions.Segments, catalog.SegmentOf) Queries only
// the shards that can hold its tenants: with a power of two up to Shards
// segments, exactly its Shards/n shards. Tombstones stay
// so that a re-created tenant continues the version sequence. A released
// hostname keeps its item (owner "") so that its claim version never goes
// back. Audit records of a tenant form one partition, read newest first; a
// shard's outbox is one partition whose sort key is the zero-padded
// sequence (the head, "#HEAD", sorts before every entry), so a Query returns
// it in sequence order. An idle publisher reads the Shards heads in one
// BatchGetItem per poll and Queries only the shards that moved.
//
// Audit items are only ever put, on the condition that their key does not
// exist (append-only; the IAM policy may deny UpdateItem and DeleteItem on
// leading keys AUDIT#*). Each record is hash-chained to the one before it
// (catalog.SealAudit); the chain head rides on the tenant item (audit_head),
// which the write reads and puts anyway, so chaining costs no extra read. A
// tenant item without audit_head (written before chaining) starts its chain
// at its next record.
//
// Writes are optimistic. A write reads, with strongly consistent reads, its
// shard's head first, then the tenant and the hostname claims it touches;
// it decides the outcome with catalog.PlanWrite, as the bbolt store does
// (NotFound, AlreadyExists, VersionMismatch, HostnameTaken naming the
// owner); and it commits one transaction in which every item it changes is
// conditioned on what was read (tenant version, claim owner and version,
// shard head). If the transaction is cancelled — a condition failed, another
// transaction conflicted, or throttling — nothing was written, and the write
// starts again from fresh reads (after a jittered backoff), which then
// either commit or return the domain error that the competing write caused;
// after Config.MaxAttempts it gives up as Unavailable. Two writers meet only
// when their tenants share a shard.
//
// AckOutbox deletes a shard's acknowledged entries (in batches; acking again
// finishes an interrupted ack); the head keeps counting.
//
// A transaction holds at most 100 items: 4 plus one per hostname claimed or
// released. A write that would claim and release more hostnames than that in
// one go is rejected as Invalid; split it into two updates.
//
// # Upgrading from the unsharded layout
//
// Tables written by TCS 0.x keep every tenant in partition TENANTS, one
// outbox OUTBOX and one counter (META OUTBOX_SEQ). Open refuses such a
// table, naming the way out: drain the old outbox with the old publisher,
// stop the catalog, and run MigrateLayout (`catalog --migrate-layout`) once.
//
// Files: schema.go (keys, shards, table), write.go (the I/O shell around
// catalog.PlanWrite), read.go (Get, List, History, lookups), outbox.go,
// admin.go (resync, export), migrate.go (the layout upgrade), codec.go
// (items to domain values and back).
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
	legacy, err := s.legacyLayout(ctx)
	if err != nil {
		return nil, fmt.Errorf("dynamo open: %w", err)
	}
	if legacy {
		return nil, fmt.Errorf("dynamo open: catalog table %q has the layout of TCS 0.x (one partition of tenants, one outbox): drain its outbox with the old streamer (streamer publish --drain), then run `catalog --migrate-layout` (dynamo.MigrateLayout) once, with no catalog running", *s.table)
	}
	return s, nil
}

// legacyLayout reports whether the table still has the single outbox
// counter of the layout before sharding.
func (s *Store) legacyLayout(ctx context.Context) (bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      s.table,
		Key:            key(pkMeta, legacyOutboxSeq),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return false, s.wrap(ctx, err, "dynamo check layout of table "+*s.table)
	}
	return len(out.Item) > 0, nil
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

// wrap returns domain errors and context errors as they are (a call that
// failed because ctx ended returns ctx's error), and prefixes anything else
// with the operation.
func (s *Store) wrap(ctx context.Context, err error, op string) error {
	if err == nil {
		return nil
	}
	if tenant.Passes(err) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("%s: %w", op, err)
}
