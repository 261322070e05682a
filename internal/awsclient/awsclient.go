// Package awsclient bounds the time every AWS SDK call of the TCS binaries
// may take, so that a frozen or unreachable endpoint fails a call in
// seconds instead of hanging it: Apply gives an aws.Config an HTTP client
// with connect, TLS-handshake and response-header timeouts, and a per-
// operation deadline inside which the SDK's retryer works.
//
// Long polls keep working: an operation that waits on the server by design
// (SQS ReceiveMessage with WaitTimeSeconds) gets its wait added to both the
// response-header timeout and the operation deadline. Kinesis GetRecords
// does not long-poll (it answers at once, empty or not) and gets the
// ordinary limits.
//
// A call that runs out of time fails with an error whose text says "timed
// out" and what did (connecting, the TLS handshake, the response headers,
// or the whole operation); it matches errors.Is(err,
// context.DeadlineExceeded) and implements Timeout() bool, so callers can
// tell a timeout (whose outcome may be unknown) from a refusal.
package awsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
)

// Default timeouts. DynamoDB single-item calls take milliseconds and a
// transaction or a 1 MB page well under a second, so a call still without
// response headers after DefaultResponseHeader is stuck; the retryer gets
// about two attempts within DefaultOperation.
const (
	DefaultConnect        = 2 * time.Second
	DefaultTLSHandshake   = 2 * time.Second
	DefaultResponseHeader = 5 * time.Second
	DefaultOperation      = 10 * time.Second
)

// MaxLongPoll is the longest wait an SQS receive can have (the queue's
// ReceiveMessageWaitTimeSeconds applies when the call sets none).
const MaxLongPoll = 20 * time.Second

// Timeouts bound the SDK calls of one aws.Config. Zero fields mean the
// defaults; negative ones turn that bound off.
type Timeouts struct {
	// Connect bounds establishing a TCP connection (dial).
	Connect time.Duration
	// TLSHandshake bounds the TLS handshake of a new connection.
	TLSHandshake time.Duration
	// ResponseHeader bounds one HTTP attempt, from sending the request
	// (connecting included) to its response headers; the retryer may then
	// try again within Operation.
	ResponseHeader time.Duration
	// Operation bounds a whole SDK call: every attempt, the retryer's
	// backoff, and reading the response.
	Operation time.Duration
}

// Defaults returns the default timeouts.
func Defaults() Timeouts {
	return Timeouts{}.withDefaults()
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.Connect, DefaultConnect)
	def(&t.TLSHandshake, DefaultTLSHandshake)
	def(&t.ResponseHeader, DefaultResponseHeader)
	def(&t.Operation, DefaultOperation)
	return t
}

// Apply makes cfg's SDK clients use t: it replaces cfg.HTTPClient and adds
// the per-operation deadline to cfg.APIOptions (replacing one an earlier
// Apply added). Clients made from cfg afterwards (NewFromConfig) get both.
func (t Timeouts) Apply(cfg *aws.Config) {
	t = t.withDefaults()
	cfg.HTTPClient = t.HTTPClient()
	// A copy: cfg may share its options' array with other configs.
	cfg.APIOptions = append(append([]func(*middleware.Stack) error(nil), cfg.APIOptions...), t.deadlineMiddleware)
}

// WithDefaults returns cfg with the default timeouts applied, unless Apply
// already gave it timeouts.
func WithDefaults(cfg aws.Config) aws.Config {
	if _, ok := cfg.HTTPClient.(*HTTPClient); ok {
		return cfg
	}
	Defaults().Apply(&cfg)
	return cfg
}

// HTTPClient is the SDK's buildable HTTP client with connect and TLS
// handshake timeouts, and a response-header timeout that a long poll
// extends by its wait (the standard transport's ResponseHeaderTimeout is
// one value for every request, which would cut long polls).
type HTTPClient struct {
	next           *awshttp.BuildableClient
	responseHeader time.Duration
	connect        time.Duration
	tlsHandshake   time.Duration
}

// HTTPClient returns an HTTP client for aws.Config.HTTPClient.
func (t Timeouts) HTTPClient() *HTTPClient {
	t = t.withDefaults()
	c := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = max(t.Connect, 0) }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.TLSHandshakeTimeout = max(t.TLSHandshake, 0)
			tr.ResponseHeaderTimeout = 0 // Do applies it, per request
		})
	return &HTTPClient{next: c, responseHeader: t.ResponseHeader, connect: t.Connect, tlsHandshake: t.TLSHandshake}
}

type extraWaitKey struct{}

