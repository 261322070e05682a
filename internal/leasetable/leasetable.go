// Package leasetable is the DynamoDB backend of lease.Store
// (internal/lease): one item per (group, shard), every change a conditional
// write, so that workers of a group share shards without two of them ever
// holding one at the same time. The Kinesis consumer groups
// (streamer/kinesis) and the outbox publishers (streamer/publease) keep
// their leases here; what a shard is, and when a lease counts as expired,
// is theirs to say (with lease.Observer and lease.Balance).
// internal/lease/leasetest is its conformance suite, the one the in-memory
// backend passes too.
//
// Item layout (both keys strings):
//
//	group (hash)   shard (range)   attributes
//	<group name>   <shard id>      owner      (S)  worker holding the lease; "" when free
//	                               token      (S)  random, set by each take; guards the owner's writes
//	                               counter    (N)  incremented by every take, renewal, checkpoint, release
//	                               checkpoint (S)  the group's progress in the shard (its users' format)
//	                               parents    (SS) shards this one was split or merged from (absent if none)
//	                               pending    (S)  a worker asking the owner to hand the lease over
//	                               renewed_at (S)  RFC 3339 time of the owner's last write (for people, not for expiry)
//
// Writes are fenced: a take is conditioned on the counter the taker read,
// so two workers never both take a lease; renewals, checkpoints, releases
// and handovers are conditioned on the owner and the token, so a worker that
// lost a lease can change nothing in it (ErrLost).
package leasetable

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

	"github.com/tcs-dev/tcs/internal/lease"
)

// Attribute names; see the package comment.
const (
	AttrGroup      = "group"
	AttrShard      = "shard"
	attrOwner      = "owner"
	attrToken      = "token"
	attrCounter    = "counter"
	attrCheckpoint = "checkpoint"
	attrParents    = "parents"
	attrPending    = "pending"
	attrRenewedAt  = "renewed_at"
)

// ErrLost is lease.ErrLost: a conditional write that failed because the
// lease is no longer the writer's (or, for a take, changed since it was
// read).
var ErrLost = lease.ErrLost

// Lease is a lease as stored; its Key is the item's shard.
type Lease = lease.Lease

var _ lease.Store = (*Table)(nil)

// API is the part of the DynamoDB client a Table needs; *dynamodb.Client
// implements it.
type API interface {
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// KeeperAPI is the part of the DynamoDB client a user that never deletes
// a lease needs (the outbox publishers, the tcs nodes' work pools: their IAM
// policies do not let them delete); *dynamodb.Client implements it.
type KeeperAPI interface {
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// OpenKeeper checks that table exists (a missing one is an error naming it,
// as what's lease table, and the command that creates it) and returns db as
// an API whose DeleteItem is refused with an error saying who never
// deletes leases.
func OpenKeeper(ctx context.Context, db KeeperAPI, table, what, who string) (API, error) {
	if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}); err != nil {
		var nf *dtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%s lease table %s does not exist: create it with tcsctl infra apply", what, table)
		}
		return nil, fmt.Errorf("%s lease table %s: %w", what, table, err)
	}
	return noDelete{db, who}, nil
}

// noDelete is a KeeperAPI as an API, whose DeleteItem is refused.
type noDelete struct {
	KeeperAPI
	who string
}

func (d noDelete) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return nil, fmt.Errorf("%s do not delete leases", d.who)
}

// Table is one group's view of a lease table, written as one owner.
type Table struct {
	DB API
	// Name is the DynamoDB table's name.
	Name string
	// Group and Owner name the consumer group and this worker.
	Group, Owner string
	// Now stamps renewed_at; nil means time.Now.
	Now func() time.Time
	// Retry runs a call until it succeeds or fails for good (op names the
	// DynamoDB operation); nil runs it once.
	Retry func(ctx context.Context, op string, call func() error) error
	// Compare orders List's leases by shard; nil compares strings.
	Compare func(a, b string) int
	// CallOptions are passed to every DynamoDB call (say, one SDK attempt
	// when Retry retries).
	CallOptions []func(*dynamodb.Options)
}

func (t *Table) retry(ctx context.Context, op string, call func() error) error {
	if t.Retry == nil {
		return call()
	}
	return t.Retry(ctx, op, call)
}

func (t *Table) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

func (t *Table) key(shard string) map[string]dtypes.AttributeValue {
	return map[string]dtypes.AttributeValue{AttrGroup: str(t.Group), AttrShard: str(shard)}
}

