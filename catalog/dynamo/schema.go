package dynamo

import (
	"context"
	"fmt"

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
