package cloudformation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/infra/cloudformation"
	"github.com/tcs-dev/tcs/infra/emulators"
)

// The audit archive of home.yaml (AuditArchive=enabled) is checked as the
// provision drift tests check the IAM policies: checkArchive is a function
// of the template, TestAuditArchive runs it on the committed template, and
// TestAuditArchiveCatchesWeakenedTemplates shows each of its checks failing
// on a template weakened one way. The pipe's filter is evaluated against the
// stream records the catalog's real writes would produce (the dynamo store
// run against DynamoDB Local), so it must keep exactly the audit records
// whatever the key shape becomes.

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// streamEvent is a DynamoDB stream record as an EventBridge pipe sees it,
// and whether it is a change to an audit record (decided from what the code
// wrote, not from its key).
type streamEvent struct {
	record map[string]any
	audit  bool
}

var (
	eventsOnce sync.Once
	events     []streamEvent
	eventsErr  error
)

// catalogEvents runs the catalog's writes of every kind against DynamoDB
// Local once per test binary and returns the stream records they make, plus
// two that only tampering makes (an audit record updated, one deleted).
func catalogEvents(t *testing.T) []streamEvent {
	t.Helper()
	// Outside the Once: under -short this skips the test, and a skip inside
	// Do would mark it done with no events.
	db := emulators.SharedDynamoDBClient(t)
	eventsOnce.Do(func() { events, eventsErr = recordEvents(db) })
	if eventsErr != nil {
		t.Fatal(eventsErr)
	}
	return events
}

func recordEvents(db *dynamodb.Client) ([]streamEvent, error) {
	ctx := context.Background()
	table := emulators.Name("cfn-archive-catalog")
	if _, err := db.CreateTable(ctx, catalogdynamo.TableInput(table)); err != nil {
		return nil, fmt.Errorf("create table: %w", err)
	}
	rec := &streamRecorder{API: db, audit: map[string]bool{}}
	store, err := catalogdynamo.Open(ctx, catalogdynamo.Config{Client: rec, Table: table})
	if err != nil {
		return nil, err
	}
	created, err := store.Create(ctx, storetest.NewTenant("acme", "acme.example.com"), "admin")
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	upd := *created
	upd.Hostnames = []string{"www.acme.example.com"}
	if _, err := store.Update(ctx, &upd, created.Version, "admin"); err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	if _, err := store.Create(ctx, storetest.NewTenant("globex", "globex.example.com"), "admin"); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	if _, err := store.Delete(ctx, "globex", 0, "admin"); err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	if _, err := store.Resync(ctx, []catalog.ResyncRequest{{ID: "acme"}}, []string{"eu-west-1"}); err != nil {
		return nil, fmt.Errorf("resync: %w", err)
	}
	if _, _, err := store.ResyncAll(ctx, "", 10, nil); err != nil {
		return nil, fmt.Errorf("resync all: %w", err)
	}
	acked := 0
	for shard := range store.OutboxShards() {
		entries, err := store.ReadOutbox(ctx, shard, 0, 100)
		if err != nil {
			return nil, fmt.Errorf("read outbox shard %d: %w", shard, err)
		}
		if len(entries) == 0 {
			continue
		}
		if err := store.AckOutbox(ctx, shard, entries[len(entries)-1].Seq); err != nil {
			return nil, fmt.Errorf("ack outbox: %w", err)
		}
		acked += len(entries)
	}
	if acked == 0 {
		return nil, fmt.Errorf("read outbox: no entries")
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.events
	// What the IAM deny stops the catalog's role from doing, and what the
	// archive must record if anyone else does it.
	for _, ev := range rec.events {
		if ev.audit {
			keys := ev.record["dynamodb"].(map[string]any)["Keys"]
			out = append(out,
				streamEvent{audit: true, record: map[string]any{"eventName": "MODIFY", "eventSource": "aws:dynamodb",
					"dynamodb": map[string]any{"Keys": keys, "NewImage": ev.record["dynamodb"].(map[string]any)["NewImage"]}}},
				streamEvent{audit: true, record: map[string]any{"eventName": "REMOVE", "eventSource": "aws:dynamodb",
					"dynamodb": map[string]any{"Keys": keys}}})
			break
		}
	}
	return out, nil
}

// streamRecorder turns every item the catalog writes into the stream
// record DynamoDB Streams would carry (NEW_IMAGE).
type streamRecorder struct {
	catalogdynamo.API
	mu     sync.Mutex
	events []streamEvent
	audit  map[string]bool // by key: the item put there was an audit record
}

func (r *streamRecorder) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	out, err := r.API.TransactWriteItems(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, it := range in.TransactItems {
		switch {
		case it.Put != nil:
			r.put(it.Put.Item)
		case it.Update != nil:
			r.change("MODIFY", it.Update.Key)
		case it.Delete != nil:
			r.change("REMOVE", it.Delete.Key)
		}
	}
	return out, nil
}

func (r *streamRecorder) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	out, err := r.API.BatchWriteItem(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reqs := range in.RequestItems {
		for _, w := range reqs {
			switch {
			case w.PutRequest != nil:
				r.put(w.PutRequest.Item)
			case w.DeleteRequest != nil:
				r.change("REMOVE", w.DeleteRequest.Key)
			}
		}
	}
	for _, unprocessed := range out.UnprocessedItems {
		if len(unprocessed) > 0 {
			return out, fmt.Errorf("recorder: unprocessed items are not recorded")
		}
	}
	return out, nil
}

func (r *streamRecorder) put(item map[string]types.AttributeValue) {
	keys := map[string]types.AttributeValue{"PK": item["PK"], "SK": item["SK"]}
	id := keyID(keys)
	name := "INSERT"
	if _, ok := r.audit[id]; ok {
		name = "MODIFY"
	}
	r.audit[id] = isAuditItem(item)
	r.events = append(r.events, streamEvent{audit: r.audit[id], record: map[string]any{
		"eventName": name, "eventSource": "aws:dynamodb",
		"dynamodb": map[string]any{"Keys": attrsJSON(keys), "NewImage": attrsJSON(item), "StreamViewType": "NEW_IMAGE"},
	}})
}

func (r *streamRecorder) change(name string, keys map[string]types.AttributeValue) {
	r.events = append(r.events, streamEvent{audit: r.audit[keyID(keys)], record: map[string]any{
		"eventName": name, "eventSource": "aws:dynamodb",
		"dynamodb": map[string]any{"Keys": attrsJSON(keys), "StreamViewType": "NEW_IMAGE"},
	}})
}

func keyID(keys map[string]types.AttributeValue) string {
	pk, _ := keys["PK"].(*types.AttributeValueMemberS)
	sk, _ := keys["SK"].(*types.AttributeValueMemberS)
	if pk == nil || sk == nil {
		return fmt.Sprintf("%v", keys)
	}
	return pk.Value + "\x00" + sk.Value
}

// isAuditItem reports whether an item holds an audit record: its doc is a
// hash-chained catalog.AuditRecord (tenant documents and outbox entries
// have other fields).
func isAuditItem(item map[string]types.AttributeValue) bool {
	doc, ok := item["doc"].(*types.AttributeValueMemberS)
	if !ok {
		return false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc.Value), &fields); err != nil {
		return false
	}
	for _, f := range []string{"tenant_id", "action", "actor", "at", "hash"} {
		if _, ok := fields[f]; !ok {
			return false
		}
	}
	var rec catalog.AuditRecord
	return json.Unmarshal([]byte(doc.Value), &rec) == nil && rec.Hash != ""
}

