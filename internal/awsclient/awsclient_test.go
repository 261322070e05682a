package awsclient_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/awsclient"
	"github.com/tcs-dev/tcs/internal/testnet"
	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestMain(m *testing.M) {
	testwait.WaitBoundParallel(8) // the frozen-endpoint tests wait out timeouts
	os.Exit(emulators.Main(m))
}

// testTimeouts are short, so that the frozen-endpoint tests take about a
// second each.
var testTimeouts = awsclient.Timeouts{
	Connect:        200 * time.Millisecond,
	TLSHandshake:   200 * time.Millisecond,
	ResponseHeader: 300 * time.Millisecond,
	Operation:      time.Second,
}

func config(endpoint string, t awsclient.Timeouts) aws.Config {
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	t.Apply(&cfg)
	return cfg
}

// unacceptingListener listens with a full accept queue and never accepts,
// so that new connections never complete (the kernel drops their SYNs).
func unacceptingListener(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue (backlog 0 holds one connection; take a few
	// to be sure), then check that a further connection does not complete.
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		tb.Cleanup(func() { c.Close() })
	}
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		tb.Skip("this kernel completes connections to a listener with a full accept queue; cannot test a connect that never completes")
	}
	return addr
}

var getItem = &dynamodb.GetItemInput{TableName: aws.String("t"), Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}}}

// calls makes one typical call of each SDK client TCS uses.
var calls = map[string]func(ctx context.Context, cfg aws.Config) error{
	"dynamodb GetItem": func(ctx context.Context, cfg aws.Config) error {
		_, err := dynamodb.NewFromConfig(cfg).GetItem(ctx, getItem)
		return err
	},
	"kinesis GetRecords": func(ctx context.Context, cfg aws.Config) error {
		_, err := kinesis.NewFromConfig(cfg).GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String("i")})
		return err
	},
	"sns Publish": func(ctx context.Context, cfg aws.Config) error {
		_, err := awssns.NewFromConfig(cfg).Publish(ctx, &awssns.PublishInput{TopicArn: aws.String("arn:aws:sns:us-east-1:000000000000:t"), Message: aws.String("m")})
		return err
	},
	"sqs DeleteMessage": func(ctx context.Context, cfg aws.Config) error {
		_, err := awssqs.NewFromConfig(cfg).DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String("http://q"), ReceiptHandle: aws.String("r")})
		return err
	},
}

// TestFrozenEndpointFailsFast runs a call of every SDK client against
// endpoints that never answer: one that accepts and stays silent (plain
// HTTP and TLS), and one that never accepts. Each must fail within the
// operation deadline (checked against a generous 5× bound) with an error
// that says it timed out.
func TestFrozenEndpointFailsFast(t *testing.T) {
	t.Parallel()
	endpoints := map[string]func(testing.TB) string{
		"silent":      func(tb testing.TB) string { return "http://" + testnet.SilentListener(tb) },
		"silent tls":  func(tb testing.TB) string { return "https://" + testnet.SilentListener(tb) },
		"unaccepting": func(tb testing.TB) string { return "http://" + unacceptingListener(tb) },
	}
	wantPhase := map[string]string{"silent": "response headers", "silent tls": "TLS handshake", "unaccepting": "connecting"}
	for kind, endpoint := range endpoints {
		for name, call := range calls {
			t.Run(kind+"/"+name, func(t *testing.T) {
				t.Parallel()
				cfg := config(endpoint(t), testTimeouts)
				start := time.Now()
				err := call(context.Background(), cfg)
				elapsed := time.Since(start)
				if err == nil {
					t.Fatal("call succeeded against a frozen endpoint")
				}
				if !strings.Contains(err.Error(), "timed out") {
					t.Errorf("error %q does not say it timed out", err)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %q does not match context.DeadlineExceeded", err)
				}
				if errors.Is(err, context.Canceled) {
					t.Errorf("error %q matches context.Canceled: callers would take it for their own cancellation", err)
				}
				if !strings.Contains(err.Error(), wantPhase[kind]) {
					t.Logf("error %q does not name %q (the last attempt may have been cut by the operation deadline)", err, wantPhase[kind])
				}
				if limit := 5 * testTimeouts.Operation; elapsed > limit {
					t.Errorf("call took %v, want well within the %v operation deadline (bound %v)", elapsed, testTimeouts.Operation, limit)
				}
			})
		}
	}
}

// TestAttemptTimeoutNamesPhase checks, with one attempt and no operation
// deadline, that each per-attempt timeout names what timed out.
func TestAttemptTimeoutNamesPhase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, endpoint, want string
	}{
		{"response headers", "http://" + testnet.SilentListener(t), "timed out: response headers from"},
		{"tls", "https://" + testnet.SilentListener(t), "timed out: TLS handshake with"},
		{"connect", "http://" + unacceptingListener(t), "timed out: connecting to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			to := testTimeouts
			to.Operation = -1
			cfg := config(tc.endpoint, to)
			cfg.RetryMaxAttempts = 1
			_, err := dynamodb.NewFromConfig(cfg).GetItem(context.Background(), getItem)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("GetItem error = %v, want one containing %q", err, tc.want)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %q does not match context.DeadlineExceeded", err)
			}
		})
	}
}

// TestCallerCancelStaysCanceled checks that a caller's own cancellation is
// reported as such, not as a timeout.
func TestCallerCancelStaysCanceled(t *testing.T) {
	t.Parallel()
	cfg := config("http://"+testnet.SilentListener(t), testTimeouts)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := dynamodb.NewFromConfig(cfg).GetItem(ctx, getItem)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("GetItem error = %v, want context.Canceled", err)
	}
	if strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %q says timed out; the caller canceled", err)
	}
}

