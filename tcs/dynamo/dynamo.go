// Package dynamo is the distributed regional replica table: a tcs.Replica and
// tcs.Scanner on one DynamoDB table per region (named by TableName, created
// by `tcsctl infra apply`, CreateTable or infra/cloudformation/region.yaml).
// Importers alias it (replicadynamo), since catalog/dynamo is the source of
// truth's backend.
//
// # Key schema
//
// The table has one string partition key, PK, and no sort key:
//
//	PK              attributes
//	T#<tenant id>   version (N), deleted (BOOL), doc (S, JSON tenant.Tenant),
//	                rev (N, bumped on every write of the item),
//	                pending (S, JSON; only while a split apply is unfinished)
//	H#<hostname>    owner (S, tenant id, "" once released), claim_version (N)
//
// Every document and every hostname record is its own partition key, so a
// read-heavy table spreads lookups over all of its partitions by hash; there
// is no shared partition (such as the catalog's TENANTS) whose 3,000 reads a
// second would cap a region. A lookup reads two items, the hostname record
// and then its owner's document; the lookup cache in front of the table
// absorbs a hot tenant. Tombstones stay (deleted true) so that a stale event
// cannot resurrect a deleted tenant, and a released hostname keeps its item
// (owner "") so that an older claim cannot take it back.
//
// # Apply
//
// Apply runs tcs.ApplyEvent, the rules every backend shares, over a view of
// the table read with strongly consistent reads — one BatchGetItem for the
// document and every hostname the event names, one more for hostnames only
// the stored document holds — with its writes buffered. It then commits the
// writes in one TransactWriteItems in which every item is conditioned on what
// was read: the document on not existing or on its read rev (which covers
// version, deleted, doc and pending), each hostname record on not existing
// or on its read owner and claim version. Reads that decide not to write an
// item need no condition: records only move forward in claim version (a
// decision "not newer" stays true), and the document condition serialises
// everything that depends on the stored document. If the transaction is
// cancelled (a condition failed, a concurrent transaction conflicted, or
// DynamoDB throttled) nothing was written; Apply reads again and decides
// again, up to Config.MaxAttempts times with jittered exponential backoff,
// then gives up as Unavailable. An event that changes nothing (a duplicate,
// a replay, a stale event whose releases are already applied) writes
// nothing.
//
// # The 100-item transaction limit
//
// A transaction holds at most 100 items. A tenant holds at most
// tenant.MaxHostnames (100) hostnames, so the worst event writes 301: its
// document, a claim for each of the 100 hostnames it holds (a replica that
// missed earlier events has none of them), the release of 100 hostnames the
// previous version held, and the unmapping of 100 more that the stored, even
// older document held. Such events are legitimate — the bbolt source of
// truth emits them, and even the DynamoDB one, which limits what one write
// changes, emits events that hold 100 hostnames and reach a replica that
// missed the earlier versions — so rejecting them would leave the region
// diverged for good. Apply splits them instead:
//
//  1. One transaction writes the document, conditioned as always, with a
//     pending attribute that records the rest of the work: the event's
//     claims and releases, the resync flag and the previous document's
//     version and hostnames (what ApplyEvent read).
//  2. Follow-up transactions of up to 99 hostname records each finish it.
//     Each is decided afresh by ApplyEvent, replayed against the recorded
//     previous document, and carries a condition on the document's rev, so
//     none commits once the document moved on; the last one also removes
//     pending.
//
// Every Apply of a tenant whose document has pending finishes it first, so a
// split apply interrupted by a crash or an error is completed by the
// redelivery of its event (the applier retries until Apply succeeds) or by
// the tenant's next event; no other decision is ever made against a
// document with unfinished work. While it is unfinished, lookups see a state
// the region could also be in if the event had not arrived yet: a hostname
// the new document holds but whose record still names its previous owner
// resolves as before, and one the new document dropped no longer resolves
// (tcs.LookupIn checks that the owner's document lists the hostname). Events
// that do not replace the document write only releases, which are safe in
// any number of transactions of 100.
//
// # Consistency of lookups
//
// LookupHostname and GetTenant read with strongly consistent reads unless
// Config.EventualLookups is set. The lookup cache installs a fill that began
// after an invalidation (docs/architecture.md, invariant 4: the invalidation is sent
// after Apply returns), so that fill must see the applied write. An
// eventually consistent read, served by any of the partition's replicas, can
// return the state from before the apply for up to about a second; the
// cache refuses an older version of the invalidated tenant, but not the
// previous owner of a moved hostname or a "not found" for a new claim, which
// it would then serve until its TTL. EventualLookups halves the read cost and
// is only for deployments that accept TTL-bounded staleness after hostname
// moves.
package dynamo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/dynamotable"
	"github.com/tcs-dev/tcs/tcs"
)