// attrsJSON renders items in the DynamoDB JSON of stream records.
func attrsJSON(item map[string]types.AttributeValue) map[string]any {
	out := map[string]any{}
	for k, v := range item {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			out[k] = map[string]any{"S": v.Value}
		case *types.AttributeValueMemberN:
			out[k] = map[string]any{"N": v.Value}
		case *types.AttributeValueMemberBOOL:
			out[k] = map[string]any{"BOOL": v.Value}
		default:
			out[k] = map[string]any{"?": fmt.Sprintf("%T", v)}
		}
	}
	return out
}

// matchPattern evaluates an EventBridge event pattern (the subset pipes'
// filters use here: nested objects, and leaves that are lists of exact
// values or {"prefix": …}) against an event. An operator it does not know
// is an error, so a filter cannot pass by using one.
func matchPattern(pattern, event any) (bool, error) {
	switch p := pattern.(type) {
	case map[string]any:
		ev, ok := event.(map[string]any)
		if !ok {
			return false, nil
		}
		for k, sub := range p {
			v, present := ev[k]
			if !present {
				return false, nil
			}
			ok, err := matchPattern(sub, v)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case []any:
		for _, alt := range p {
			switch alt := alt.(type) {
			case map[string]any:
				if len(alt) != 1 {
					return false, fmt.Errorf("pattern operator %v: want one key", alt)
				}
				prefix, ok := alt["prefix"].(string)
				if !ok {
					return false, fmt.Errorf("pattern operator %v: only prefix is understood here", alt)
				}
				if s, ok := event.(string); ok && strings.HasPrefix(s, prefix) {
					return true, nil
				}
			default:
				if alt == event {
					return true, nil
				}
			}
		}
		return false, nil
	default:
		return false, fmt.Errorf("pattern value %v: want an object or a list", pattern)
	}
}

// params are the parameter values a deployment passes, over the defaults
// (pseudo parameters such as AWS::AccountId stay references).
func params(tpl *cloudformation.Template, overrides map[string]string) map[string]any {
	out := map[string]any{}
	for name, p := range tpl.Parameters {
		out[name] = p.Default
	}
	for k, v := range overrides {
		out[k] = v
	}
	return out
}

// noValue marks a property AWS::NoValue removes.
type noValue struct{}

// evalCondition evaluates a condition (Fn::Equals, Fn::Not, Fn::And,
// Fn::Or, Condition) with the given parameters.
func evalCondition(tpl *cloudformation.Template, c any, vals map[string]any) (bool, error) {
	m, ok := c.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("condition %v: want one function", c)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Condition":
			name, _ := arg.(string)
			def, ok := tpl.Conditions[name]
			if !ok {
				return false, fmt.Errorf("no condition %q", name)
			}
			return evalCondition(tpl, def, vals)
		case "Fn::Equals":
			if len(args) != 2 {
				return false, fmt.Errorf("Fn::Equals %v: want two values", arg)
			}
			a, err := value(tpl, args[0], vals)
			if err != nil {
				return false, err
			}
			b, err := value(tpl, args[1], vals)
			if err != nil {
				return false, err
			}
			return fmt.Sprint(a) == fmt.Sprint(b), nil
		case "Fn::Not", "Fn::And", "Fn::Or":
			var res []bool
			for _, a := range args {
				r, err := evalCondition(tpl, a, vals)
				if err != nil {
					return false, err
				}
				res = append(res, r)
			}
			switch {
			case fn == "Fn::Not" && len(res) == 1:
				return !res[0], nil
			case fn == "Fn::And":
				return !slices.Contains(res, false), nil
			case fn == "Fn::Or":
				return slices.Contains(res, true), nil
			}
		}
		return false, fmt.Errorf("condition function %s %v not understood", fn, arg)
	}
	panic("unreachable")
}

