package provision_test

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/go-cmp/cmp"

	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/infra/cloudformation"
	"github.com/tcs-dev/tcs/infra/provision"
	streamkinesis "github.com/tcs-dev/tcs/streamer/kinesis"
	"github.com/tcs-dev/tcs/streamer/publease"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	tcssns "github.com/tcs-dev/tcs/tcs/sns"
	"github.com/tcs-dev/tcs/tcs/work/workdynamo"
)

// The templates and the code must agree on every name, key schema and IAM
// action; these tests fail when one side changes alone.

const (
	prefix  = "acme-tcs"
	home    = "us-east-1"
	serving = "eu-west-1"
)

var names = provision.Names{Prefix: prefix}

func templates(t *testing.T) (homeT, regionT *cloudformation.Template, homeVars, regionVars map[string]string) {
	t.Helper()
	var err error
	if homeT, err = cloudformation.Parse(cloudformation.Home); err != nil {
		t.Fatal(err)
	}
	if regionT, err = cloudformation.Parse(cloudformation.Region); err != nil {
		t.Fatal(err)
	}
	pseudo := map[string]string{"Prefix": prefix, "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
	homeVars = map[string]string{"AWS::Region": home, "ShardCount": "2"}
	regionVars = map[string]string{"AWS::Region": serving, "HomeRegion": home}
	for k, v := range pseudo {
		homeVars[k], regionVars[k] = v, v
	}
	return homeT, regionT, homeVars, regionVars
}

func TestTemplateParametersMatchDefaults(t *testing.T) {
	t.Parallel()
	homeT, regionT, _, _ := templates(t)
	for name, tpl := range map[string]*cloudformation.Template{"home": homeT, "region": regionT} {
		if got := tpl.Parameters["Prefix"].Default; got != provision.DefaultPrefix {
			t.Errorf("%s.yaml: Prefix default %v, want %q (provision.DefaultPrefix)", name, got, provision.DefaultPrefix)
		}
	}
}

func TestTemplateTablesMatchCode(t *testing.T) {
	t.Parallel()
	homeT, regionT, homeVars, regionVars := templates(t)
	for _, tc := range []struct {
		tpl  *cloudformation.Template
		vars map[string]string
		id   string
		want *dynamodb.CreateTableInput
		// protect: deletion protection on; pitr: point-in-time recovery on
		protect, pitr bool
	}{
		{homeT, homeVars, "CatalogTable", catalogdynamo.TableInput(names.CatalogTable()), true, true},
		{regionT, regionVars, "ReplicaTable", replicadynamo.TableInput(names.ReplicaTable(serving)), false, true},
		{regionT, regionVars, "LeaseTable", streamkinesis.LeaseTableInput(names.LeaseTable(serving)), false, false},
		{homeT, homeVars, "PublishLeaseTable", streamkinesis.LeaseTableInput(names.PublishLeaseTable()), false, false},
		{homeT, homeVars, "NodesTable", dynamonodes.TableInput(dynamonodes.TableName(names.Base())), false, false},
	} {
		t.Run(tc.id, func(t *testing.T) {
			r, ok := tc.tpl.Resources[tc.id]
			if !ok || r.Type != "AWS::DynamoDB::Table" {
				t.Fatalf("no AWS::DynamoDB::Table %s in the template", tc.id)
			}
			p := r.Properties
			name, err := cloudformation.Resolve(p["TableName"], tc.vars)
			if err != nil {
				t.Fatal(err)
			}
			if want := aws.ToString(tc.want.TableName); name != want {
				t.Errorf("TableName %q, code uses %q", name, want)
			}
			if got, want := p["BillingMode"], string(tc.want.BillingMode); got != want {
				t.Errorf("BillingMode %v, code creates %v", got, want)
			}
			var gotAttrs, wantAttrs, gotKeys, wantKeys []string
			for _, a := range list(t, p["AttributeDefinitions"]) {
				gotAttrs = append(gotAttrs, str(a["AttributeName"])+":"+str(a["AttributeType"]))
			}
			for _, a := range tc.want.AttributeDefinitions {
				wantAttrs = append(wantAttrs, aws.ToString(a.AttributeName)+":"+string(a.AttributeType))
			}
			for _, k := range list(t, p["KeySchema"]) {
				gotKeys = append(gotKeys, str(k["AttributeName"])+":"+str(k["KeyType"]))
			}
			for _, k := range tc.want.KeySchema {
				wantKeys = append(wantKeys, aws.ToString(k.AttributeName)+":"+string(k.KeyType))
			}
			sort.Strings(gotAttrs)
			sort.Strings(wantAttrs)
			if diff := cmp.Diff(wantAttrs, gotAttrs); diff != "" {
				t.Errorf("AttributeDefinitions (-code +template):\n%s", diff)
			}
			if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
				t.Errorf("KeySchema (-code +template):\n%s", diff)
			}
			if got := p["DeletionProtectionEnabled"] == true; got != tc.protect {
				t.Errorf("DeletionProtectionEnabled %v, want %v", got, tc.protect)
			}
			pitr, _ := p["PointInTimeRecoverySpecification"].(map[string]any)
			if got := pitr["PointInTimeRecoveryEnabled"] == true; got != tc.pitr {
				t.Errorf("PointInTimeRecoveryEnabled %v, want %v", got, tc.pitr)
			}
		})
	}
}