// TestLongPollOutlastsTimeouts receives from an empty SQS queue of the
// emulator with a 2 s wait, longer than both the response-header timeout
// and the operation deadline: the long poll must complete (empty, no
// error), while the same long poll against a frozen endpoint still fails
// within its wait plus the operation deadline.
func TestLongPollOutlastsTimeouts(t *testing.T) {
	t.Parallel()
	sqs := awssqs.NewFromConfig(config(emulators.SharedSNSSQS(t), testTimeouts))
	ctx := context.Background()
	q, err := sqs.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(emulators.Name("awsclient-long-poll"))})
	if err != nil {
		t.Fatal(err)
	}
	const wait = 2 * time.Second
	receive := func(c *awssqs.Client) (*awssqs.ReceiveMessageOutput, time.Duration, error) {
		start := time.Now()
		out, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: int32(wait / time.Second)})
		return out, time.Since(start), err
	}
	out, took, err := receive(sqs)
	if err != nil {
		t.Fatalf("long poll of %v failed (cut by a timeout?): %v", wait, err)
	}
	if len(out.Messages) != 0 {
		t.Fatalf("received %d messages from an empty queue", len(out.Messages))
	}
	if took < wait/2 {
		t.Fatalf("long poll returned after %v: the emulator did not wait, so this test proves nothing", took)
	}

	frozen := awssqs.NewFromConfig(config("http://"+testnet.SilentListener(t), testTimeouts))
	_, took, err = receive(frozen)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("long poll against a frozen endpoint: err = %v, want a timeout", err)
	}
	if limit := 5 * (wait + testTimeouts.Operation); took > limit {
		t.Errorf("long poll against a frozen endpoint took %v, want within its wait + the operation deadline (bound %v)", took, limit)
	}
}

// TestWorkingEndpoint checks that calls through the default timeouts work
// against the emulators.
func TestWorkingEndpoint(t *testing.T) {
	t.Parallel()
	emu := emulators.SharedAWS(t)
	ctx := context.Background()
	if _, err := dynamodb.NewFromConfig(config(emu.DynamoDB, awsclient.Timeouts{})).ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Errorf("DynamoDB ListTables: %v", err)
	}
	if _, err := kinesis.NewFromConfig(config(emu.Kinesis, awsclient.Timeouts{})).ListStreams(ctx, &kinesis.ListStreamsInput{}); err != nil {
		t.Errorf("Kinesis ListStreams: %v", err)
	}
	if _, err := awssns.NewFromConfig(config(emu.SNSSQS, awsclient.Timeouts{})).ListTopics(ctx, &awssns.ListTopicsInput{}); err != nil {
		t.Errorf("SNS ListTopics: %v", err)
	}
	if _, err := awssqs.NewFromConfig(config(emu.SNSSQS, awsclient.Timeouts{})).ListQueues(ctx, &awssqs.ListQueuesInput{}); err != nil {
		t.Errorf("SQS ListQueues: %v", err)
	}
}

// TestApplyTwice: a config given timeouts twice works, with the later ones.
func TestApplyTwice(t *testing.T) {
	t.Parallel()
	cfg := config("http://"+testnet.SilentListener(t), awsclient.Timeouts{Operation: time.Hour, ResponseHeader: time.Hour})
	testTimeouts.Apply(&cfg)
	start := time.Now()
	_, err := dynamodb.NewFromConfig(cfg).GetItem(context.Background(), getItem)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("GetItem: %v, want a timeout", err)
	}
	if took := time.Since(start); took > 5*testTimeouts.Operation {
		t.Errorf("GetItem took %v: the second Apply's %v deadline did not replace the first's", took, testTimeouts.Operation)
	}
}

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	cfg := awsclient.WithDefaults(aws.Config{})
	if _, ok := cfg.HTTPClient.(*awsclient.HTTPClient); !ok {
		t.Fatalf("WithDefaults left HTTPClient %T", cfg.HTTPClient)
	}
	n := len(cfg.APIOptions)
	if again := awsclient.WithDefaults(cfg); len(again.APIOptions) != n {
		t.Errorf("WithDefaults twice added the deadline twice (%d → %d API options)", n, len(again.APIOptions))
	}
	custom := aws.Config{}
	testTimeouts.Apply(&custom)
	if got := awsclient.WithDefaults(custom); got.HTTPClient != custom.HTTPClient {
		t.Error("WithDefaults replaced timeouts set by Apply")
	}
}

// TestSlowBodyAfterHeaders: the response-header timeout is on the headers
// only; a body that takes longer than it (within the operation deadline)
// is read whole.
func TestSlowBodyAfterHeaders(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the request, and answer a little later, as AWS does: an
		// answer at once races the client's check that the request body
		// ended, after which the SDK closes that body and Go's transport
		// fails the connection ("use of closed network connection"; the SDK
		// retries it, but this test makes one attempt).
		io.Copy(io.Discard, r.Body)
		time.Sleep(50 * time.Millisecond)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-time.After(3 * testTimeouts.ResponseHeader):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"TableNames":["slow"]}`)
	}))
	t.Cleanup(srv.Close)
	to := testTimeouts
	to.Operation = 10 * time.Second // not what this test is about
	cfg := config(srv.URL, to)
	cfg.RetryMaxAttempts = 1
	out, err := dynamodb.NewFromConfig(cfg).ListTables(context.Background(), &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables with a body slower than the header timeout: %v", err)
	}
	if len(out.TableNames) != 1 || out.TableNames[0] != "slow" {
		t.Errorf("TableNames = %v, want [slow]", out.TableNames)
	}
}