// value resolves Fn::If (and Ref to parameters, for conditions) in v with
// the given parameters; other functions are left as they are.
func value(tpl *cloudformation.Template, v any, vals map[string]any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["Ref"].(string); ok && len(v) == 1 {
			if ref == "AWS::NoValue" {
				return noValue{}, nil
			}
			if val, ok := vals[ref]; ok {
				return val, nil
			}
			return v, nil
		}
		if args, ok := v["Fn::If"].([]any); ok && len(v) == 1 {
			if len(args) != 3 {
				return nil, fmt.Errorf("Fn::If %v: want condition, then, else", args)
			}
			name, _ := args[0].(string)
			cond, err := evalCondition(tpl, map[string]any{"Condition": name}, vals)
			if err != nil {
				return nil, err
			}
			if cond {
				return value(tpl, args[1], vals)
			}
			return value(tpl, args[2], vals)
		}
		out := map[string]any{}
		for k, sub := range v {
			r, err := value(tpl, sub, vals)
			if err != nil {
				return nil, err
			}
			if _, drop := r.(noValue); !drop {
				out[k] = r
			}
		}
		return out, nil
	case []any:
		var out []any
		for _, sub := range v {
			r, err := value(tpl, sub, vals)
			if err != nil {
				return nil, err
			}
			if _, drop := r.(noValue); !drop {
				out = append(out, r)
			}
		}
		return out, nil
	}
	return v, nil
}

// deployed is what a stack of tpl with these parameters creates: its
// resources (properties with Fn::If resolved) and outputs, by logical id.
type deployed struct {
	resources map[string]cloudformation.Resource
	outputs   map[string]any
}

func deploy(tpl *cloudformation.Template, overrides map[string]string) (deployed, error) {
	vals := params(tpl, overrides)
	d := deployed{resources: map[string]cloudformation.Resource{}, outputs: map[string]any{}}
	created := func(cond string) (bool, error) {
		if cond == "" {
			return true, nil
		}
		return evalCondition(tpl, map[string]any{"Condition": cond}, vals)
	}
	for id, r := range tpl.Resources {
		ok, err := created(r.Condition)
		if err != nil {
			return d, fmt.Errorf("resource %s: %w", id, err)
		}
		if !ok {
			continue
		}
		props, err := value(tpl, map[string]any(r.Properties), vals)
		if err != nil {
			return d, fmt.Errorf("resource %s: %w", id, err)
		}
		r.Properties = props.(map[string]any)
		d.resources[id] = r
	}
	for id, o := range tpl.Outputs {
		m, _ := o.(map[string]any)
		cond, _ := m["Condition"].(string)
		ok, err := created(cond)
		if err != nil {
			return d, fmt.Errorf("output %s: %w", id, err)
		}
		if ok {
			d.outputs[id] = m
		}
	}
	return d, nil
}