// TestTemplateNodesTableTTL: the template's node registry expires items by
// the attribute the code writes, as Apply's EnableTTL does.
func TestTemplateNodesTableTTL(t *testing.T) {
	t.Parallel()
	homeT, _, _, _ := templates(t)
	ttl, _ := homeT.Resources["NodesTable"].Properties["TimeToLiveSpecification"].(map[string]any)
	if str(ttl["AttributeName"]) != dynamonodes.TTLAttribute || ttl["Enabled"] != true {
		t.Errorf("NodesTable TimeToLiveSpecification %v, want AttributeName %s enabled", ttl, dynamonodes.TTLAttribute)
	}
}

func TestTemplateStreamAndTopicMatchCode(t *testing.T) {
	t.Parallel()
	homeT, regionT, homeVars, regionVars := templates(t)
	s := homeT.Resources["ChangeStream"]
	if s.Type != "AWS::Kinesis::Stream" {
		t.Fatalf("ChangeStream is %q", s.Type)
	}
	if name, err := cloudformation.Resolve(s.Properties["Name"], homeVars); err != nil || name != names.Stream() {
		t.Errorf("stream name %q (%v), code uses %q", name, err, names.Stream())
	}
	topic := regionT.Resources["InvalidationTopic"]
	if name, err := cloudformation.Resolve(topic.Properties["TopicName"], regionVars); err != nil || name != names.Topic(serving) {
		t.Errorf("topic name %q (%v), code uses %q", name, err, names.Topic(serving))
	}
	// The stream ARN the region's appliers may read is the home stack's stream.
	arn, err := cloudformation.Resolve(statement(t, regionT, "ApplierPolicy", "Stream")["Resource"], regionVars)
	if want := "arn:aws:kinesis:" + home + ":123456789012:stream/" + names.Stream(); err != nil || arn != want {
		t.Errorf("applier stream ARN %q (%v), want %q", arn, err, want)
	}
	// A node may touch only its region's invalidation queues.
	arn, err = cloudformation.Resolve(statement(t, regionT, "NodePolicy", "OwnQueue")["Resource"], regionVars)
	if want := "arn:aws:sqs:" + serving + ":123456789012:" + tcssns.QueueNamePrefix(prefix, serving) + "*"; err != nil || arn != want {
		t.Errorf("node queue ARN %q (%v), want %q", arn, err, want)
	}
}

// reconcilerCatalog is what streamer reconcile does to the catalog table:
// export (Query, BatchGetItem; GetItem: the layout check), resync
// (BatchGetItem of the tenants and the outbox shards' heads, PutItem of
// outbox entries and an audit record), DescribeTable (open).
// TestLeastPrivilegeMatchesCode replays the real calls against it.
var reconcilerCatalog = []string{"dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"}

