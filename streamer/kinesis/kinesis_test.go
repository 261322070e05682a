package kinesis_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
	"github.com/tcs-dev/tcs/streamer/streamtest"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// clients are a Kinesis client of the test binary's kinesalite and a
// DynamoDB client of its DynamoDB Local. transport, when non-nil, carries
// their requests (fault injection); then the SDK does not retry, so that
// every fault reaches the code under test.
type clients struct {
	kin *awskinesis.Client
	db  *dynamodb.Client
}

func newClients(tb testing.TB, transport http.RoundTripper) clients {
	tb.Helper()
	kinEndpoint := emulators.SharedKinesis(tb)
	dbEndpoint := emulators.SharedDynamoDB(tb)
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	var httpClient *http.Client
	var retryer aws.Retryer
	if transport != nil {
		httpClient = &http.Client{Transport: transport}
		retryer = aws.NopRetryer{}
	}
	return clients{
		kin: awskinesis.New(awskinesis.Options{
			BaseEndpoint: aws.String(kinEndpoint), Region: "us-east-1", Credentials: creds,
			HTTPClient: httpClientOrNil(httpClient), Retryer: retryer,
		}),
		db: dynamodb.New(dynamodb.Options{
			BaseEndpoint: aws.String(dbEndpoint), Region: "us-east-1", Credentials: creds,
			// DynamoDB Local's error responses carry no CRC32 the SDK accepts.
			DisableValidateResponseChecksum: true,
			HTTPClient:                      httpClientOrNil(httpClient), Retryer: retryer,
		}),
	}
}

// httpClientOrNil keeps a nil *http.Client a nil interface, so that the SDK
// uses its default client.
func httpClientOrNil(c *http.Client) interface {
	Do(*http.Request) (*http.Response, error)
} {
	if c == nil {
		return nil
	}
	return c
}

// resources creates a stream of n shards and a lease table, deleted when tb
// ends, and returns their names.
func resources(tb testing.TB, c clients, shards int) (stream, table string) {
	tb.Helper()
	stream, table = emulators.Name("stream"), emulators.Name("leases")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kinesis.CreateStream(ctx, c.kin, stream, shards); err != nil {
		tb.Fatalf("CreateStream: %v", err)
	}
	if err := kinesis.CreateLeaseTable(ctx, c.db, table); err != nil {
		tb.Fatalf("CreateLeaseTable: %v", err)
	}
	tb.Cleanup(func() {
		ctx := context.Background()
		c.kin.DeleteStream(ctx, &awskinesis.DeleteStreamInput{StreamName: aws.String(stream)})
		c.db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	return stream, table
}

// open opens a Stream on cfg (its clients, stream and table default to
// fresh ones of n shards) and closes it when tb ends.
func open(tb testing.TB, cfg kinesis.Config) *kinesis.Stream {
	tb.Helper()
	s, err := kinesis.Open(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func newStream(tb testing.TB, shards int) (clients, kinesis.Config) {
	tb.Helper()
	c := newClients(tb, nil)
	stream, table := resources(tb, c, shards)
	return c, kinesis.Config{Kinesis: c.kin, DynamoDB: c.db, Stream: stream, LeaseTable: table}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	streamtest.Run(t, func(t *testing.T) streamer.Stream {
		_, cfg := newStream(t, 2)
		return open(t, cfg)
	})
}

// TestConformanceSmallBatches resumes and redelivers mid-shard: several
// batches per shard, three shards.
func TestConformanceSmallBatches(t *testing.T) {
	t.Parallel()
	streamtest.Run(t, func(t *testing.T) streamer.Stream {
		_, cfg := newStream(t, 3)
		cfg.MaxRecords = 7
		return open(t, cfg)
	})
}

func TestOpenMissing(t *testing.T) {
	t.Parallel()
	c, cfg := newStream(t, 1)
	tests := []struct {
		name       string
		stream     string
		table      string
		wantInText []string
	}{
		{"stream", "no-such-stream", cfg.LeaseTable, []string{`kinesis stream "no-such-stream" does not exist`, "tcsctl infra apply"}},
		{"lease table", cfg.Stream, "no-such-table", []string{`lease table "no-such-table" does not exist`, "tcsctl infra apply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := kinesis.Open(t.Context(), kinesis.Config{Kinesis: c.kin, DynamoDB: c.db, Stream: tt.stream, LeaseTable: tt.table})
			if err == nil {
				t.Fatalf("Open succeeded; want an error naming the missing %s", tt.name)
			}
			for _, want := range tt.wantInText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open: %v; want it to say %q", err, want)
				}
			}
		})
	}
}