// Do sends req, failing it with a *TimeoutError when the response headers
// do not arrive within the response-header timeout (plus the wait of a long
// poll), or when connecting or the TLS handshake time out.
func (c *HTTPClient) Do(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	var connected, handshaking atomic.Bool
	ctx := httptrace.WithClientTrace(parent, &httptrace.ClientTrace{
		GotConn:           func(httptrace.GotConnInfo) { connected.Store(true) },
		TLSHandshakeStart: func() { handshaking.Store(true) },
	})
	limit := c.responseHeader
	if wait, ok := parent.Value(extraWaitKey{}).(time.Duration); ok && limit > 0 {
		limit += wait
	}
	ctx, cancel := context.WithCancel(ctx)
	var timer *time.Timer
	if limit > 0 {
		timer = time.AfterFunc(limit, cancel)
	}
	resp, err := c.next.Do(req.WithContext(ctx))
	// The limit is on the headers only: once they are in, the body may
	// take as long as the operation deadline allows. A timer that could not
	// be stopped has fired (or is firing), cancelling the request.
	fired := timer != nil && !timer.Stop()
	if err == nil && fired {
		resp.Body.Close()
		err = context.Canceled
	}
	if err != nil {
		cancel()
		if parent.Err() != nil {
			return nil, err
		}
		host := req.URL.Host
		switch {
		case fired:
			return nil, &TimeoutError{What: "response headers from " + host, Limit: limit}
		case isTimeout(err) && !connected.Load() && handshaking.Load():
			return nil, &TimeoutError{What: "TLS handshake with " + host, Limit: c.tlsHandshake, Err: err}
		case isTimeout(err) && !connected.Load():
			return nil, &TimeoutError{What: "connecting to " + host, Limit: c.connect, Err: err}
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// cancelOnClose releases the request's context with the body.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// deadlineMiddleware puts the per-operation deadline around the whole
// operation, retries included.
func (t Timeouts) deadlineMiddleware(stack *middleware.Stack) error {
	mw := middleware.InitializeMiddlewareFunc(deadlineID,
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			limit := t.Operation
			if wait := longPollWait(in.Parameters); wait > 0 {
				ctx = context.WithValue(ctx, extraWaitKey{}, wait)
				if limit > 0 {
					limit += wait
				}
			}
			if limit <= 0 {
				return next.HandleInitialize(ctx, in)
			}
			octx, cancel := context.WithTimeout(ctx, limit)
			defer cancel()
			out, md, err := next.HandleInitialize(octx, in)
			if err != nil && ctx.Err() == nil && errors.Is(octx.Err(), context.DeadlineExceeded) {
				err = &TimeoutError{What: "the call (all attempts)", Limit: limit, Err: err}
			}
			return out, md, err
		})
	if _, ok := stack.Initialize.Get(deadlineID); ok {
		_, err := stack.Initialize.Swap(deadlineID, mw)
		return err
	}
	return stack.Initialize.Add(mw, middleware.Before)
}

// deadlineID names the per-operation deadline in the middleware stack.
const deadlineID = "TCSOperationDeadline"

// longPollWait is how long an operation waits on the server by design.
func longPollWait(params any) time.Duration {
	if in, ok := params.(*awssqs.ReceiveMessageInput); ok {
		if in.WaitTimeSeconds > 0 {
			return time.Duration(in.WaitTimeSeconds) * time.Second
		}
		// The queue's ReceiveMessageWaitTimeSeconds applies; assume the
		// longest.
		return MaxLongPoll
	}
	return 0
}

// TimeoutError is an AWS call, or one attempt of it, that ran out of time.
type TimeoutError struct {
	// What timed out: "the call (all attempts)", "connecting to host:port",
	// "TLS handshake with host:port", "response headers from host:port".
	What  string
	Limit time.Duration
	// Err is what the SDK or the transport reported, if anything.
	Err error
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("timed out: %s took longer than %v", e.What, e.Limit)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Timeout reports true: the error is a timeout.
func (e *TimeoutError) Timeout() bool { return true }

// Is matches context.DeadlineExceeded.
func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Unwrap returns the underlying error.
func (e *TimeoutError) Unwrap() error { return e.Err }

// NewDynamoDB returns a DynamoDB client of cfg, with the default timeouts
// unless cfg has its own (WithDefaults). With an endpoint override (an
// emulator) it skips the response checksum check: DynamoDB Local's error
// responses carry a CRC32 that does not match, and the SDK would log a
// warning for each.
func NewDynamoDB(cfg aws.Config) *dynamodb.Client {
	return dynamodb.NewFromConfig(WithDefaults(cfg), func(o *dynamodb.Options) {
		if o.BaseEndpoint != nil {
			o.DisableValidateResponseChecksum = true
		}
	})
}