// TestTemplatePoliciesMatchCode checks least privilege both ways: each
// policy statement allows exactly the IAM actions behind the SDK methods the
// code's API interfaces declare for that resource — a method added to an
// interface without its permission, or a permission nothing calls, fails.
func TestTemplatePoliciesMatchCode(t *testing.T) {
	t.Parallel()
	homeT, regionT, _, _ := templates(t)
	catalogAPI := actions("dynamodb", (*catalogdynamo.API)(nil))
	kinesisAPI := actions("kinesis", (*streamkinesis.KinesisAPI)(nil))
	replicaAPI := actions("dynamodb", (*replicadynamo.API)(nil))
	replicaReads := actions("dynamodb", (*replicadynamo.API)(nil), "TransactWriteItems")
	type policyCase struct {
		tpl         *cloudformation.Template
		policy, sid string
		want        []string
		subsetOf    []string // want must be a subset of this interface's actions
	}
	cases := []policyCase{
		{tpl: homeT, policy: "CatalogPolicy", sid: "SourceOfTruth", want: catalogAPI},
		{tpl: homeT, policy: "CatalogPolicy", sid: "NodeRegistry", want: []string{"dynamodb:Scan"}, subsetOf: actions("dynamodb", (*dynamonodes.API)(nil))},
		{tpl: regionT, policy: "NodePolicy", sid: "NodeRegistry", want: []string{"dynamodb:DeleteItem", "dynamodb:PutItem"}, subsetOf: actions("dynamodb", (*dynamonodes.API)(nil))},
		{tpl: homeT, policy: "PublisherPolicy", sid: "Outbox", want: []string{"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query"}, subsetOf: catalogAPI},
		{tpl: homeT, policy: "PublisherPolicy", sid: "LayoutCheck", want: []string{"dynamodb:GetItem"}, subsetOf: catalogAPI},
		{tpl: homeT, policy: "PublisherPolicy", sid: "OutboxTable", want: []string{"dynamodb:DescribeTable"}, subsetOf: catalogAPI},
		{tpl: homeT, policy: "PublisherPolicy", sid: "Stream", want: []string{"kinesis:DescribeStreamSummary", "kinesis:PutRecords"}, subsetOf: kinesisAPI},
		{tpl: homeT, policy: "PublisherPolicy", sid: "PublishLeases", want: actions("dynamodb", (*publease.API)(nil))},
		{tpl: homeT, policy: "ReconcilerPolicy", sid: "Catalog", want: reconcilerCatalog, subsetOf: catalogAPI},
		{tpl: homeT, policy: "ReconcilerPolicy", sid: "NoDeletes", want: []string{"dynamodb:BatchWriteItem", "dynamodb:DeleteItem"}},
		{tpl: homeT, policy: "ReconcilerPolicy", sid: "Stream", want: actions("kinesis", (*streamkinesis.KinesisAPI)(nil), "PutRecords")},
		{tpl: homeT, policy: "ReconcilerPolicy", sid: "Leases", want: actions("dynamodb", (*streamkinesis.LeaseAPI)(nil))},
		{tpl: homeT, policy: "ReconcilerPolicy", sid: "Replicas", want: []string{"dynamodb:DescribeTable", "dynamodb:Scan"}, subsetOf: replicaAPI},
		{tpl: regionT, policy: "ApplierPolicy", sid: "Stream", want: actions("kinesis", (*streamkinesis.KinesisAPI)(nil), "PutRecords")},
		{tpl: regionT, policy: "ApplierPolicy", sid: "Leases", want: actions("dynamodb", (*streamkinesis.LeaseAPI)(nil))},
		{tpl: regionT, policy: "ApplierPolicy", sid: "Replica", want: actions("dynamodb", (*replicadynamo.API)(nil), "Scan"), subsetOf: replicaAPI},
		{tpl: regionT, policy: "ApplierPolicy", sid: "Invalidate", want: []string{"sns:GetTopicAttributes", "sns:Publish"}, subsetOf: actions("sns", (*tcssns.SNSAPI)(nil))},
		{tpl: regionT, policy: "ApplierPolicy", sid: "FindTopic", want: actions("sns", (*tcssns.ListTopicsAPI)(nil))},
		{tpl: regionT, policy: "NodePolicy", sid: "Replica", want: replicaReads},
		{tpl: regionT, policy: "NodePolicy", sid: "WorkLeases", want: actions("dynamodb", (*workdynamo.API)(nil))},
		{tpl: regionT, policy: "NodePolicy", sid: "Topic", want: actions("sns", (*tcssns.SNSAPI)(nil), "Publish", "Subscribe")},
		{tpl: regionT, policy: "NodePolicy", sid: "Subscribe", want: []string{"sns:Subscribe"}},
		{tpl: regionT, policy: "NodePolicy", sid: "OwnQueue", want: actions("sqs", (*tcssns.SQSAPI)(nil), "ListQueues", "DeleteQueue")},
		{tpl: regionT, policy: "NodePolicy", sid: "DeleteQueue", want: []string{"sqs:DeleteQueue"}},
		{tpl: regionT, policy: "NodePolicy", sid: "FindQueuesAndTopic", want: append(actions("sns", (*tcssns.ListTopicsAPI)(nil)), "sqs:ListQueues")},
	}
	// Every statement is checked: here, or (KMS use, the audit deny) by
	// checkEncryption and checkLeastPrivilege, which evaluate them.
	checked := map[string]bool{}
	for _, tc := range cases {
		checked[tc.policy+"/"+tc.sid] = true
	}
	for _, p := range policies(homeT, regionT, nil, nil) {
		for _, st := range p.statements(t) {
			sid := str(st["Sid"])
			if !checked[p.name+"/"+sid] && !slices.Contains([]string{"StreamEncryption", "TopicEncryption", "AuditAppendOnly"}, sid) {
				t.Errorf("%s: statement %q is not checked by any drift test: add it to TestTemplatePoliciesMatchCode", p.name, sid)
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.policy+"/"+tc.sid, func(t *testing.T) {
			var got []string
			for _, a := range list(t, statement(t, tc.tpl, tc.policy, tc.sid)["Action"]) {
				got = append(got, a["."].(string))
			}
			want := slices.Clone(tc.want)
			sort.Strings(got)
			sort.Strings(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("actions (-code needs +template allows):\n%s", diff)
			}
			for _, a := range want {
				if tc.subsetOf != nil && !slices.Contains(tc.subsetOf, a) {
					t.Errorf("%s is not among the API interface's actions %v", a, tc.subsetOf)
				}
			}
		})
	}
}

// TestTemplateEncryptionMatchesCode checks that the templates encrypt what
// Apply encrypts, with the same keys, and that the roles may use the keys.
func TestTemplateEncryptionMatchesCode(t *testing.T) {
	t.Parallel()
	homeT, regionT, homeVars, regionVars := templates(t)
	for _, p := range checkEncryption(t, homeT, regionT, homeVars, regionVars) {
		t.Error(p)
	}
}

// checkEncryption returns what is unencrypted, encrypted otherwise than
// Apply does it, or encrypted with a key a role that needs it may not use.
func checkEncryption(t *testing.T, homeT, regionT *cloudformation.Template, homeVars, regionVars map[string]string) []string {
	t.Helper()
	var problems []string
	enc, _ := homeT.Resources["ChangeStream"].Properties["StreamEncryption"].(map[string]any)
	if enc["EncryptionType"] != "KMS" || enc["KeyId"] != provision.StreamKMSKey {
		problems = append(problems, fmt.Sprintf("ChangeStream encryption %v, want KMS with %s (provision.StreamKMSKey)", enc, provision.StreamKMSKey))
	}
	if key := regionT.Resources["InvalidationTopic"].Properties["KmsMasterKeyId"]; key != provision.TopicKMSKey {
		problems = append(problems, fmt.Sprintf("InvalidationTopic KmsMasterKeyId %v, want %s (provision.TopicKMSKey)", key, provision.TopicKMSKey))
	}
	for _, tpl := range []*cloudformation.Template{homeT, regionT} {
		for id, r := range tpl.Resources {
			if r.Type != "AWS::DynamoDB::Table" {
				continue
			}
			if sse, _ := r.Properties["SSESpecification"].(map[string]any); sse["SSEEnabled"] != true {
				problems = append(problems, fmt.Sprintf("table %s: SSESpecification %v, want SSEEnabled", id, sse))
			}
		}
	}
	// The roles that write and read the stream and the topic may use their
	// keys, through the service only.
	ps := policies(homeT, regionT, homeVars, regionVars)
	key := "arn:aws:kms:" + home + ":123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	via := func(service, region string) map[string][]string {
		return map[string][]string{"kms:ViaService": {service + "." + region + ".amazonaws.com"}}
	}
	for _, tc := range []struct {
		policy, action string
		context        map[string][]string
		want           decision
	}{
		{"PublisherPolicy", "kms:GenerateDataKey", via("kinesis", home), allowed},
		{"ApplierPolicy", "kms:Decrypt", via("kinesis", home), allowed},
		{"ApplierPolicy", "kms:GenerateDataKey", via("sns", serving), allowed},
		{"ApplierPolicy", "kms:Decrypt", via("sns", serving), allowed},
		{"PublisherPolicy", "kms:GenerateDataKey", nil, notPermitted},
		{"ApplierPolicy", "kms:Decrypt", via("s3", serving), notPermitted},
		{"ApplierPolicy", "kms:Decrypt", nil, notPermitted},
	} {
		req := request{action: tc.action, resource: key, context: tc.context}
		if d := ps[tc.policy].decide(t, req); d != tc.want {
			problems = append(problems, fmt.Sprintf("%s: %v is %s, want %s", tc.policy, req, d, tc.want))
		}
	}
	return problems
}