// List reads every lease of the group, consistently, in shard order.
func (t *Table) List(ctx context.Context) ([]Lease, error) {
	var leases []Lease
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(t.Name),
		KeyConditionExpression:    aws.String("#g = :g"),
		ExpressionAttributeNames:  map[string]string{"#g": AttrGroup},
		ExpressionAttributeValues: map[string]dtypes.AttributeValue{":g": str(t.Group)},
		ConsistentRead:            aws.Bool(true),
	}
	for {
		var out *dynamodb.QueryOutput
		err := t.retry(ctx, "Query", func() (err error) {
			out, err = t.DB.Query(ctx, in, t.CallOptions...)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("query lease table %s: %w", t.Name, err)
		}
		for _, item := range out.Items {
			l, err := Parse(item)
			if err != nil {
				return nil, fmt.Errorf("lease table %s group %q: %w", t.Name, t.Group, err)
			}
			leases = append(leases, l)
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	cmp := t.Compare
	if cmp == nil {
		cmp = strings.Compare
	}
	slices.SortFunc(leases, func(a, b Lease) int { return cmp(a.Key, b.Key) })
	return leases, nil
}

// Create adds a free lease for shard, unless one exists.
func (t *Table) Create(ctx context.Context, shard string, parents []string) error {
	if err := lease.CheckCreate(shard, parents); err != nil {
		return fmt.Errorf("create lease in group %q: %w", t.Group, err)
	}
	item := t.key(shard)
	item[attrOwner] = str("")
	item[attrCounter] = num(0)
	item[attrCheckpoint] = str("")
	if len(parents) > 0 {
		item[attrParents] = &dtypes.AttributeValueMemberSS{Value: parents}
	}
	err := t.retry(ctx, "PutItem", func() error {
		_, err := t.DB.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                aws.String(t.Name),
			Item:                     item,
			ConditionExpression:      aws.String("attribute_not_exists(#s)"),
			ExpressionAttributeNames: map[string]string{"#s": AttrShard},
		}, t.CallOptions...)
		return err
	})
	if conditionFailed(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create lease %s/%s: %w", t.Group, shard, err)
	}
	return nil
}

// RemoveIfCheckpoint deletes shard's lease if its checkpoint is still
// checkpoint. It reports whether it removed it.
func (t *Table) RemoveIfCheckpoint(ctx context.Context, shard, checkpoint string) (bool, error) {
	err := t.retry(ctx, "DeleteItem", func() error {
		_, err := t.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                 aws.String(t.Name),
			Key:                       t.key(shard),
			ConditionExpression:       aws.String("#cp = :end"),
			ExpressionAttributeNames:  map[string]string{"#cp": attrCheckpoint},
			ExpressionAttributeValues: map[string]dtypes.AttributeValue{":end": str(checkpoint)},
		}, t.CallOptions...)
		return err
	})
	if conditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove lease %s/%s: %w", t.Group, shard, err)
	}
	return true, nil
}

// update makes one conditional UpdateItem on shard's lease and returns the
// lease as written. A failed condition is ErrLost.
func (t *Table) update(ctx context.Context, shard, update, cond string, values map[string]dtypes.AttributeValue) (Lease, error) {
	names := map[string]string{
		"#o": attrOwner, "#t": attrToken, "#c": attrCounter, "#cp": attrCheckpoint,
		"#p": attrPending, "#r": attrRenewedAt,
	}
	values[":one"] = num(1)
	values[":now"] = str(t.now().UTC().Format(time.RFC3339Nano))
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
	err := t.retry(ctx, "UpdateItem", func() (err error) {
		out, err = t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(t.Name),
			Key:                       t.key(shard),
			UpdateExpression:          aws.String(update),
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeNames:  used,
			ExpressionAttributeValues: usedValues,
			ReturnValues:              dtypes.ReturnValueAllNew,
		}, t.CallOptions...)
		return err
	})
	if conditionFailed(err) {
		return Lease{}, ErrLost
	}
	if err != nil {
		return Lease{}, fmt.Errorf("update lease %s/%s: %w", t.Group, shard, err)
	}
	return Parse(out.Attributes)
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

// Take makes l (as read) this worker's, with a new token, if nobody changed
// it since it was read.
func (t *Table) Take(ctx context.Context, l Lease) (Lease, error) {
	return t.update(ctx, l.Key,
		"SET #o = :me, #t = :tok, "+setRenewed+" REMOVE #p",
		"#c = :c",
		map[string]dtypes.AttributeValue{":me": str(t.Owner), ":tok": str(lease.NewToken()), ":c": num(l.Counter)})
}