// byType returns the ids of the deployed resources of type typ, sorted.
func (d deployed) byType(typ string) []string {
	var ids []string
	for id, r := range d.resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// archiveTypes are the resource types the audit archive adds.
var archiveTypes = []string{
	"AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::Pipes::Pipe", "AWS::KinesisFirehose::DeliveryStream",
	"AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::Logs::LogStream",
}

// The actions each archive role needs, and no more.
var archiveRoleActions = map[string][]string{
	"pipes.amazonaws.com": {
		"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
		"firehose:PutRecord", "firehose:PutRecordBatch",
		"logs:CreateLogStream", "logs:PutLogEvents",
	},
	"firehose.amazonaws.com": {
		"s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject",
		"logs:PutLogEvents",
	},
}

// checkArchive returns what is wrong with the audit archive of the home
// template: anything it creates while disabled, or, enabled, a bucket that
// is not write-once, a filter that does not keep exactly the audit records
// of events, a role allowed more than the path needs.
func checkArchive(t *testing.T, tpl *cloudformation.Template, events []streamEvent) []string {
	t.Helper()
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	p := tpl.Parameters["AuditArchive"]
	if p.Default != "disabled" || !slices.Equal(p.AllowedValues, []any{"enabled", "disabled"}) {
		fail("parameter AuditArchive: default %v, allowed %v; want default disabled, allowed [enabled disabled]", p.Default, p.AllowedValues)
	}
	if r := tpl.Parameters["AuditArchiveRetentionDays"]; r.Type != "Number" {
		fail("parameter AuditArchiveRetentionDays: type %q, want Number", r.Type)
	}
	off, err := deploy(tpl, nil)
	if err != nil {
		return append(problems, err.Error())
	}
	on, err := deploy(tpl, map[string]string{"AuditArchive": "enabled", "AuditArchiveRetentionDays": "400"})
	if err != nil {
		return append(problems, err.Error())
	}

	// Disabled (the default): nothing of the archive exists, and the table
	// has no stream.
	var extra []string
	for id := range on.resources {
		if _, ok := off.resources[id]; !ok {
			extra = append(extra, id)
		}
	}
	if len(extra) == 0 {
		fail("AuditArchive=enabled creates nothing")
	}
	for _, typ := range archiveTypes {
		if ids := off.byType(typ); len(ids) > 0 {
			fail("AuditArchive=disabled still creates %s %v", typ, ids)
		}
	}
	if s, ok := off.resources["CatalogTable"].Properties["StreamSpecification"]; ok {
		fail("AuditArchive=disabled: CatalogTable has a stream (%v)", s)
	}
	for id, o := range off.outputs {
		doc, _ := json.Marshal(o)
		for _, e := range extra {
			if strings.Contains(string(doc), e) {
				fail("AuditArchive=disabled: output %s refers to %s, which is not created", id, e)
			}
		}
	}

	// Enabled: one bucket, write once.
	buckets := on.byType("AWS::S3::Bucket")
	if len(buckets) != 1 {
		return append(problems, fmt.Sprintf("AuditArchive=enabled creates buckets %v, want one", buckets))
	}
	bucketID := buckets[0]
	bucket := on.resources[bucketID]
	b := bucket.Properties
	if bucket.DeletionPolicy != "Retain" {
		fail("bucket %s: DeletionPolicy %q, want Retain", bucketID, bucket.DeletionPolicy)
	}
	if b["ObjectLockEnabled"] != true {
		fail("bucket %s: ObjectLockEnabled %v, want true", bucketID, b["ObjectLockEnabled"])
	}
	lock, _ := b["ObjectLockConfiguration"].(map[string]any)
	rule, _ := lock["Rule"].(map[string]any)
	retention, _ := rule["DefaultRetention"].(map[string]any)
	if lock["ObjectLockEnabled"] != "Enabled" || retention["Mode"] != "COMPLIANCE" {
		fail("bucket %s: object lock %v, want Enabled with default retention mode COMPLIANCE", bucketID, lock)
	}
	if retention["Days"] != "400" || retention["Years"] != nil {
		fail("bucket %s: default retention %v, want Days from AuditArchiveRetentionDays (400 here)", bucketID, retention)
	}
	if v, _ := b["VersioningConfiguration"].(map[string]any); v["Status"] != "Enabled" {
		fail("bucket %s: versioning %v, want Enabled", bucketID, v)
	}
	block, _ := b["PublicAccessBlockConfiguration"].(map[string]any)
	for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
		if block[k] != true {
			fail("bucket %s: public access %s is %v, want true", bucketID, k, block[k])
		}
	}
	enc, _ := b["BucketEncryption"].(map[string]any)
	sse, _ := enc["ServerSideEncryptionConfiguration"].([]any)
	var algs []any
	for _, s := range sse {
		def, _ := s.(map[string]any)["ServerSideEncryptionByDefault"].(map[string]any)
		algs = append(algs, def["SSEAlgorithm"])
	}
	if len(algs) != 1 || algs[0] != "aws:kms" {
		fail("bucket %s: default encryption %v, want SSE-KMS (aws:kms)", bucketID, algs)
	}
	bucketARN := map[string]any{"Fn::GetAtt": []any{bucketID, "Arn"}}
	bucketObjects := map[string]any{"Fn::Sub": "${" + bucketID + ".Arn}/*"}

	// Its policy: no plain HTTP, no deletes, no writer but the delivery stream.
	var policy map[string]any
	for _, id := range on.byType("AWS::S3::BucketPolicy") {
		if r := on.resources[id]; fmt.Sprint(r.Properties["Bucket"]) == fmt.Sprint(map[string]any{"Ref": bucketID}) {
			policy, _ = r.Properties["PolicyDocument"].(map[string]any)
		}
	}
	statements, _ := policy["Statement"].([]any)
	denies := func(action string, resource any, condition func(map[string]any) bool) bool {
		for _, s := range statements {
			st, _ := s.(map[string]any)
			cond, _ := st["Condition"].(map[string]any)
			if st["Effect"] == "Deny" && st["Principal"] == "*" && containsValue(st["Action"], action) &&
				containsValue(st["Resource"], resource) && condition(cond) {
				return true
			}
		}
		return false
	}
	insecure := func(c map[string]any) bool {
		b, _ := c["Bool"].(map[string]any)
		return len(c) == 1 && len(b) == 1 && fmt.Sprint(b["aws:SecureTransport"]) == "false"
	}
	always := func(c map[string]any) bool { return len(c) == 0 }
	for _, res := range []any{bucketARN, bucketObjects} {
		if !denies("s3:PutObject", res, insecure) && !denies("s3:*", res, insecure) {
			fail("bucket policy of %s: requests without TLS to %v are not denied", bucketID, res)
		}
	}
	for _, a := range []string{"s3:DeleteObject", "s3:DeleteObjectVersion"} {
		if !denies(a, bucketObjects, always) {
			fail("bucket policy of %s: %s is not denied to everyone", bucketID, a)
		}
	}

	// The path: the table's stream → the pipe, filtered → Firehose → the bucket.
	if s, _ := on.resources["CatalogTable"].Properties["StreamSpecification"].(map[string]any); s["StreamViewType"] != "NEW_IMAGE" && s["StreamViewType"] != "NEW_AND_OLD_IMAGES" {
		fail("AuditArchive=enabled: CatalogTable stream %v, want one with new images", s)
	}
	firehoses := on.byType("AWS::KinesisFirehose::DeliveryStream")
	pipes := on.byType("AWS::Pipes::Pipe")
	if len(firehoses) != 1 || len(pipes) != 1 {
		return append(problems, fmt.Sprintf("AuditArchive=enabled creates delivery streams %v and pipes %v, want one each", firehoses, pipes))
	}
	dest, _ := on.resources[firehoses[0]].Properties["ExtendedS3DestinationConfiguration"].(map[string]any)
	if fmt.Sprint(dest["BucketARN"]) != fmt.Sprint(bucketARN) {
		fail("delivery stream %s writes to %v, not the archive bucket", firehoses[0], dest["BucketARN"])
	}
	onlyWriter := func(c map[string]any) bool {
		ne, _ := c["ArnNotEquals"].(map[string]any)
		return len(c) == 1 && len(ne) == 1 && fmt.Sprint(ne["aws:PrincipalArn"]) == fmt.Sprint(dest["RoleARN"])
	}
	if !denies("s3:PutObject", bucketObjects, onlyWriter) {
		fail("bucket policy of %s: principals other than the delivery stream's role (%v) may write", bucketID, dest["RoleARN"])
	}
	pipe := on.resources[pipes[0]].Properties
	if fmt.Sprint(pipe["Source"]) != fmt.Sprint(map[string]any{"Fn::GetAtt": []any{"CatalogTable", "StreamArn"}}) {
		fail("pipe %s reads %v, not the catalog table's stream", pipes[0], pipe["Source"])
	}
	if fmt.Sprint(pipe["Target"]) != fmt.Sprint(map[string]any{"Fn::GetAtt": []any{firehoses[0], "Arn"}}) {
		fail("pipe %s sends to %v, not the delivery stream", pipes[0], pipe["Target"])
	}
	src, _ := pipe["SourceParameters"].(map[string]any)
	ddb, _ := src["DynamoDBStreamParameters"].(map[string]any)
	for _, k := range []string{"MaximumRetryAttempts", "MaximumRecordAgeInSeconds"} {
		if fmt.Sprint(ddb[k]) != "-1" {
			fail("pipe %s: %s %v, want -1 (a failing batch is retried, never skipped)", pipes[0], k, ddb[k])
		}
	}
	filters, _ := src["FilterCriteria"].(map[string]any)
	list, _ := filters["Filters"].([]any)
	if len(list) == 0 {
		fail("pipe %s has no filter: it would archive every item of the catalog table", pipes[0])
	}
	var patterns []any
	for _, f := range list {
		var pat any
		raw, _ := f.(map[string]any)["Pattern"].(string)
		if err := json.Unmarshal([]byte(raw), &pat); err != nil {
			fail("pipe %s: filter pattern %q: %v", pipes[0], raw, err)
			continue
		}
		patterns = append(patterns, pat)
	}
	var kept, audit int
	for _, ev := range events {
		match := false
		for _, pat := range patterns {
			ok, err := matchPattern(pat, ev.record)
			if err != nil {
				fail("pipe %s: %v", pipes[0], err)
			}
			match = match || ok
		}
		if ev.audit {
			audit++
		}
		if match {
			kept++
		}
		if match != ev.audit && len(patterns) > 0 {
			doc, _ := json.Marshal(ev.record)
			if ev.audit {
				fail("pipe %s drops a change to an audit record: %s", pipes[0], doc)
			} else {
				fail("pipe %s keeps a change that is not to an audit record: %s", pipes[0], doc)
			}
		}
	}
	if audit == 0 || kept == 0 {
		fail("no audit records among the %d stream records (%d kept): the recording is broken", len(events), kept)
	}

	// The roles: only the path's actions, none of them wildcards, each on
	// this stack's own resources.
	roles := on.byType("AWS::IAM::Role")
	seen := map[string]bool{}
	for _, id := range roles {
		r := on.resources[id].Properties
		service, trustOK := trustedService(r["AssumeRolePolicyDocument"])
		if !trustOK {
			fail("role %s: trust policy %v, want one service principal, conditioned on this account", id, r["AssumeRolePolicyDocument"])
		}
		want, known := archiveRoleActions[service]
		if !known {
			fail("role %s is assumed by %q, which the archive does not use", id, service)
			continue
		}
		seen[service] = true
		if _, ok := r["ManagedPolicyArns"]; ok {
			fail("role %s: has managed policies %v; the archive roles' permissions are all inline", id, r["ManagedPolicyArns"])
		}
		var got []string
		pols, _ := r["Policies"].([]any)
		for _, pol := range pols {
			doc, _ := pol.(map[string]any)["PolicyDocument"].(map[string]any)
			sts, _ := doc["Statement"].([]any)
			for _, s := range sts {
				st, _ := s.(map[string]any)
				for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
					if _, ok := st[k]; ok {
						fail("role %s: statement %v uses %s", id, st["Sid"], k)
					}
				}
				if st["Effect"] != "Allow" {
					continue
				}
				for _, a := range asList(st["Action"]) {
					as, _ := a.(string)
					if strings.ContainsAny(as, "*?") {
						fail("role %s: statement %v allows wildcard action %q", id, st["Sid"], as)
					}
					got = append(got, as)
					for _, res := range asList(st["Resource"]) {
						if p := scoped(on, as, res); p != "" {
							fail("role %s: statement %v: %s on %v: %s", id, st["Sid"], as, res, p)
						}
					}
				}
			}
		}
		sort.Strings(got)
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(got, want) {
			fail("role %s (%s): allows %v, want exactly %v", id, service, got, want)
		}
	}
	for service := range archiveRoleActions {
		if !seen[service] {
			fail("no role for %s", service)
		}
	}
	return problems
}

