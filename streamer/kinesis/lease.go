package kinesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Lease table attributes; see the package comment.
const (
	attrGroup      = "group"
	attrShard      = "shard"
	attrOwner      = "owner"
	attrToken      = "token"
	attrCounter    = "counter"
	attrCheckpoint = "checkpoint"
	attrParents    = "parents"
	attrPending    = "pending"
	attrRenewedAt  = "renewed_at"

	// ShardEnd is the checkpoint of a shard that was closed (split or
	// merged) and read to its end.
	ShardEnd = "SHARD_END"
)

// errLeaseLost is a conditional write that failed because the lease is no
// longer the writer's (or, for a take, changed since it was read).
var errLeaseLost = errors.New("lease lost")

// Lease is one consumer group's lease of one shard, as stored.
type Lease struct {
	Shard string
	// Owner is the worker holding the lease; "" when free.
	Owner string
	// Checkpoint is the sequence number of the last record the group
	// processed in the shard, ShardEnd, or "" if none.
	Checkpoint string
	// Parents are the shards this one was split or merged from.
	Parents []string
	// Counter changes with every write to the lease.
	Counter int64
	// Pending is a worker that asked the owner for the lease.
	Pending string

	token string
}

// Leases returns the group's leases, in shard order, read consistently.
func (s *Stream) Leases(ctx context.Context, group string) ([]Lease, error) {
	ls, err := s.leaseTable(group).list(ctx)
	if err != nil {
		return nil, wrap(ctx, err, fmt.Sprintf("kinesis leases of group %q", group))
	}
	return ls, nil
}

// leaseTable is one group's view of the lease table, written as one owner.
type leaseTable struct {
	s     *Stream
	group string
}

func (s *Stream) leaseTable(group string) *leaseTable { return &leaseTable{s: s, group: group} }

func (t *leaseTable) key(shard string) map[string]dtypes.AttributeValue {
	return map[string]dtypes.AttributeValue{attrGroup: str(t.group), attrShard: str(shard)}
}

// list reads every lease of the group.
func (t *leaseTable) list(ctx context.Context) ([]Lease, error) {
	var leases []Lease
	in := &dynamodb.QueryInput{
		TableName:                 t.s.table,
		KeyConditionExpression:    aws.String("#g = :g"),
		ExpressionAttributeNames:  map[string]string{"#g": attrGroup},
		ExpressionAttributeValues: map[string]dtypes.AttributeValue{":g": str(t.group)},
		ConsistentRead:            aws.Bool(true),
	}
	for {
		var out *dynamodb.QueryOutput
		err := t.s.retryOp(ctx, "Query", func() (err error) {
			out, err = t.s.db.Query(ctx, in, oneDynamoAttempt)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("query lease table %s: %w", *t.s.table, err)
		}
		for _, item := range out.Items {
			l, err := parseLease(item)
			if err != nil {
				return nil, fmt.Errorf("lease table %s group %q: %w", *t.s.table, t.group, err)
			}
			leases = append(leases, l)
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	slices.SortFunc(leases, func(a, b Lease) int { return compareShardIDs(a.Shard, b.Shard) })
	return leases, nil
}

// create adds a free lease for shard, unless one exists.
func (t *leaseTable) create(ctx context.Context, shard string, parents []string) error {
	item := t.key(shard)
	item[attrOwner] = str("")
	item[attrCounter] = num(0)
	item[attrCheckpoint] = str("")
	if len(parents) > 0 {
		item[attrParents] = &dtypes.AttributeValueMemberSS{Value: parents}
	}
	err := t.s.retryOp(ctx, "PutItem", func() error {
		_, err := t.s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                t.s.table,
			Item:                     item,
			ConditionExpression:      aws.String("attribute_not_exists(#s)"),
			ExpressionAttributeNames: map[string]string{"#s": attrShard},
		}, oneDynamoAttempt)
		return err
	})
	if conditionFailed(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create lease %s/%s: %w", t.group, shard, err)
	}
	return nil
}

// remove deletes shard's lease if it is still finished (checkpointed at
// ShardEnd). It reports whether it removed it.
func (t *leaseTable) remove(ctx context.Context, shard string) (bool, error) {
	err := t.s.retryOp(ctx, "DeleteItem", func() error {
		_, err := t.s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                 t.s.table,
			Key:                       t.key(shard),
			ConditionExpression:       aws.String("#cp = :end"),
			ExpressionAttributeNames:  map[string]string{"#cp": attrCheckpoint},
			ExpressionAttributeValues: map[string]dtypes.AttributeValue{":end": str(ShardEnd)},
		}, oneDynamoAttempt)
		return err
	})
	if conditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove lease %s/%s: %w", t.group, shard, err)
	}
	return true, nil
}

// update makes one conditional UpdateItem on shard's lease and returns the
// lease as written. A failed condition is errLeaseLost.
func (t *leaseTable) update(ctx context.Context, shard, update, cond string, values map[string]dtypes.AttributeValue) (Lease, error) {
	names := map[string]string{
		"#o": attrOwner, "#t": attrToken, "#c": attrCounter, "#cp": attrCheckpoint,
		"#p": attrPending, "#r": attrRenewedAt,
	}
	values[":one"] = num(1)
	values[":now"] = str(t.s.now().UTC().Format(time.RFC3339Nano))
	// Keep only the names the expressions use: DynamoDB rejects unused ones.
	used := map[string]string{}
	for k, v := range names {
		if containsName(update, k) || containsName(cond, k) {
			used[k] = v
		}
	}
	usedValues := map[string]dtypes.AttributeValue{}
	for k, v := range values {
		if containsName(update, k) || containsName(cond, k) {
			usedValues[k] = v
		}
	}
	var out *dynamodb.UpdateItemOutput
	err := t.s.retryOp(ctx, "UpdateItem", func() (err error) {
		out, err = t.s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 t.s.table,
			Key:                       t.key(shard),
			UpdateExpression:          aws.String(update),
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeNames:  used,
			ExpressionAttributeValues: usedValues,
			ReturnValues:              dtypes.ReturnValueAllNew,
		}, oneDynamoAttempt)
		return err
	})
	if conditionFailed(err) {
		return Lease{}, errLeaseLost
	}
	if err != nil {
		return Lease{}, fmt.Errorf("update lease %s/%s: %w", t.group, shard, err)
	}
	return parseLease(out.Attributes)
}

