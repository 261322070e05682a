package dynamo_test

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/storetest"
)

// tamperStore edits the table's audit items directly, as a credential
// allowed to update or delete them could.
type tamperStore struct {
	*dynamo.Store
	client *dynamodb.Client
	table  string
}

func auditKey(chain string, version int64) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"PK": &types.AttributeValueMemberS{Value: "AUDIT#" + chain},
		"SK": &types.AttributeValueMemberS{Value: fmt.Sprintf("%020d", version)},
	}
}

func (s tamperStore) PutAuditRaw(t testing.TB, chain string, version int64, raw []byte) {
	t.Helper()
	item := auditKey(chain, version)
	item["doc"] = &types.AttributeValueMemberS{Value: string(raw)}
	if _, err := s.client.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
		t.Fatalf("tamper with audit record %s/%d: %v", chain, version, err)
	}
}

func (s tamperStore) DeleteAudit(t testing.TB, chain string, version int64) {
	t.Helper()
	if _, err := s.client.DeleteItem(t.Context(), &dynamodb.DeleteItemInput{TableName: aws.String(s.table), Key: auditKey(chain, version)}); err != nil {
		t.Fatalf("delete audit record %s/%d: %v", chain, version, err)
	}
}

func (s tamperStore) ForgetAuditHead(t testing.TB, chain string) {
	t.Helper()
	key := map[string]types.AttributeValue{
		"PK": &types.AttributeValueMemberS{Value: fmt.Sprintf("TENANTS#%d", catalog.OutboxShard(chain, dynamo.Shards))},
		"SK": &types.AttributeValueMemberS{Value: chain},
	}
	if chain == catalog.AdminAuditID {
		key["PK"] = &types.AttributeValueMemberS{Value: "META"}
		key["SK"] = &types.AttributeValueMemberS{Value: "AUDIT_HEAD#" + chain}
	}
	_, err := s.client.UpdateItem(t.Context(), &dynamodb.UpdateItemInput{TableName: aws.String(s.table), Key: key,
		UpdateExpression: aws.String("REMOVE audit_head")})
	if err != nil {
		t.Fatalf("forget audit head of %s: %v", chain, err)
	}
}

func TestAuditTamper(t *testing.T) {
	t.Parallel()
	storetest.RunTamper(t, func(t *testing.T) storetest.TamperStore {
		c, table := newTable(t)
		s, err := dynamo.Open(t.Context(), dynamo.Config{Client: c, Table: table})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return tamperStore{Store: s, client: c, table: table}
	})
}