// owned is the condition of every write by the owner.
const owned = "#o = :me AND #t = :tok"

func (t *Table) ownerValues(token string) map[string]dtypes.AttributeValue {
	return map[string]dtypes.AttributeValue{":me": str(t.Owner), ":tok": str(token)}
}

// Renew bumps the counter of a lease this worker holds and returns it, so
// that the owner sees steal requests.
func (t *Table) Renew(ctx context.Context, shard, token string) (Lease, error) {
	return t.update(ctx, shard, "SET "+setRenewed, owned, t.ownerValues(token))
}

// Checkpoint records the group's progress in a lease this worker holds. It
// renews the lease too.
func (t *Table) Checkpoint(ctx context.Context, shard, token, checkpoint string) error {
	v := t.ownerValues(token)
	v[":seq"] = str(checkpoint)
	_, err := t.update(ctx, shard, "SET #cp = :seq, "+setRenewed, owned, v)
	return err
}

// Finish checkpoints a shard and frees its lease in one write.
func (t *Table) Finish(ctx context.Context, shard, token, checkpoint string) error {
	v := t.ownerValues(token)
	v[":end"] = str(checkpoint)
	v[":free"] = str("")
	_, err := t.update(ctx, shard, "SET #cp = :end, #o = :free, "+setRenewed+" REMOVE #t, #p", owned, v)
	return err
}

// Release frees a lease this worker holds.
func (t *Table) Release(ctx context.Context, shard, token string) error {
	v := t.ownerValues(token)
	v[":free"] = str("")
	_, err := t.update(ctx, shard, "SET #o = :free, "+setRenewed+" REMOVE #t, #p", owned, v)
	return err
}

// HandOver gives a lease this worker holds to the worker that asked for it.
func (t *Table) HandOver(ctx context.Context, shard, token, to string) error {
	v := t.ownerValues(token)
	v[":to"] = str(to)
	v[":new"] = str(lease.NewToken())
	_, err := t.update(ctx, shard, "SET #o = :to, #t = :new, "+setRenewed+" REMOVE #p", owned+" AND #p = :to", v)
	return err
}

// Decline clears the request of who for a lease this worker holds (if who
// still asks), renewing it.
func (t *Table) Decline(ctx context.Context, shard, token, who string) error {
	v := t.ownerValues(token)
	v[":who"] = str(who)
	_, err := t.update(ctx, shard, "SET "+setRenewed+" REMOVE #p", owned+" AND #p = :who", v)
	return err
}

// RequestSteal asks l's owner (as read) to hand l over to this worker. It
// does not change the counter: the request does not keep a dead owner's
// lease alive.
func (t *Table) RequestSteal(ctx context.Context, l Lease) error {
	_, err := t.update(ctx, l.Key,
		"SET #p = :me",
		"#c = :c AND #o = :owner AND (attribute_not_exists(#p) OR #p = :free)",
		map[string]dtypes.AttributeValue{":me": str(t.Owner), ":c": num(l.Counter), ":owner": str(l.Owner), ":free": str("")})
	return err
}

// Parse reads a lease item.
func Parse(item map[string]dtypes.AttributeValue) (Lease, error) {
	var l Lease
	l.Key = strAttr(item, AttrShard)
	if l.Key == "" {
		return l, errors.New("lease item without a shard")
	}
	l.Owner = strAttr(item, attrOwner)
	l.Token = strAttr(item, attrToken)
	l.Checkpoint = strAttr(item, attrCheckpoint)
	l.Pending = strAttr(item, attrPending)
	if ss, ok := item[attrParents].(*dtypes.AttributeValueMemberSS); ok {
		l.Parents = slices.Clone(ss.Value)
		slices.Sort(l.Parents)
	}
	if n, ok := item[attrCounter].(*dtypes.AttributeValueMemberN); ok {
		c, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			return l, fmt.Errorf("lease %s: counter %q: %w", l.Key, n.Value, err)
		}
		l.Counter = c
	}
	if r := strAttr(item, attrRenewedAt); r != "" {
		at, err := time.Parse(time.RFC3339Nano, r)
		if err != nil {
			return l, fmt.Errorf("lease %s: renewed_at %q: %w", l.Key, r, err)
		}
		l.RenewedAt = at
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

// DefaultOwner is lease.DefaultOwner.
func DefaultOwner() string { return lease.DefaultOwner() }