// trustedService returns the one service a trust policy lets assume the
// role, and whether it conditions that on this account (the confused
// deputy: another account's pipe or delivery stream must not use the role).
func trustedService(v any) (string, bool) {
	doc, _ := v.(map[string]any)
	sts := asList(doc["Statement"])
	if len(sts) != 1 {
		return "", false
	}
	st, _ := sts[0].(map[string]any)
	principal, _ := st["Principal"].(map[string]any)
	services := asList(principal["Service"])
	if st["Effect"] != "Allow" || len(principal) != 1 || len(services) != 1 || st["Action"] != "sts:AssumeRole" {
		return "", false
	}
	service, _ := services[0].(string)
	cond, _ := st["Condition"].(map[string]any)
	eq, _ := cond["StringEquals"].(map[string]any)
	account := fmt.Sprint(map[string]any{"Ref": "AWS::AccountId"})
	return service, fmt.Sprint(eq["aws:SourceAccount"]) == account || fmt.Sprint(eq["sts:ExternalId"]) == account
}

// scoped returns why resource is too broad for action, or "": it must name
// one of the stack's resources (a !GetAtt or !Ref of it, or a !Sub built on
// one), DynamoDB actions only the table's stream, never its items.
func scoped(d deployed, action string, resource any) string {
	refs := referencedResources(d, resource)
	if len(refs) == 0 {
		return "names none of the stack's resources"
	}
	if strings.HasPrefix(action, "dynamodb:") {
		m, _ := resource.(map[string]any)
		sub, _ := m["Fn::Sub"].(string)
		isStream := fmt.Sprint(resource) == fmt.Sprint(map[string]any{"Fn::GetAtt": []any{"CatalogTable", "StreamArn"}}) ||
			sub == "${CatalogTable.Arn}/stream/*"
		if !isStream {
			return "a DynamoDB permission on something other than the catalog table's stream"
		}
	}
	return ""
}