var (
	_ tcs.Replica = (*Replica)(nil)
	_ tcs.Scanner = (*Replica)(nil)
)

// API is the part of the DynamoDB client the replica uses; *dynamodb.Client
// implements it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// Defaults for the zero fields of Config, and the page size of the scans.
const (
	DefaultMaxAttempts = 20
	DefaultScanLimit   = 500
	// DefaultTablePrefix is TableName's prefix when none is given.
	DefaultTablePrefix = "tcs"
)

// Config configures Open.
type Config struct {
	// Client talks to DynamoDB in the replica's region. Required.
	Client API
	// Table is the region's replica table (see TableName). Required.
	Table string
	// EventualLookups makes LookupHostname and GetTenant read with
	// eventually consistent reads, at half the cost. False, the default,
	// reads strongly consistent, which the lookup cache's no-stale-fill rule
	// relies on: see the package comment before setting it. Apply always
	// reads strongly consistent.
	EventualLookups bool
	// MaxAttempts bounds how often Apply reads and decides again after a
	// cancelled transaction, throttling or a transient DynamoDB error before
	// it gives up as Unavailable; zero means DefaultMaxAttempts.
	MaxAttempts int
}

// Replica is a tcs.Replica on a DynamoDB table. It is safe for concurrent
// use, also by several processes on one table.
type Replica struct {
	db          API
	table       *string
	consistent  *bool
	maxAttempts int
}

// Attribute names and key prefixes; see the package comment.
const (
	attrPK           = "PK"
	attrVersion      = "version"
	attrDeleted      = "deleted"
	attrDoc          = "doc"
	attrRev          = "rev"
	attrPending      = "pending"
	attrOwner        = "owner"
	attrClaimVersion = "claim_version"

	prefixDoc  = "T#"
	prefixHost = "H#"

	maxTxItems  = 100 // TransactWriteItems
	maxBatchGet = 100 // BatchGetItem
)

// TableName is the replica table of region: "<prefix>-replica-<region>",
// e.g. tcs-replica-eu-west-1. An empty prefix means DefaultTablePrefix.
// infra/cloudformation/region.yaml uses the same scheme.
func TableName(prefix, region string) string {
	if prefix == "" {
		prefix = DefaultTablePrefix
	}
	return prefix + "-replica-" + region
}

// TableInput is the replica table as Open expects it: PK (string) as its
// only key, on-demand capacity. The CloudFormation template adds
// point-in-time recovery and encryption settings.
func TableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName: aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
		},
		BillingMode: types.BillingModePayPerRequest,
	}
}

// CreateTableAPI is what CreateTable needs; *dynamodb.Client implements it.
type CreateTableAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// CreateTable creates the replica table named name (TableInput) and waits
// until it is active. A table that already exists is left as it is.
func CreateTable(ctx context.Context, client CreateTableAPI, name string) error {
	if _, err := dynamotable.Create(ctx, client, TableInput(name)); err != nil {
		return fmt.Errorf("dynamo replica: %w", err)
	}
	return nil
}

// Open checks that the table exists, is active and has the replica's key
// schema, and returns a replica on it. A missing table is an error naming it
// and the command that creates it.
func Open(ctx context.Context, cfg Config) (*Replica, error) {
	if cfg.Client == nil {
		return nil, errors.New("dynamo replica open: no client")
	}
	if cfg.Table == "" {
		return nil, errors.New("dynamo replica open: no table name")
	}
	r := &Replica{
		db:          cfg.Client,
		table:       aws.String(cfg.Table),
		consistent:  aws.Bool(!cfg.EventualLookups),
		maxAttempts: cfg.MaxAttempts,
	}
	if r.maxAttempts <= 0 {
		r.maxAttempts = DefaultMaxAttempts
	}
	desc, err := r.describe(ctx)
	if err != nil {
		return nil, fmt.Errorf("dynamo replica open: %w", err)
	}
	if err := checkKeySchema(desc); err != nil {
		return nil, fmt.Errorf("dynamo replica open: replica table %q %v: it is not a TCS replica table (see tcs/dynamo.TableInput)", cfg.Table, err)
	}
	return r, nil
}

// checkKeySchema reports how desc differs from TableInput's key schema.
func checkKeySchema(desc *types.TableDescription) error {
	ks := desc.KeySchema
	if len(ks) != 1 || aws.ToString(ks[0].AttributeName) != attrPK || ks[0].KeyType != types.KeyTypeHash {
		var got []string
		for _, k := range ks {
			got = append(got, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
		}
		return fmt.Errorf("has key schema %v, want only %s HASH", got, attrPK)
	}
	for _, a := range desc.AttributeDefinitions {
		if aws.ToString(a.AttributeName) == attrPK && a.AttributeType != types.ScalarAttributeTypeS {
			return fmt.Errorf("has key %s of type %s, want S (string)", attrPK, a.AttributeType)
		}
	}
	return nil
}

// Close does nothing: the caller owns the client.
func (r *Replica) Close() error { return nil }

// Ping checks that the table exists and is active.
func (r *Replica) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := r.describe(ctx)
	return err
}

