package backend_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/infra/provision"
	"github.com/tcs-dev/tcs/internal/testnet"
)

// TestClientsHaveTimeouts checks that every SDK client the binaries build
// (Clients, the stream's Kinesis client and the provisioning clients, all
// from AWSConfig) fails within --aws-timeout
// against a frozen endpoint, with an error that says it timed out.
func TestClientsHaveTimeouts(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	env := map[string]string{"AWS_REGION": "us-east-1", "TCS_AWS_HEADER_TIMEOUT": "300ms"}
	c := backend.Register(fs, func(k string) string { return env[k] })
	if err := fs.Parse([]string{"--backend", "aws", "--aws-timeout", "1s", "--aws-connect-timeout", "200ms"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + testnet.SilentListener(t)
	c.LoadAWS = func(_ context.Context, region string) (aws.Config, error) {
		return aws.Config{Region: region, BaseEndpoint: aws.String(endpoint), Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}, nil
	}
	ctx := context.Background()
	cl, err := c.Clients(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	home, err := c.AWSConfig(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	stream := kinesis.NewFromConfig(home) // as package streams makes it
	prov := provision.NewClients(func(region string) aws.Config {
		cfg, err := c.AWSConfig(ctx, region)
		if err != nil {
			t.Error(err)
		}
		return cfg
	})
	key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}}
	for name, call := range map[string]func() error{
		"dynamodb": func() error {
			_, err := cl.DynamoDB.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"), Key: key})
			return err
		},
		"kinesis": func() error {
			_, err := stream.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String("i")})
			return err
		},
		"sns": func() error {
			_, err := cl.SNS.ListTopics(ctx, &awssns.ListTopicsInput{})
			return err
		},
		"sqs": func() error {
			_, err := cl.SQS.ListQueues(ctx, &awssqs.ListQueuesInput{})
			return err
		},
		"provision dynamodb": func() error {
			_, err := prov.DynamoDB("eu-west-1").DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("t")})
			return err
		},
		"provision kinesis": func() error {
			_, err := prov.Kinesis("eu-west-1").ListStreams(ctx, &kinesis.ListStreamsInput{})
			return err
		},
		"provision sns": func() error {
			_, err := prov.SNS("eu-west-1").ListTopics(ctx, &awssns.ListTopicsInput{})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			err := call()
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "timed out") || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call to a frozen endpoint: err = %v, want a timeout", err)
			}
			if took > 5*time.Second {
				t.Errorf("call took %v, want about --aws-timeout 1s (bound 5s)", took)
			}
		})
	}
}
