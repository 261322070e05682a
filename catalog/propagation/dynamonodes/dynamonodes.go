// Package dynamonodes is the node registry of the AWS family
// (catalog/propagation.Registry): a small DynamoDB table, by default
// <prefix>-nodes, that every tcs node writes a heartbeat into every few
// seconds and the catalog reads to know the live nodes of every region.
//
// Item: hash key region (S), range key node (S), attributes addr (S, where
// the node serves gRPC), heartbeat (N, Unix milliseconds) and expires (N,
// Unix seconds: ten bounds after the heartbeat, for DynamoDB TTL, which
// removes the items of nodes that died some time after they stop being
// reported). A node whose heartbeat is older than the bound is dropped
// from the live set and reported (propagation.Dropped); a node that stops
// cleanly deletes its item.
//
// The table holds one item per node: Nodes scans it whole, which at a few
// hundred nodes is a page or two.
package dynamonodes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/internal/dynamotable"
)

// API is the part of the DynamoDB client the registry uses.
type API interface {
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// TTLAttribute is the attribute DynamoDB TTL removes items by (EnableTTL).
const TTLAttribute = attrExpires

// TableName is the registry table's name for an AWS resource prefix.
func TableName(prefix string) string { return prefix + "-nodes" }

// Attribute names.
const (
	attrRegion    = "region"
	attrNode      = "node"
	attrAddr      = "addr"
	attrHeartbeat = "heartbeat"
	attrExpires   = "expires"
)

// TableInput is the registry table's definition: on demand, hash key
// region, range key node. TTL on expires is set apart (EnableTTL).
func TableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrRegion), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrNode), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrRegion), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrNode), KeyType: types.KeyTypeRange},
		},
	}
}

// CreateTable creates the registry table (on-demand, TTL on expires) unless
// it exists, and waits until it is active.
func CreateTable(ctx context.Context, c *dynamodb.Client, name string) error {
	if _, err := dynamotable.Create(ctx, c, TableInput(name)); err != nil {
		return err
	}
	return EnableTTL(ctx, c, name)
}

// TTLAPI is what EnableTTL needs; *dynamodb.Client implements it.
type TTLAPI interface {
	DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// EnableTTL turns on DynamoDB TTL on the expires attribute of table name,
// unless it is on already.
func EnableTTL(ctx context.Context, c TTLAPI, name string) error {
	if d, err := c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)}); err == nil && d.TimeToLiveDescription != nil {
		st := d.TimeToLiveDescription.TimeToLiveStatus
		if (st == types.TimeToLiveStatusEnabled || st == types.TimeToLiveStatusEnabling) && aws.ToString(d.TimeToLiveDescription.AttributeName) == attrExpires {
			return nil
		}
	}
	_, err := c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attrExpires), Enabled: aws.Bool(true)},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) && !isTTLAlreadyOn(err) {
		return fmt.Errorf("table %s: enable TTL on %s: %w", name, attrExpires, err)
	}
	return nil
}

// isTTLAlreadyOn: DynamoDB refuses to enable TTL that is already enabled.
func isTTLAlreadyOn(err error) bool {
	var ve interface{ ErrorCode() string }
	return errors.As(err, &ve) && ve.ErrorCode() == "ValidationException"
}

// Registry is the table, as the nodes and the catalog use it.
type Registry struct {
	api   API
	table string
	bound time.Duration
	now   func() time.Time
	// beats counts Run's heartbeats by result, and last is when the last
	// one succeeded; nil until Instrument.
	beats map[string]prometheus.Counter
	last  prometheus.Gauge
}

// Instrument registers on reg the metrics of this node's heartbeats (Run):
// tcs_node_registry_heartbeats_total{result="ok"|"failed"} and
// tcs_node_registry_last_heartbeat_timestamp_seconds. Call it before Run.
func (r *Registry) Instrument(reg prometheus.Registerer) {
	beats := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_node_registry_heartbeats_total",
		Help: "This tcs node's heartbeats into the <prefix>-nodes table, by result (ok, failed): a node without a successful one for the bound (6 s) is dropped from the catalog's propagation status.",
	}, []string{"result"})
	r.last = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_node_registry_last_heartbeat_timestamp_seconds",
		Help: "Unix time of this tcs node's last successful heartbeat into the <prefix>-nodes table; 0 before the first.",
	})
	r.beats = map[string]prometheus.Counter{"ok": beats.WithLabelValues("ok"), "failed": beats.WithLabelValues("failed")}
	reg.MustRegister(beats, r.last)
}