// referencedResources returns the stack's resources a value names.
func referencedResources(d deployed, v any) []string {
	var out []string
	add := func(name string) {
		if _, ok := d.resources[name]; ok {
			out = append(out, name)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["Ref"].(string); ok {
			add(ref)
		}
		if ga, ok := v["Fn::GetAtt"].([]any); ok && len(ga) == 2 {
			name, _ := ga[0].(string)
			add(name)
		}
		if sub, ok := v["Fn::Sub"].(string); ok {
			for _, m := range subRef.FindAllStringSubmatch(sub, -1) {
				add(strings.SplitN(m[1], ".", 2)[0])
			}
		}
	}
	return out
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func containsValue(list, v any) bool {
	for _, x := range asList(list) {
		if fmt.Sprint(x) == fmt.Sprint(v) {
			return true
		}
	}
	return false
}

var subRef = regexp.MustCompile(`\$\{([^}!]+)\}`)

func homeTemplate(t *testing.T) *cloudformation.Template {
	t.Helper()
	tpl, err := cloudformation.Parse(cloudformation.Home)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func TestAuditArchive(t *testing.T) {
	t.Parallel()
	tpl := homeTemplate(t)
	evs := catalogEvents(t)
	for _, p := range checkArchive(t, tpl, evs) {
		t.Error(p)
	}
	audit := 0
	for _, ev := range evs {
		if ev.audit {
			audit++
		}
	}
	t.Logf("checked the filter against %d stream records of the catalog's writes, %d of them changes to audit records", len(evs), audit)
}

// TestAuditArchiveCatchesWeakenedTemplates shows that checkArchive fails
// on a template weakened in each way that would let an audit record be
// lost, altered, read by the public, or the path do more than copy.
func TestAuditArchiveCatchesWeakenedTemplates(t *testing.T) {
	t.Parallel()
	evs := catalogEvents(t)
	res := func(t *testing.T, tpl *cloudformation.Template, id string) map[string]any {
		t.Helper()
		r, ok := tpl.Resources[id]
		if !ok {
			t.Fatalf("no resource %s", id)
		}
		return r.Properties
	}
	sub := func(t *testing.T, m map[string]any, path ...string) map[string]any {
		t.Helper()
		for _, k := range path {
			next, ok := m[k].(map[string]any)
			if !ok {
				t.Fatalf("no %s in %v", k, m)
			}
			m = next
		}
		return m
	}
	roleStatement := func(t *testing.T, tpl *cloudformation.Template, role, sid string) map[string]any {
		t.Helper()
		for _, pol := range res(t, tpl, role)["Policies"].([]any) {
			for _, st := range sub(t, pol.(map[string]any), "PolicyDocument")["Statement"].([]any) {
				if st := st.(map[string]any); st["Sid"] == sid {
					return st
				}
			}
		}
		t.Fatalf("role %s has no statement %s", role, sid)
		return nil
	}
	dropBucketStatement := func(t *testing.T, tpl *cloudformation.Template, sid string) {
		t.Helper()
		doc := sub(t, res(t, tpl, "AuditArchiveBucketPolicy"), "PolicyDocument")
		before := len(doc["Statement"].([]any))
		doc["Statement"] = slices.DeleteFunc(doc["Statement"].([]any), func(st any) bool { return st.(map[string]any)["Sid"] == sid })
		if len(doc["Statement"].([]any)) == before {
			t.Fatalf("bucket policy has no statement %s", sid)
		}
	}
	filter := func(t *testing.T, tpl *cloudformation.Template, pattern string) {
		t.Helper()
		f := sub(t, res(t, tpl, "AuditArchivePipe"), "SourceParameters", "FilterCriteria")
		f["Filters"] = []any{map[string]any{"Pattern": pattern}}
	}
	for name, weaken := range map[string]func(t *testing.T, tpl *cloudformation.Template){
		"governance mode": func(t *testing.T, tpl *cloudformation.Template) {
			sub(t, res(t, tpl, "AuditArchiveBucket"), "ObjectLockConfiguration", "Rule", "DefaultRetention")["Mode"] = "GOVERNANCE"
		},
		"retention fixed, not the parameter": func(t *testing.T, tpl *cloudformation.Template) {
			sub(t, res(t, tpl, "AuditArchiveBucket"), "ObjectLockConfiguration", "Rule", "DefaultRetention")["Days"] = 1
		},
		"no object lock": func(t *testing.T, tpl *cloudformation.Template) {
			delete(res(t, tpl, "AuditArchiveBucket"), "ObjectLockEnabled")
		},
		"versioning suspended": func(t *testing.T, tpl *cloudformation.Template) {
			sub(t, res(t, tpl, "AuditArchiveBucket"), "VersioningConfiguration")["Status"] = "Suspended"
		},
		"public buckets not restricted": func(t *testing.T, tpl *cloudformation.Template) {
			sub(t, res(t, tpl, "AuditArchiveBucket"), "PublicAccessBlockConfiguration")["RestrictPublicBuckets"] = false
		},
		"SSE-S3 instead of KMS": func(t *testing.T, tpl *cloudformation.Template) {
			enc := sub(t, res(t, tpl, "AuditArchiveBucket"), "BucketEncryption")["ServerSideEncryptionConfiguration"].([]any)
			enc[0].(map[string]any)["ServerSideEncryptionByDefault"] = map[string]any{"SSEAlgorithm": "AES256"}
		},
		"plain HTTP not denied": func(t *testing.T, tpl *cloudformation.Template) {
			dropBucketStatement(t, tpl, "DenyInsecureTransport")
		},
		"deletes not denied": func(t *testing.T, tpl *cloudformation.Template) {
			dropBucketStatement(t, tpl, "DenyDeletes")
		},
		"anyone may write": func(t *testing.T, tpl *cloudformation.Template) {
			dropBucketStatement(t, tpl, "OnlyTheDeliveryStreamWrites")
		},
		"no filter": func(t *testing.T, tpl *cloudformation.Template) {
			delete(sub(t, res(t, tpl, "AuditArchivePipe"), "SourceParameters"), "FilterCriteria")
		},
		"filter keeps every insert": func(t *testing.T, tpl *cloudformation.Template) {
			filter(t, tpl, `{"eventName":["INSERT"]}`)
		},
		"filter drops tampering": func(t *testing.T, tpl *cloudformation.Template) {
			filter(t, tpl, `{"eventName":["INSERT"],"dynamodb":{"Keys":{"PK":{"S":[{"prefix":"AUDIT#"}]}}}}`)
		},
		"filter on the wrong key": func(t *testing.T, tpl *cloudformation.Template) {
			filter(t, tpl, `{"dynamodb":{"Keys":{"SK":{"S":[{"prefix":"AUDIT"}]}}}}`)
		},
		"filter on one tenant": func(t *testing.T, tpl *cloudformation.Template) {
			filter(t, tpl, `{"dynamodb":{"Keys":{"PK":{"S":["AUDIT#acme"]}}}}`)
		},
		"records skipped after retries": func(t *testing.T, tpl *cloudformation.Template) {
			sub(t, res(t, tpl, "AuditArchivePipe"), "SourceParameters", "DynamoDBStreamParameters")["MaximumRetryAttempts"] = 3
		},
		"wildcard action": func(t *testing.T, tpl *cloudformation.Template) {
			roleStatement(t, tpl, "AuditArchivePipeRole", "CatalogStream")["Action"] = []any{"dynamodb:*"}
		},
		"writer may delete": func(t *testing.T, tpl *cloudformation.Template) {
			st := roleStatement(t, tpl, "AuditArchiveDeliveryRole", "ArchiveObjects")
			st["Action"] = append(st["Action"].([]any), "s3:DeleteObjectVersion")
		},
		"writer on every bucket": func(t *testing.T, tpl *cloudformation.Template) {
			roleStatement(t, tpl, "AuditArchiveDeliveryRole", "ArchiveObjects")["Resource"] = "*"
		},
		"pipe may read the table's items": func(t *testing.T, tpl *cloudformation.Template) {
			roleStatement(t, tpl, "AuditArchivePipeRole", "CatalogStream")["Resource"] = map[string]any{"Fn::GetAtt": []any{"CatalogTable", "Arn"}}
		},
		"any account's pipe may assume the role": func(t *testing.T, tpl *cloudformation.Template) {
			trust := sub(t, res(t, tpl, "AuditArchivePipeRole"), "AssumeRolePolicyDocument")["Statement"].([]any)
			delete(trust[0].(map[string]any), "Condition")
		},
		"bucket deleted with the stack": func(t *testing.T, tpl *cloudformation.Template) {
			r := tpl.Resources["AuditArchiveBucket"]
			r.DeletionPolicy = "Delete"
			tpl.Resources["AuditArchiveBucket"] = r
		},
		"bucket created when disabled": func(t *testing.T, tpl *cloudformation.Template) {
			r := tpl.Resources["AuditArchiveBucket"]
			r.Condition = ""
			tpl.Resources["AuditArchiveBucket"] = r
		},
		"table stream always on": func(t *testing.T, tpl *cloudformation.Template) {
			res(t, tpl, "CatalogTable")["StreamSpecification"] = map[string]any{"StreamViewType": "NEW_IMAGE"}
		},
		"archive on by default": func(t *testing.T, tpl *cloudformation.Template) {
			p := tpl.Parameters["AuditArchive"]
			p.Default = "enabled"
			tpl.Parameters["AuditArchive"] = p
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tpl := homeTemplate(t)
			if problems := checkArchive(t, tpl, evs); len(problems) != 0 {
				t.Fatalf("the committed template fails the checks: %v", problems)
			}
			weaken(t, tpl)
			problems := checkArchive(t, tpl, evs)
			if len(problems) == 0 {
				t.Fatal("the checks pass on the weakened template")
			}
			t.Logf("caught: %s", problems[0])
		})
	}
}

// TestAuditArchiveHoldsTheChain checks that what the archive keeps is
// enough to verify the audit chains without the table: each archived
// record's new image carries the record with its hash and the hash of the
// one before it, and the records of each chain link up in key order.
func TestAuditArchiveHoldsTheChain(t *testing.T) {
	t.Parallel()
	chains := map[string][]catalog.AuditRecord{}
	sks := map[string][]string{}
	for _, ev := range catalogEvents(t) {
		if !ev.audit || ev.record["eventName"] != "INSERT" {
			continue
		}
		d := ev.record["dynamodb"].(map[string]any)
		pk := d["Keys"].(map[string]any)["PK"].(map[string]any)["S"].(string)
		sk := d["Keys"].(map[string]any)["SK"].(map[string]any)["S"].(string)
		doc, _ := d["NewImage"].(map[string]any)["doc"].(map[string]any)["S"].(string)
		var rec catalog.AuditRecord
		if err := json.Unmarshal([]byte(doc), &rec); err != nil {
			t.Fatalf("archived %s/%s: %v", pk, sk, err)
		}
		chains[pk] = append(chains[pk], rec)
		sks[pk] = append(sks[pk], sk)
	}
	if len(chains) < 3 { // acme, globex and the resync chain
		t.Fatalf("archived chains %v, want the two tenants' and the resyncs'", slices.Sorted(maps.Keys(chains)))
	}
	for pk, recs := range chains {
		if !slices.IsSorted(sks[pk]) {
			t.Errorf("%s: records written out of key order %v", pk, sks[pk])
		}
		for i, rec := range recs {
			if rec.Hash == "" {
				t.Errorf("%s record %d: no hash", pk, i)
			}
			if i > 0 && rec.PrevHash != recs[i-1].Hash {
				t.Errorf("%s record %d: prev_hash %q, the record before has hash %q", pk, i, rec.PrevHash, recs[i-1].Hash)
			}
		}
	}
}
