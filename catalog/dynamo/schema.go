package dynamo

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/internal/dynamotable"
)

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

	prefixTenants = "TENANTS#"
	prefixOutbox  = "OUTBOX#"
	pkMeta        = "META"
	skClaim       = "CLAIM"
	skOutboxHead  = "#HEAD" // sorts before every zero-padded sequence
	skAdminHead   = "AUDIT_HEAD#" + catalog.AdminAuditID
	prefixHost    = "HOST#"
	prefixAudit   = "AUDIT#"
	maxTxItems    = 100
	fixedTxItems  = 4 // tenant, audit, outbox entry, shard head

	// The layout before sharding (TCS 0.x): every tenant in one partition,
	// one outbox, one counter. Open refuses a table that still has the
	// counter; MigrateLayout moves such a table to the sharded layout.
	legacyTenants   = "TENANTS"
	legacyOutbox    = "OUTBOX"
	legacyOutboxSeq = "OUTBOX_SEQ"
)

// Shards is how many shards the catalog table's tenants and outbox are
// split into: tenant id goes to shard catalog.OutboxShard(id, Shards), its
// document to partition TENANTS#<shard>, its outbox entries to OUTBOX#<shard>.
// It is part of the table's layout: every process that writes or publishes
// must agree on it, so it is a constant, not a setting.
//
// 64 spreads 32 concurrent writers so that two meet in one shard on about
// two writes in five (they then retry, see the package comment), and keeps
// what a whole-table pass costs at one Query per shard: List and Export
// walk the shards in turn, and an idle publisher reads the 64 shard heads
// in one BatchGetItem per poll.
const Shards = 64

// shardOf returns the shard of tenant id.
func shardOf(id string) int { return catalog.OutboxShard(id, Shards) }

// tenantPK is the partition of tenant id's document.
func tenantPK(id string) string { return tenantShardPK(shardOf(id)) }

func tenantShardPK(shard int) string { return prefixTenants + strconv.Itoa(shard) }

func outboxPK(shard int) string { return prefixOutbox + strconv.Itoa(shard) }

func tenantKey(id string) map[string]types.AttributeValue { return key(tenantPK(id), id) }

func headKey(shard int) map[string]types.AttributeValue {
	return key(outboxPK(shard), skOutboxHead)
}

// ComparePageOrder compares tenant ids in the order List and Export pages
// run: by shard, then by id within a shard (catalog.PageOrderer).
func (s *Store) ComparePageOrder(a, b string) int {
	if c := cmp.Compare(shardOf(a), shardOf(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
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

func itemKey(pk, sk string) string { return pk + "\x00" + sk }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: str(pk), attrSK: str(sk)}
}

// pad formats n so that string order is numeric order.
func pad(n uint64) string { return fmt.Sprintf("%020d", n) }