// describe returns the table's description if it is active.
func (r *Replica) describe(ctx context.Context) (*types.TableDescription, error) {
	op := "dynamo replica describe table " + *r.table
	out, err := r.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: r.table})
	var missing *types.ResourceNotFoundException
	switch {
	case errors.As(err, &missing):
		return nil, &unavailableError{
			domain: tenant.Errorf(tenant.Unavailable, "replica table %q does not exist: create it with `tcsctl infra apply` (or tcs/dynamo.CreateTable)", *r.table),
			err:    err,
		}
	case err != nil:
		return nil, r.wrap(ctx, callErr(err), op)
	case out.Table == nil || out.Table.TableStatus != types.TableStatusActive:
		status := types.TableStatus("unknown")
		if out.Table != nil {
			status = out.Table.TableStatus
		}
		return nil, tenant.Errorf(tenant.Unavailable, "replica table %q is %s, not ACTIVE", *r.table, status)
	}
	return out.Table, nil
}

// GetTenant returns the stored document of id, tombstones included, or a
// NotFound *tenant.Error. See tcs.Replica.
func (r *Replica) GetTenant(ctx context.Context, id string) (*tenant.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := r.getDoc(ctx, id, r.consistent)
	if err == nil && d == nil {
		err = tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
	}
	if err != nil {
		return nil, r.wrap(ctx, err, "dynamo replica get tenant "+id)
	}
	return d, nil
}

// LookupHostname returns the live tenant owning hostname, or a NotFound
// *tenant.Error: tcs.LookupIn over two reads, the hostname record and then
// its owner's document (strongly consistent unless Config.EventualLookups).
// The two reads are not one snapshot; LookupIn's check that the document
// lists the hostname makes a read torn by a move answer NotFound or the
// owner before the move, never a tenant that does not hold it.
func (r *Replica) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := tcs.LookupIn(&readTxn{ctx: ctx, r: r}, hostname)
	if err != nil {
		return nil, r.wrap(ctx, err, "dynamo replica lookup hostname "+hostname)
	}
	return t, nil
}

// readTxn is the read-only tcs.ApplyTxn of a lookup: each read is a GetItem.
type readTxn struct {
	ctx context.Context
	r   *Replica
}

func (x *readTxn) Doc(id string) (*tenant.Tenant, error) {
	return x.r.getDoc(x.ctx, id, x.r.consistent)
}

func (x *readTxn) Host(hostname string) (tcs.HostRecord, bool, error) {
	out, err := x.r.db.GetItem(x.ctx, &dynamodb.GetItemInput{
		TableName:                x.r.table,
		Key:                      key(prefixHost + hostname),
		ConsistentRead:           x.r.consistent,
		ProjectionExpression:     aws.String("#o, #cv"),
		ExpressionAttributeNames: map[string]string{"#o": attrOwner, "#cv": attrClaimVersion},
	})
	if err != nil {
		return tcs.HostRecord{}, false, callErr(err)
	}
	st, err := parseHost(hostname, out.Item)
	return st.rec, st.exists, err
}

func (x *readTxn) PutDoc(*tenant.Tenant) error { return errors.New("internal: write in a lookup") }

func (x *readTxn) PutHost(string, tcs.HostRecord) error {
	return errors.New("internal: write in a lookup")
}

// getDoc returns the stored document of id, or nil.
func (r *Replica) getDoc(ctx context.Context, id string, consistent *bool) (*tenant.Tenant, error) {
	out, err := r.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                r.table,
		Key:                      key(prefixDoc + id),
		ConsistentRead:           consistent,
		ProjectionExpression:     aws.String("#d"),
		ExpressionAttributeNames: map[string]string{"#d": attrDoc},
	})
	if err != nil {
		return nil, callErr(err)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return decodeDoc(id, out.Item)
}

// docState is a document item as read; exists is false if there is none.
type docState struct {
	exists  bool
	rev     int64
	doc     *tenant.Tenant
	pending string // JSON pendingWork; "" when the item has no unfinished work
}

// hostState is a hostname record as read; exists is false if there is none.
type hostState struct {
	exists bool
	rec    tcs.HostRecord
}

func parseDocItem(id string, item map[string]types.AttributeValue) (docState, error) {
	if len(item) == 0 {
		return docState{}, nil
	}
	d, err := decodeDoc(id, item)
	if err != nil {
		return docState{}, err
	}
	rev, err := numAttr(item, attrRev)
	if err != nil {
		return docState{}, fmt.Errorf("stored tenant %s: %w", id, err)
	}
	st := docState{exists: true, rev: rev, doc: d}
	if p, ok := item[attrPending].(*types.AttributeValueMemberS); ok {
		st.pending = p.Value
	}
	return st, nil
}