var _ propagation.Registry = (*Registry)(nil)

// New returns the registry in table; a node silent for bound
// (propagation.DefaultHeartbeatBound if <= 0) is dropped. A nil now is
// time.Now.
func New(api API, table string, bound time.Duration, now func() time.Time) *Registry {
	if bound <= 0 {
		bound = propagation.DefaultHeartbeatBound
	}
	if now == nil {
		now = time.Now
	}
	return &Registry{api: api, table: table, bound: bound, now: now}
}

func key(n propagation.Node) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrRegion: &types.AttributeValueMemberS{Value: n.Region},
		attrNode:   &types.AttributeValueMemberS{Value: n.ID},
	}
}

// Heartbeat records that n is alive now.
func (r *Registry) Heartbeat(ctx context.Context, n propagation.Node) error {
	now := r.now()
	item := key(n)
	item[attrAddr] = &types.AttributeValueMemberS{Value: n.Addr}
	item[attrHeartbeat] = &types.AttributeValueMemberN{Value: strconv.FormatInt(now.UnixMilli(), 10)}
	item[attrExpires] = &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Add(10*r.bound).Unix(), 10)}
	if _, err := r.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(r.table), Item: item}); err != nil {
		return fmt.Errorf("heartbeat of %s in %s: %w", n, r.table, err)
	}
	return nil
}

// Remove deletes n's item: a node that stops cleanly.
func (r *Registry) Remove(ctx context.Context, n propagation.Node) error {
	if _, err := r.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(r.table), Key: key(n)}); err != nil {
		return fmt.Errorf("remove %s from %s: %w", n, r.table, err)
	}
	return nil
}

// Run heartbeats n every interval (propagation.DefaultHeartbeatInterval if
// <= 0) until ctx ends, then removes it (within a few seconds). A failed
// heartbeat is passed to onError (nil: ignored) and tried again at the next
// tick: the node is dropped only if none succeeds for the bound.
func (r *Registry) Run(ctx context.Context, n propagation.Node, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = propagation.DefaultHeartbeatInterval
	}
	if onError == nil {
		onError = func(error) {}
	}
	beat := func() {
		err := r.Heartbeat(ctx, n)
		switch {
		case err == nil:
			if r.beats != nil {
				r.beats["ok"].Inc()
				r.last.Set(float64(r.now().UnixNano()) / 1e9)
			}
		case ctx.Err() == nil:
			if r.beats != nil {
				r.beats["failed"].Inc()
			}
			onError(err)
		}
	}
	beat()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := r.Remove(rctx, n); err != nil {
				onError(err)
			}
			return
		case <-t.C:
			beat()
		}
	}
}

// Nodes implements propagation.Registry: it scans the table.
func (r *Registry) Nodes(ctx context.Context) (live []propagation.Node, dropped []propagation.Dropped, err error) {
	now := r.now()
	in := &dynamodb.ScanInput{TableName: aws.String(r.table), ConsistentRead: aws.Bool(true)}
	for {
		out, err := r.api.Scan(ctx, in)
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", r.table, err)
		}
		for _, item := range out.Items {
			n, beat, ok := decode(item)
			if !ok {
				continue // not an item of this registry
			}
			switch age := now.Sub(beat); {
			case age <= r.bound:
				live = append(live, n)
			case age <= 10*r.bound:
				dropped = append(dropped, propagation.Dropped{Node: n, LastHeartbeat: beat})
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return live, dropped, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

func decode(item map[string]types.AttributeValue) (propagation.Node, time.Time, bool) {
	str := func(name string) string {
		v, _ := item[name].(*types.AttributeValueMemberS)
		if v == nil {
			return ""
		}
		return v.Value
	}
	hb, _ := item[attrHeartbeat].(*types.AttributeValueMemberN)
	if hb == nil {
		return propagation.Node{}, time.Time{}, false
	}
	ms, err := strconv.ParseInt(hb.Value, 10, 64)
	n := propagation.Node{Region: str(attrRegion), ID: str(attrNode), Addr: str(attrAddr)}
	if err != nil || n.Region == "" || n.ID == "" {
		return propagation.Node{}, time.Time{}, false
	}
	return n, time.UnixMilli(ms), true
}
