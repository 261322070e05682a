package sns_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/testnet"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
)

// flakyHTTP answers the next fail requests with a 503 from SNS, without
// sending them, and passes the others on.
type flakyHTTP struct {
	fail     atomic.Int64
	requests atomic.Int64
}

func (h *flakyHTTP) Do(req *http.Request) (*http.Response, error) {
	h.requests.Add(1)
	if h.fail.Add(-1) < 0 {
		return http.DefaultClient.Do(req)
	}
	body := `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>injected</Message></Error><RequestId>injected</RequestId></ErrorResponse>`
	return &http.Response{
		Status:     "503 Service Unavailable",
		StatusCode: http.StatusServiceUnavailable,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": []string{"text/xml"}},
		Body:    io.NopCloser(strings.NewReader(body)),
		Request: req,
	}, nil
}

func TestBroadcastRetriesServerErrorsAndReturnsWhatPersists(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	nd := subscribe(t, openFeed(t, config(t, prefix, region, topic, "node")))

	flaky := &flakyHTTP{}
	client := awssns.New(awssns.Options{
		BaseEndpoint: aws.String(emulators.SharedSNSSQS(t)),
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:   flaky,
		// The standard retryer (3 attempts), with short waits for the test.
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 10 * time.Millisecond }),
	})
	cfg := config(t, prefix, region, topic, "applier")
	cfg.SNS = client
	b := openBroadcaster(t, cfg)

	// Two failures: the third attempt gets through.
	flaky.fail.Store(2)
	before := flaky.requests.Load()
	if err := b.Broadcast(testwait.Context(t), inv(1)); err != nil {
		t.Fatalf("Broadcast through two 503s: %v", err)
	}
	if n := flaky.requests.Load() - before; n != 3 {
		t.Errorf("Broadcast made %d requests, want 3", n)
	}
	nd.waitVersion(t, 1)

	// Failures that outlast the retries are returned, and counted.
	flaky.fail.Store(3)
	err := b.Broadcast(testwait.Context(t), inv(2))
	if err == nil || !strings.Contains(err.Error(), "ServiceUnavailable") || !strings.Contains(err.Error(), "acme@2") {
		t.Fatalf("Broadcast through three 503s: %v; want the error, naming the invalidation", err)
	}
	if v := counterValue(t, cfg.Registerer, "tcs_sns_publish_errors_total"); v != 1 {
		t.Errorf("tcs_sns_publish_errors_total = %v, want 1", v)
	}
	if v := counterValue(t, cfg.Registerer, "tcs_sns_published_total"); v != 1 {
		t.Errorf("tcs_sns_published_total = %v, want 1", v)
	}
}

// freezableHTTP passes requests on, or, while frozen, sends them to a
// listener that never answers.
type freezableHTTP struct {
	frozen atomic.Bool
	hole   string
}

func (h *freezableHTTP) Do(req *http.Request) (*http.Response, error) {
	if h.frozen.Load() {
		req = req.Clone(req.Context())
		req.URL.Host = h.hole
	}
	return http.DefaultClient.Do(req)
}

// TestBroadcastReturnsByItsDeadlineWhenFrozen: against an endpoint that
// accepts connections and never answers, Broadcast (an invalidation or a
// heartbeat) returns its context's deadline error instead of hanging; thawed,
// it publishes again.
func TestBroadcastReturnsByItsDeadlineWhenFrozen(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	nd := subscribe(t, openFeed(t, config(t, prefix, region, topic, "node")))
	h := &freezableHTTP{hole: testnet.SilentListener(t)}
	cfg := config(t, prefix, region, topic, "applier")
	cfg.SNS = awssns.New(awssns.Options{
		BaseEndpoint: aws.String(emulators.SharedSNSSQS(t)),
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:   h,
	})
	b := openBroadcaster(t, cfg)

	h.frozen.Store(true)
	for _, x := range []tcs.Invalidation{inv(1), {CommittedAt: time.Now()}} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- b.Broadcast(ctx, x) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Broadcast(%+v) against a frozen endpoint = %v, want its deadline exceeded", x, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("Broadcast(%+v) against a frozen endpoint still running 30 s after its 200 ms deadline", x)
		}
		cancel()
	}

	h.frozen.Store(false)
	if err := b.Broadcast(testwait.Context(t), inv(2)); err != nil {
		t.Fatalf("Broadcast after the endpoint thawed: %v", err)
	}
	nd.waitVersion(t, 2)
}