// containsName reports whether expr uses the placeholder name (#x or :x) as
// a whole word.
func containsName(expr, name string) bool {
	for i := 0; ; {
		j := strings.Index(expr[i:], name)
		if j < 0 {
			return false
		}
		end := i + j + len(name)
		if end == len(expr) || !isNameChar(expr[end]) {
			return true
		}
		i = end
	}
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

const setRenewed = "#c = #c + :one, #r = :now"

// take makes l (as read) this worker's, with a new token, if nobody changed
// it since it was read.
func (t *leaseTable) take(ctx context.Context, l Lease) (Lease, error) {
	return t.update(ctx, l.Shard,
		"SET #o = :me, #t = :tok, "+setRenewed+" REMOVE #p",
		"#c = :c",
		map[string]dtypes.AttributeValue{":me": str(t.s.owner), ":tok": str(randomToken()), ":c": num(l.Counter)})
}

// owned is the condition of every write by the owner.
const owned = "#o = :me AND #t = :tok"

func (t *leaseTable) ownerValues(token string) map[string]dtypes.AttributeValue {
	return map[string]dtypes.AttributeValue{":me": str(t.s.owner), ":tok": str(token)}
}

// renew bumps the counter of a lease this worker holds and returns it, so
// that the owner sees steal requests.
func (t *leaseTable) renew(ctx context.Context, shard, token string) (Lease, error) {
	return t.update(ctx, shard, "SET "+setRenewed, owned, t.ownerValues(token))
}

// checkpoint records the last sequence processed (or ShardEnd) in a lease
// this worker holds. It renews the lease too.
func (t *leaseTable) checkpoint(ctx context.Context, shard, token, seq string) error {
	v := t.ownerValues(token)
	v[":seq"] = str(seq)
	_, err := t.update(ctx, shard, "SET #cp = :seq, "+setRenewed, owned, v)
	return err
}

// finish checkpoints a shard at ShardEnd and frees its lease in one write.
func (t *leaseTable) finish(ctx context.Context, shard, token string) error {
	v := t.ownerValues(token)
	v[":end"] = str(ShardEnd)
	v[":free"] = str("")
	_, err := t.update(ctx, shard, "SET #cp = :end, #o = :free, "+setRenewed+" REMOVE #t, #p", owned, v)
	return err
}

// release frees a lease this worker holds.
func (t *leaseTable) release(ctx context.Context, shard, token string) error {
	v := t.ownerValues(token)
	v[":free"] = str("")
	_, err := t.update(ctx, shard, "SET #o = :free, "+setRenewed+" REMOVE #t, #p", owned, v)
	return err
}

// handOver gives a lease this worker holds to the worker that asked for it.
func (t *leaseTable) handOver(ctx context.Context, shard, token, to string) error {
	v := t.ownerValues(token)
	v[":to"] = str(to)
	v[":new"] = str(randomToken())
	_, err := t.update(ctx, shard, "SET #o = :to, #t = :new, "+setRenewed+" REMOVE #p", owned+" AND #p = :to", v)
	return err
}

// requestSteal asks l's owner (as read) to hand l over to this worker. It
// does not change the counter: the request does not keep a dead owner's
// lease alive.
func (t *leaseTable) requestSteal(ctx context.Context, l Lease) error {
	_, err := t.update(ctx, l.Shard,
		"SET #p = :me",
		"#c = :c AND #o = :owner AND (attribute_not_exists(#p) OR #p = :free)",
		map[string]dtypes.AttributeValue{":me": str(t.s.owner), ":c": num(l.Counter), ":owner": str(l.Owner), ":free": str("")})
	return err
}

func parseLease(item map[string]dtypes.AttributeValue) (Lease, error) {
	var l Lease
	l.Shard = strAttr(item, attrShard)
	if l.Shard == "" {
		return l, errors.New("lease item without a shard")
	}
	l.Owner = strAttr(item, attrOwner)
	l.token = strAttr(item, attrToken)
	l.Checkpoint = strAttr(item, attrCheckpoint)
	l.Pending = strAttr(item, attrPending)
	if ss, ok := item[attrParents].(*dtypes.AttributeValueMemberSS); ok {
		l.Parents = slices.Clone(ss.Value)
		slices.Sort(l.Parents)
	}
	if n, ok := item[attrCounter].(*dtypes.AttributeValueMemberN); ok {
		c, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			return l, fmt.Errorf("lease %s: counter %q: %w", l.Shard, n.Value, err)
		}
		l.Counter = c
	}
	return l, nil
}

func conditionFailed(err error) bool {
	var cc *dtypes.ConditionalCheckFailedException
	return errors.As(err, &cc)
}

func strAttr(item map[string]dtypes.AttributeValue, name string) string {
	if v, ok := item[name].(*dtypes.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func str(s string) dtypes.AttributeValue { return &dtypes.AttributeValueMemberS{Value: s} }

func num(n int64) dtypes.AttributeValue {
	return &dtypes.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// compareShardIDs orders Kinesis shard ids ("shardId-000000000012") by their
// number, which is creation order; other ids as strings.
func compareShardIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
