package provision_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"

	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/infra/provision"
	streamkinesis "github.com/tcs-dev/tcs/streamer/kinesis"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	tcssns "github.com/tcs-dev/tcs/tcs/sns"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// clients reaches the emulators through the SDK's default chain, as the
// binaries do (the environment is set by emulators.AWS.Setenv).
func clients(t *testing.T) provision.Clients {
	return provision.NewClients(func(region string) aws.Config {
		cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(region))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	})
}

func TestApplyCreatesWhatTheBackendsOpen(t *testing.T) {
	emulators.SharedAWS(t).Setenv(t)
	ctx := context.Background()
	c := clients(t)
	n := provision.Names{Prefix: emulators.Name("prov-a")}
	plan := provision.Plan{Names: n, HomeRegion: "us-east-1", Regions: []string{"us-east-1", "eu-west-1"}, Shards: 2}

	var out bytes.Buffer
	if err := provision.Apply(ctx, plan, c, &out); err != nil {
		t.Fatalf("Apply: %v\n%s", err, &out)
	}
	t.Logf("first apply:\n%s", &out)
	first := out.String()
	for _, want := range []string{n.CatalogTable(), n.Stream(), n.ReplicaTable("eu-west-1"), n.LeaseTable("us-east-1"), n.Topic("eu-west-1")} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Apply output does not mention %s", want)
		}
	}
	out.Reset()
	if err := provision.Apply(ctx, plan, c, &out); err != nil {
		t.Fatalf("second Apply (must be idempotent): %v\n%s", err, &out)
	}

	db := c.DynamoDB("us-east-1")
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(n.CatalogTable())})
	if err != nil {
		t.Fatal(err)
	}
	if !aws.ToBool(desc.Table.DeletionProtectionEnabled) {
		t.Errorf("catalog table %s has no deletion protection", n.CatalogTable())
	}
	if _, err := catalogdynamo.Open(ctx, catalogdynamo.Config{Client: db, Table: n.CatalogTable()}); err != nil {
		t.Errorf("catalog store on the provisioned table: %v", err)
	}
	for _, r := range plan.Regions {
		rep, err := replicadynamo.Open(ctx, replicadynamo.Config{Client: c.DynamoDB(r), Table: n.ReplicaTable(r)})
		if err != nil {
			t.Errorf("replica %s: %v", r, err)
		} else {
			rep.Close()
		}
		s, err := streamkinesis.Open(ctx, streamkinesis.Config{Kinesis: c.Kinesis("us-east-1"), DynamoDB: c.DynamoDB(r), Stream: n.Stream(), LeaseTable: n.LeaseTable(r)})
		if err != nil {
			t.Errorf("stream with %s's lease table: %v", r, err)
		} else {
			s.Close()
		}
		arn, err := tcssns.LookupTopic(ctx, c.SNS(r), n.Topic(r))
		if err != nil {
			t.Errorf("topic of %s: %v", r, err)
			continue
		}
		if _, err := tcssns.OpenBroadcaster(ctx, tcssns.Config{SNS: c.SNS(r), TopicARN: arn, Region: r}); err != nil {
			t.Errorf("broadcaster of %s: %v", r, err)
		}
	}
	// The emulators: fauxqs keeps a topic's KMS key, kinesalite has no
	// stream encryption; Apply encrypts what it can and warns about the rest
	// (encryption_test.go covers the other answers an endpoint can give).
	for _, r := range plan.Regions {
		arn, err := tcssns.LookupTopic(ctx, c.SNS(r), n.Topic(r))
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := c.SNS(r).GetTopicAttributes(ctx, &awssns.GetTopicAttributesInput{TopicArn: aws.String(arn)})
		if err != nil {
			t.Fatal(err)
		}
		if got := attrs.Attributes["KmsMasterKeyId"]; got != provision.TopicKMSKey {
			t.Errorf("topic %s: KmsMasterKeyId %q, want %q", n.Topic(r), got, provision.TopicKMSKey)
		}
	}
	sum, err := c.Kinesis("us-east-1").DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(n.Stream())})
	if err != nil {
		t.Fatal(err)
	}
	encrypted := sum.StreamDescriptionSummary.EncryptionType == ktypes.EncryptionTypeKms
	warned := strings.Contains(first, n.Stream()+": the endpoint does not support stream encryption")
	if encrypted == warned {
		t.Errorf("stream %s: encrypted %v, warned %v; want exactly one\n%s", n.Stream(), encrypted, warned, first)
	}
	// The node registry: TTL on expires, and the registry works on it.
	nodes := dynamonodes.TableName(n.Base())
	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(nodes)})
	if err != nil || ttl.TimeToLiveDescription == nil || ttl.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusEnabled ||
		aws.ToString(ttl.TimeToLiveDescription.AttributeName) != "expires" {
		t.Errorf("node registry %s TTL: %+v, %v; want enabled on expires", nodes, ttl, err)
	}
	reg := dynamonodes.New(db, nodes, 0, nil)
	node := propagation.Node{Region: "eu-west-1", ID: "node-1", Addr: "10.0.0.1:9001"}
	if err := reg.Heartbeat(ctx, node); err != nil {
		t.Errorf("heartbeat into %s: %v", nodes, err)
	} else if live, _, err := reg.Nodes(ctx); err != nil || len(live) != 1 || live[0] != node {
		t.Errorf("nodes of %s: %v, %v; want %v", nodes, live, err, node)
	}
	shards, err := c.Kinesis("us-east-1").ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(n.Stream())})
	if err != nil || len(shards.Shards) != 2 {
		t.Errorf("stream shards: %v, %v; want 2", shards, err)
	}
}

func TestApplyRefusesAForeignTable(t *testing.T) {
	emulators.SharedAWS(t).Setenv(t)
	ctx := context.Background()
	c := clients(t)
	n := provision.Names{Prefix: emulators.Name("prov-b")}
	_, err := c.DynamoDB("us-east-1").CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(n.CatalogTable()),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = provision.Apply(ctx, provision.Plan{Names: n, HomeRegion: "us-east-1", Regions: []string{"us-east-1"}, Shards: 1}, c, &out)
	if err == nil || !strings.Contains(err.Error(), n.CatalogTable()) || !strings.Contains(err.Error(), "another key schema") {
		t.Fatalf("Apply over a foreign table: %v; want an error naming the table and its key schema", err)
	}
}

func TestPlanValidate(t *testing.T) {
	t.Parallel()
	good := provision.Plan{HomeRegion: "us-east-1", Regions: []string{"us-east-1"}, Shards: 1}
	if err := good.Validate(); err != nil {
		t.Fatalf("good plan: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*provision.Plan)
		want string
	}{
		"no home region":   {func(p *provision.Plan) { p.HomeRegion = "" }, "home region"},
		"no regions":       {func(p *provision.Plan) { p.Regions = nil }, "no serving regions"},
		"bad region":       {func(p *provision.Plan) { p.Regions = []string{"EU West"} }, `region "EU West"`},
		"duplicate region": {func(p *provision.Plan) { p.Regions = []string{"a-1", "a-1"} }, "listed twice"},
		"no shards":        {func(p *provision.Plan) { p.Shards = 0 }, "shards 0"},
	} {
		p := good
		p.Regions = append([]string(nil), good.Regions...)
		tc.edit(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", name, err, tc.want)
		}
		// Apply refuses it before calling AWS (the nil clients would panic).
		if err := provision.Apply(context.Background(), p, provision.Clients{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: Apply accepted the plan", name)
		}
	}
}

// TestNamesMatchPackages: the names internal/awsnames derives (what the
// binaries open) are the ones the packages that create and use the
// resources derive themselves.
func TestNamesMatchPackages(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "acme-tcs"} {
		n := provision.Names{Prefix: prefix}
		if got, want := n.ReplicaTable("eu-west-1"), replicadynamo.TableName(prefix, "eu-west-1"); got != want {
			t.Errorf("prefix %q: replica table %q, tcs/dynamo says %q", prefix, got, want)
		}
		if got, want := n.Topic("eu-west-1"), tcssns.TopicName(prefix, "eu-west-1"); got != want {
			t.Errorf("prefix %q: topic %q, tcs/sns says %q", prefix, got, want)
		}
	}
}
