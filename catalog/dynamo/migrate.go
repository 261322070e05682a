package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// MigrateLayout moves a catalog table from the layout of TCS 0.x (every
// tenant in partition TENANTS, one outbox OUTBOX, one counter META
// OUTBOX_SEQ) to the sharded layout Open expects, and returns how many
// tenant items it moved. Hostname claims and audit records keep their keys.
//
// Run it once, with no catalog or publisher of either version running and
// after the old publisher has drained the old outbox (it refuses to run
// while an entry is left there: moving on would lose it). Each tenant item
// moves in one transaction (put under TENANTS#<shard>, delete the old
// item), and the old counter goes last, so an interrupted migration is
// finished by running it again; on a table already migrated it does
// nothing. The new shards' sequences start at 1: the stream's consumers do
// not depend on outbox sequences.
func MigrateLayout(ctx context.Context, client API, table string) (int, error) {
	tbl := aws.String(table)
	left, err := client.Query(ctx, &dynamodb.QueryInput{
		TableName:                 tbl,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(legacyOutbox)},
		Limit:                     aws.Int32(1),
	})
	if err != nil {
		return 0, fmt.Errorf("migrate layout of %s: read the old outbox: %w", table, err)
	}
	if len(left.Items) > 0 {
		return 0, fmt.Errorf("migrate layout of %s: the old outbox (partition %s) still holds entries: drain it first with the streamer of the old version (streamer publish --drain), so that no committed change is lost", table, legacyOutbox)
	}
	in := &dynamodb.QueryInput{
		TableName:                 tbl,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(legacyTenants)},
	}
	moved := 0
	used := map[int]bool{}
	for {
		out, err := client.Query(ctx, in)
		if err != nil {
			return moved, fmt.Errorf("migrate layout of %s: read tenants: %w", table, err)
		}
		for _, item := range out.Items {
			sk, ok := item[attrSK].(*types.AttributeValueMemberS)
			if !ok {
				return moved, fmt.Errorf("migrate layout of %s: tenant item without a sort key", table)
			}
			next := make(map[string]types.AttributeValue, len(item))
			for k, v := range item {
				next[k] = v
			}
			next[attrPK] = str(tenantPK(sk.Value))
			tx := []types.TransactWriteItem{
				{Put: &types.Put{TableName: tbl, Item: next, ConditionExpression: aws.String("attribute_not_exists(PK)")}},
				{Delete: &types.Delete{TableName: tbl, Key: key(legacyTenants, sk.Value)}},
			}
			if sh := shardOf(sk.Value); !used[sh] {
				// The shard's head marks it as holding tenants (see
				// readHeads); a head already there is kept.
				tx = append(tx, types.TransactWriteItem{Update: &types.Update{
					TableName: tbl, Key: headKey(sh),
					UpdateExpression:          aws.String("SET seq = if_not_exists(seq, :zero)"),
					ExpressionAttributeValues: map[string]types.AttributeValue{":zero": unum(0)},
				}})
				used[sh] = true
			}
			_, err := client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx})
			if err != nil {
				return moved, fmt.Errorf("migrate layout of %s: move tenant %s: %w", table, sk.Value, err)
			}
			moved++
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	s := &Store{db: client, table: tbl}
	if err := s.deleteBatch(ctx, []map[string]types.AttributeValue{key(pkMeta, legacyOutboxSeq)}); err != nil {
		return moved, fmt.Errorf("migrate layout of %s: remove the old outbox counter: %w", table, err)
	}
	return moved, nil
}