// iamActions maps SDK operations to the IAM actions that authorise them
// where the two differ.
var iamActions = map[string][]string{
	"dynamodb:TransactWriteItems": {"dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
	"dynamodb:TransactGetItems":   {"dynamodb:GetItem"},
	"sqs:DeleteMessageBatch":      {"sqs:DeleteMessage"},
	"sqs:SendMessageBatch":        {"sqs:SendMessage"},
}

// actions returns the IAM actions behind the methods of the interface
// *iface points to, without those named in except.
func actions(service string, iface any, except ...string) []string {
	typ := reflect.TypeOf(iface).Elem()
	set := map[string]bool{}
	for i := range typ.NumMethod() {
		m := typ.Method(i).Name
		if slices.Contains(except, m) {
			continue
		}
		op := service + ":" + m
		if mapped, ok := iamActions[op]; ok {
			for _, a := range mapped {
				set[a] = true
			}
			continue
		}
		set[op] = true
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func statement(t *testing.T, tpl *cloudformation.Template, policy, sid string) map[string]any {
	t.Helper()
	r, ok := tpl.Resources[policy]
	if !ok || r.Type != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("no AWS::IAM::ManagedPolicy %s", policy)
	}
	doc, _ := r.Properties["PolicyDocument"].(map[string]any)
	var sids []string
	for _, st := range list(t, doc["Statement"]) {
		if st["Sid"] == sid {
			return st
		}
		sids = append(sids, str(st["Sid"]))
	}
	t.Fatalf("policy %s has no statement %s (has %s)", policy, sid, strings.Join(sids, ", "))
	return nil
}

// list returns a YAML list as maps; scalar items become {".": item}.
func list(t *testing.T, v any) []map[string]any {
	t.Helper()
	items, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not a list", v)
	}
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		} else {
			out = append(out, map[string]any{".": it})
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }
