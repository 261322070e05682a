package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/infra/provision"
	"github.com/tcs-dev/tcs/internal/telemetry"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcssns "github.com/tcs-dev/tcs/tcs/sns"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// startAWS runs the whole system on the AWS backends against the local
// emulators: a fresh set of tables, stream and topics (provisioned as
// `tcsctl infra apply` does), reached through the SDK's default chain as
// the binaries reach them. It sets the process environment, so callers
// must not be parallel tests.
func startAWS(t testing.TB, extra ...string) (*system, provision.Names) {
	t.Helper()
	return startAWSTraced(t, nil, extra...)
}

// startAWSTraced is startAWS with tracing (nil: as the environment says).
func startAWSTraced(t testing.TB, tracing *telemetry.Tracing, extra ...string) (*system, provision.Names) {
	t.Helper()
	emu := emulators.SharedAWS(t)
	emu.Setenv(t)
	names := provision.Names{Prefix: emulators.Name("dev")}
	plan := provision.Plan{Names: names, HomeRegion: "us-east-1", Regions: []string{"us-east-1", "eu-west-1", "ap-southeast-2"}, Shards: 2}
	var out bytes.Buffer
	if err := provision.Apply(context.Background(), plan, provisionClients(t), &out); err != nil {
		t.Fatalf("provision: %v\n%s", err, &out)
	}
	env := emu.Env()
	env["TCS_BACKEND"], env["TCS_AWS_PREFIX"], env["TCS_POLL_INTERVAL"] = "aws", names.Prefix, "100ms"
	return startTraced(t, env, tracing, extra...), names
}

func provisionClients(t testing.TB) provision.Clients {
	return provision.NewClients(func(region string) aws.Config {
		cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(region))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	})
}

// TestEndToEndAWS is TestEndToEnd on the AWS family: REST write → DynamoDB
// source of truth and outbox → Kinesis → three DynamoDB replica tables →
// SNS/SQS invalidation → Lookup in three regions. The lookup caches keep
// answers for 30 s (cache.DefaultTTL), longer than endToEnd waits, so only
// the SNS/SQS invalidations can make the updates and the delete visible in
// time.
func TestEndToEndAWS(t *testing.T) {
	s, names := startAWS(t, "--seed=false")
	endToEnd(t, s)

	// Each region's tcs node has its own SQS queue while it runs.
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion("eu-west-1"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := awssqs.NewFromConfig(cfg).ListQueues(context.Background(), &awssqs.ListQueuesInput{
		QueueNamePrefix: aws.String(tcssns.QueueNamePrefix(names.Prefix, "eu-west-1"))})
	if err != nil || len(q.QueueUrls) != 1 {
		t.Errorf("eu-west-1 invalidation queues while running: %v, %v; want 1", q.QueueUrls, err)
	}

	// Each region's tcs node heartbeats into the home region's node
	// registry, as tcs nodes do, at its gRPC address.
	home, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	reg := dynamonodes.New(dynamodb.NewFromConfig(home), dynamonodes.TableName(names.Base()), 0, nil)
	testwait.For(t, "the three nodes in the registry", func() bool {
		live, _, err := reg.Nodes(context.Background())
		if err != nil || len(live) != 3 {
			return false
		}
		for _, n := range live {
			if n.ID != "tcs-dev-"+n.Region || n.Addr != s.ep.Regions[n.Region] {
				t.Fatalf("registered %+v, want tcs-dev-<region> at that region's gRPC address %s", n, s.ep.Regions[n.Region])
			}
		}
		return true
	})
}

// TestSeedAWS: an empty AWS catalog gets the sample tenants.
func TestSeedAWS(t *testing.T) {
	s, _ := startAWS(t)
	s.eventually(t, "acme.example.com", atVersion("acme", 1))
	testwait.Until(t, 5*time.Second, 10*time.Millisecond, "the banner to say the AWS backends", func() (bool, string) {
		out := s.stdout.String()
		return strings.Contains(out, "AWS backends"), "it says:\n" + out
	})
}