func parseHost(hostname string, item map[string]types.AttributeValue) (hostState, error) {
	if len(item) == 0 {
		return hostState{}, nil
	}
	cv, err := numAttr(item, attrClaimVersion)
	if err != nil {
		return hostState{}, fmt.Errorf("stored hostname %s: %w", hostname, err)
	}
	owner, ok := item[attrOwner].(*types.AttributeValueMemberS)
	if !ok {
		return hostState{}, fmt.Errorf("stored hostname %s: no owner", hostname)
	}
	return hostState{exists: true, rec: tcs.HostRecord{TenantID: owner.Value, ClaimVersion: cv}}, nil
}

// decodeDoc decodes the JSON document of a stored item. Its errors never
// keep a *tenant.Error that a strict decoder might return: a stored document
// that fails to decode is corruption, an internal error.
func decodeDoc(id string, item map[string]types.AttributeValue) (*tenant.Tenant, error) {
	raw, ok := item[attrDoc].(*types.AttributeValueMemberS)
	if !ok {
		return nil, fmt.Errorf("stored tenant %s has no document", id)
	}
	t := new(tenant.Tenant)
	if err := json.Unmarshal([]byte(raw.Value), t); err != nil {
		return nil, fmt.Errorf("decode stored tenant %s: %s", id, err)
	}
	return t, nil
}

func numAttr(item map[string]types.AttributeValue, name string) (int64, error) {
	n, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("no number %s", name)
	}
	return strconv.ParseInt(n.Value, 10, 64)
}

func key(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: str(pk)}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// callError marks an error returned by a DynamoDB call (as opposed to a
// stored item that does not decode): wrap reports it as Unavailable.
type callError struct{ err error }

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

func callErr(err error) error {
	if err == nil {
		return nil
	}
	return &callError{err}
}

// unavailableError is a DynamoDB failure: errors.As finds both its
// *tenant.Error (code Unavailable, a message safe for callers) and the SDK's
// error, which Error includes for logs.
type unavailableError struct {
	domain *tenant.Error
	err    error
}

func (e *unavailableError) Error() string   { return e.domain.Message + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{e.domain, e.err} }

func unavailable(op string, err error) error {
	return &unavailableError{domain: tenant.Errorf(tenant.Unavailable, "%s: DynamoDB is unavailable", op), err: err}
}

// wrap returns domain errors and context errors as they are (a call that
// failed because ctx ended returns ctx's error), reports failed DynamoDB
// calls as Unavailable, and prefixes anything else (an internal error) with
// the operation.
func (r *Replica) wrap(ctx context.Context, err error, op string) error {
	if err == nil {
		return nil
	}
	if tenant.Passes(err) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var call *callError
	if errors.As(err, &call) {
		return unavailable(op, call.err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// transient reports whether a fresh attempt may succeed where err failed: a
// transaction cancelled for reasons a re-read resolves, a conflict,
// throttling, a 5xx or a connection error.
func transient(err error) bool {
	var cancelled *types.TransactionCanceledException
	if errors.As(err, &cancelled) {
		return retryableCancel(cancelled)
	}
	var (
		conflict *types.TransactionConflictException
		internal *types.InternalServerError
	)
	if errors.As(err, &conflict) || errors.As(err, &internal) || errors.Is(err, errUnprocessed) {
		return true
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err).Bool()
}

// retryableCancel reports whether every reason a transaction was cancelled
// is one a fresh attempt can resolve: a failed condition (a concurrent write
// changed what the plan was based on), a conflict with another transaction,
// or throttling. A validation error (an item over 400 KB) is not.
func retryableCancel(e *types.TransactionCanceledException) bool {
	for _, r := range e.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "", "None", "ConditionalCheckFailed", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded":
		default:
			return false
		}
	}
	return true
}

// withRetries calls try until it succeeds, fails for good, or has failed
// transiently maxAttempts times (then the error is Unavailable), sleeping a
// jittered, growing backoff in between so that writers that collided do not
// collide again in lock step.
func (r *Replica) withRetries(ctx context.Context, op string, try func() error) error {
	wait := backoff.New(5*time.Millisecond, 200*time.Millisecond, backoff.Around)
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil {
			return nil
		}
		if !transient(err) {
			return r.wrap(ctx, err, op)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt >= r.maxAttempts {
			var call *callError
			if errors.As(err, &call) {
				err = call.err
			}
			return unavailable(fmt.Sprintf("%s: gave up after %d attempts", op, attempt), err)
		}
		if err := wait.Wait(ctx); err != nil {
			return err
		}
	}
}
