// Package kinesis is the distributed streamer.Stream: a Kinesis Data Stream
// whose partition key is the tenant id, consumed by polling
// (GetShardIterator/GetRecords), with consumer-group leases and checkpoints
// in a DynamoDB table.
//
// # Appending
//
// PutRecords does not keep the order of a partition key's records when some
// of a call's records fail: the failed one, retried, lands after a later one
// that succeeded. Append therefore sends at most one record per partition key
// in each PutRecords call (500 records and 5 MiB at most), and sends a key's
// next record only once the previous one is stored; failed records
// (throttling, internal errors) are retried with jittered backoff, never
// dropped. A record over 1 MiB (key and data) is rejected before anything is
// sent.
//
// # Consuming
//
// Every worker (a Consume call; Config.Owner names it) of a consumer group
// runs one loop per shard it holds a lease for. Workers of a group share the
// shards through the lease table, by the rules of internal/lease (shared
// with the outbox publishers, streamer/publease): its Observer judges
// expiry, its Balance plans adoptions, takes and steal requests.
//
//   - A lease is free when its owner is "", expired when its counter has not
//     changed for Config.LeaseDuration as seen by the observing worker's own
//     clock (so clock skew between workers does not matter).
//   - Every change of a lease is a conditional write: a take is conditioned
//     on the counter the taker read, so two workers never both take a lease;
//     renewals, checkpoints, releases and handovers are conditioned on the
//     owner and the lease token (a random value set by each take), so a
//     worker that lost a lease can change nothing in it.
//   - A worker scans the lease table every LeaseDuration/8, at most every
//     second, and sooner when another worker's lease is due to expire, so
//     that a dead worker's leases are taken over about LeaseDuration (plus
//     at most a scan interval) after its last write. An owner renews its
//     leases at every scan at least LeaseDuration/5 after the last renewal,
//     and stops delivering a shard (fencing itself) once LeaseDuration has
//     passed since it sent the last renewal that succeeded: by then another
//     worker may take it. A handler call still running then has its context
//     cancelled, and its batch is not checkpointed (the next owner delivers
//     it again). A fenced owner that still holds the lease (nobody
//     took it) takes its shard up again at its next scan.
//   - Each worker aims for a fair share, ceil(eligible leases / live
//     workers; a worker asking for a lease is live). One with fewer takes
//     free and expired leases, then asks the most loaded worker for one of
//     its leases (a steal request, one at a time, only of a worker over its
//     share, or at it while the asker is two short); the owner
//     sees the request when it next renews, finishes and checkpoints the
//     batch in hand, and hands the lease over. So live workers never deliver
//     one shard at the same time; only a worker that died (and whose lease
//     expired) leaves a batch that was delivered but not checkpointed, which
//     the next owner delivers again.
//   - A shard created by a split or merge is consumed only once each of its
//     parents is checkpointed at SHARD_END (or no longer listed: trimmed),
//     so a partition key's records stay in order across resharding. The
//     lease of a finished shard is deleted once the stream stops listing
//     the shard (after the retention period).
//   - A clean stop checkpoints what the handler accepted and releases the
//     worker's leases, so another worker takes them at once.
//
// # Failures
//
// The stream retries every failed call itself until it succeeds, fails
// permanently (say, the stream was deleted) or the caller's context ends:
// throttling, 5xx answers, lost connections, and timeouts, including the
// SDK's per-attempt and per-operation deadlines (internal/awsclient), whose
// errors match context.DeadlineExceeded but do not mean that the caller is
// stopping. A timed-out PutRecords may have stored its records; sending them
// again stores them twice, which consumers tolerate (delivery is at least
// once). Each call is a single SDK attempt, and the stream backs off itself
// from 20–100 ms up to one second, jittered by ±50% (the SDK's retryer waits
// up to 20 s between attempts, which would delay recovery after an outage
// by as much). So a shard's consumer and Append resume within 1.5 s of an
// endpoint coming back, and at once after a freeze (the calls sent during
// it are answered when it ends).
//
// # Lease table
//
// One item per (consumer group, shard); both keys are strings:
//
//	group (hash)   shard (range)   attributes
//	<group name>   <shard id>      owner      (S)  worker holding the lease; "" when free
//	                               token      (S)  random, set by each take; guards the owner's writes
//	                               counter    (N)  incremented by every take, renewal, checkpoint, release
//	                               checkpoint (S)  sequence number of the last record processed,
//	                                               "SHARD_END" once the shard is closed and read to its end,
//	                                               "" if nothing was processed yet (start at TRIM_HORIZON)
//	                               parents    (SS) the shard's parent shard ids (absent for original shards)
//	                               pending    (S)  a worker asking the owner to hand the lease over
//	                               renewed_at (S)  RFC 3339 time of the owner's last write (for people, not for expiry)
//
// The table has on-demand capacity (LeaseTableInput); tcsctl infra apply
// creates it and the stream in production, CreateStream and CreateLeaseTable
// in tests.
package kinesis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/streamer"
)

var _ streamer.Stream = (*Stream)(nil)

// KinesisAPI is the part of the Kinesis client the stream uses;
// *kinesis.Client implements it.
type KinesisAPI interface {
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// LeaseAPI is the part of the DynamoDB client the lease table needs;
// *dynamodb.Client implements it.
type LeaseAPI interface {
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Defaults for the zero fields of Config.
const (
	DefaultPollInterval  = 100 * time.Millisecond
	DefaultMaxRecords    = 1000
	DefaultLeaseDuration = 10 * time.Second
)

// Kinesis's limits.
const (
	maxRecordsPerCall    = 500
	maxBytesPerCall      = 5 << 20
	maxRecordBytes       = 1 << 20 // partition key + data
	maxPartitionKeyChars = 256
	maxGetRecords        = 10000
)

// stopTimeout bounds the writes a stopping Consume still makes: the final
// checkpoints and the release of its leases.
const stopTimeout = 10 * time.Second

// createCommand is what an operator runs to create a missing stream or table.
const createCommand = "tcsctl infra apply"

// ErrClosed is returned by operations on a closed Stream, and by a Consume
// that was running when the Stream was closed.
var ErrClosed = errors.New("kinesis: stream closed")

// Config configures Open.
type Config struct {
	// Kinesis talks to Kinesis. Required.
	Kinesis KinesisAPI
	// DynamoDB holds the lease table. Required to Consume; a Stream opened
	// without it and LeaseTable only appends (streamer publish).
	DynamoDB LeaseAPI
	// Stream is the Kinesis stream's name. Required.
	Stream string
	// LeaseTable is the DynamoDB lease and checkpoint table; see DynamoDB.
	LeaseTable string
	// Owner names this worker in the lease table; it must differ between
	// the processes consuming one group. Empty means hostname, process id
	// and a random suffix.
	Owner string
	// PollInterval is the wait between GetRecords calls of a shard that
	// returned no backlog; zero means DefaultPollInterval. (Kinesis allows 5
	// GetRecords per second per shard, shared by every consumer group;
	// throttled calls are retried with backoff.)
	PollInterval time.Duration
	// MaxRecords is the most records one GetRecords returns, so the largest
	// batch handed to a Handler; zero means DefaultMaxRecords, at most 10000.
	MaxRecords int
	// LeaseDuration is how long a lease lives without renewal before
	// another worker may take it; zero means DefaultLeaseDuration. Workers
	// scan the lease table every eighth of it (at most every second), and
	// owners renew about every fifth of it.
	LeaseDuration time.Duration
	// DisablePacking makes Append store every record as a Kinesis record of
	// its own, readable by consumers older than packing (0.2.0). By
	// default a partition key's consecutive records are packed into one
	// Kinesis record (see Append), which Consume unpacks; a consumer older
	// than packing would skip packed records as undecodable, so upgrade
	// every consumer before the appenders, or set this meanwhile.
	DisablePacking bool
	// Logger receives lease changes and retried failures; nil discards.
	Logger *slog.Logger
	// Registerer receives the stream's metrics; nil registers nothing.
	// Streams on the same Kinesis stream may share a Registerer (they
	// share the collectors).
	Registerer prometheus.Registerer
	// Now is the clock of lease expiry; nil means time.Now.
	Now func() time.Time
}

// Stream is a streamer.Stream on a Kinesis stream. It is safe for concurrent
// use. The caller owns the clients.
type Stream struct {
	kin        KinesisAPI
	db         LeaseAPI
	stream     *string
	table      *string
	owner      string
	poll       time.Duration
	maxRecords int32
	lease      time.Duration
	// disablePacking is Config.DisablePacking.
	disablePacking bool
	log            *slog.Logger
	now            func() time.Time
	m              *metrics

	mu        sync.Mutex
	consuming map[string]bool
	closed    bool
	closing   context.Context
	stop      context.CancelFunc
	consumers sync.WaitGroup
}

// Open checks that the stream and the lease table exist and returns a Stream
// on them. A missing one is an error naming it and the command that creates
// it.
func Open(ctx context.Context, cfg Config) (*Stream, error) {
	switch {
	case cfg.Kinesis == nil:
		return nil, errors.New("kinesis open: no Kinesis client")
	case (cfg.DynamoDB == nil) != (cfg.LeaseTable == ""):
		return nil, errors.New("kinesis open: DynamoDB client and lease table name go together (both empty: a stream that is only appended to)")
	case cfg.Stream == "":
		return nil, errors.New("kinesis open: no stream name")
	case cfg.MaxRecords < 0 || cfg.MaxRecords > maxGetRecords:
		return nil, fmt.Errorf("kinesis open: MaxRecords is %d, want 0 to %d", cfg.MaxRecords, maxGetRecords)
	case cfg.PollInterval < 0 || cfg.LeaseDuration < 0:
		return nil, errors.New("kinesis open: negative PollInterval or LeaseDuration")
	}
	s := &Stream{
		kin:            cfg.Kinesis,
		db:             cfg.DynamoDB,
		stream:         aws.String(cfg.Stream),
		table:          optString(cfg.LeaseTable),
		owner:          cfg.Owner,
		poll:           cmpOr(cfg.PollInterval, DefaultPollInterval),
		maxRecords:     int32(cmpOr(cfg.MaxRecords, DefaultMaxRecords)),
		disablePacking: cfg.DisablePacking,
		lease:          cmpOr(cfg.LeaseDuration, DefaultLeaseDuration),
		log:            cfg.Logger,
		now:            cfg.Now,
		consuming:      map[string]bool{},
	}
	if s.owner == "" {
		s.owner = defaultOwner()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("stream", cfg.Stream, "owner", s.owner)
	if s.now == nil {
		s.now = time.Now
	}
	m, err := newMetrics(cfg.Registerer, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("kinesis open: %w", err)
	}
	s.m = m
	if err := s.Ping(ctx); err != nil {
		return nil, fmt.Errorf("kinesis open: %w", err)
	}
	s.closing, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Ping checks that the stream is ACTIVE (or UPDATING: resharding) and the
// lease table ACTIVE.
func (s *Stream) Ping(ctx context.Context) error {
	out, err := s.kin.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: s.stream})
	var noStream *ktypes.ResourceNotFoundException
	switch {
	case errors.As(err, &noStream):
		return fmt.Errorf("kinesis stream %q does not exist: create it with %q (or kinesis.CreateStream)", *s.stream, createCommand)
	case err != nil:
		return wrap(ctx, err, "describe kinesis stream "+*s.stream)
	}
	if d := out.StreamDescriptionSummary; d == nil || (d.StreamStatus != ktypes.StreamStatusActive && d.StreamStatus != ktypes.StreamStatusUpdating) {
		status := ktypes.StreamStatus("unknown")
		if d != nil {
			status = d.StreamStatus
		}
		return fmt.Errorf("kinesis stream %q is %s, not ACTIVE", *s.stream, status)
	}
	if s.table == nil {
		return nil // append only
	}
	tbl, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: s.table})
	var noTable *dtypes.ResourceNotFoundException
	switch {
	case errors.As(err, &noTable):
		return fmt.Errorf("lease table %q does not exist: create it with %q (or kinesis.CreateLeaseTable)", *s.table, createCommand)
	case err != nil:
		return wrap(ctx, err, "describe lease table "+*s.table)
	case tbl.Table == nil || tbl.Table.TableStatus != dtypes.TableStatusActive:
		status := dtypes.TableStatus("unknown")
		if tbl.Table != nil {
			status = tbl.Table.TableStatus
		}
		return fmt.Errorf("lease table %q is %s, not ACTIVE", *s.table, status)
	}
	return nil
}

// optString is nil for "", else a pointer to s.
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Owner returns the name this worker holds leases under.
func (s *Stream) Owner() string { return s.owner }

// Close stops every running Consume (they checkpoint what their handlers
// accepted, release their leases and return ErrClosed) and waits for them.
// It does not close the clients.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.consumers.Wait()
	return nil
}

func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomToken()[:8])
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// metrics are the stream's collectors; a nil Registerer gets unregistered
// ones, so that the code never checks.
type metrics struct {
	appended       prometheus.Counter
	consumed       *prometheus.CounterVec // group
	iteratorAge    *prometheus.GaugeVec   // group, shard
	lastRead       *prometheus.GaugeVec   // group, shard
	leasesHeld     *prometheus.GaugeVec   // group
	leaseEvents    *prometheus.CounterVec // group, event
	throttles      *prometheus.CounterVec // op
	retries        *prometheus.CounterVec // op
	handlerSeconds *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, stream string) (*metrics, error) {
	labels := prometheus.Labels{"stream": stream}
	m := &metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcs_kinesis_records_appended_total", Help: "Records stored by PutRecords.", ConstLabels: labels,
		}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_kinesis_records_consumed_total", Help: "Records in batches the handler accepted, by consumer group.", ConstLabels: labels,
		}, []string{"group"}),
		iteratorAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcs_kinesis_iterator_age_seconds", Help: "How far behind the newest record of its shard the last GetRecords was (Kinesis's MillisBehindLatest, in seconds), for each shard this worker consumes.", ConstLabels: labels,
		}, []string{"group", "shard"}),
		lastRead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcs_kinesis_last_read_timestamp_seconds", Help: "When a GetRecords of the shard last succeeded and its batch, if any, was handled (Unix seconds), for each shard this worker consumes. Stops advancing while reads fail or the handler hangs.", ConstLabels: labels,
		}, []string{"group", "shard"}),
		leasesHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcs_kinesis_leases_held", Help: "Shard leases this worker holds, by consumer group.", ConstLabels: labels,
		}, []string{"group"}),
		leaseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_kinesis_lease_events_total", Help: "Lease changes by this worker: take, adopt, steal_request, handover, lost, expired, release, shard_end.", ConstLabels: labels,
		}, []string{"group", "event"}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_kinesis_throttles_total", Help: "Calls (or PutRecords entries) refused for throughput, by operation.", ConstLabels: labels,
		}, []string{"op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_kinesis_retries_total", Help: "Calls (or PutRecords entries) retried after throttling or a transient failure, by operation.", ConstLabels: labels,
		}, []string{"op"}),
		handlerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tcs_kinesis_handler_seconds", Help: "Time the handler took per batch, by consumer group.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"group"}),
	}
	if reg == nil {
		return m, nil
	}
	register := func(c prometheus.Collector) (prometheus.Collector, error) {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			return already.ExistingCollector, nil
		}
		return c, err
	}
	var err error
	reuse := func(dst any, c prometheus.Collector) {
		if err != nil {
			return
		}
		var got prometheus.Collector
		got, err = register(c)
		if err != nil {
			err = fmt.Errorf("register metrics: %w", err)
			return
		}
		switch d := dst.(type) {
		case *prometheus.Counter:
			*d = got.(prometheus.Counter)
		case **prometheus.CounterVec:
			*d = got.(*prometheus.CounterVec)
		case **prometheus.GaugeVec:
			*d = got.(*prometheus.GaugeVec)
		case **prometheus.HistogramVec:
			*d = got.(*prometheus.HistogramVec)
		}
	}
	reuse(&m.appended, m.appended)
	reuse(&m.consumed, m.consumed)
	reuse(&m.iteratorAge, m.iteratorAge)
	reuse(&m.lastRead, m.lastRead)
	reuse(&m.leasesHeld, m.leasesHeld)
	reuse(&m.leaseEvents, m.leaseEvents)
	reuse(&m.throttles, m.throttles)
	reuse(&m.retries, m.retries)
	reuse(&m.handlerSeconds, m.handlerSeconds)
	return m, err
}

// failure classifies an error of an AWS call.
type failure int

const (
	permanent failure = iota // a request that will never succeed: report it
	transient                // 5xx, a dropped connection, …: retry
	throttled                // throughput exceeded: retry, more slowly
)

// classify tells how to treat err, an AWS call's error that is not a context
// error.
func classify(err error) failure {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ProvisionedThroughputExceededException", "ThrottlingException", "Throttling",
			"LimitExceededException", "RequestLimitExceeded", "TooManyRequestsException",
			"KMSThrottlingException":
			return throttled
		case "InternalFailure", "InternalFailureException", "InternalServerError", "ServiceUnavailable",
			"ServiceUnavailableException", "TransactionConflictException":
			return transient
		}
	}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) {
		switch code := resp.HTTPStatusCode(); {
		case code == http.StatusTooManyRequests:
			return throttled
		case code >= 500:
			return transient
		case apiErr != nil:
			return permanent
		}
	}
	if apiErr != nil {
		return permanent
	}
	// No response: a connection refused or reset, a timeout, a body cut
	// short, the SDK's retry quota: try again.
	return transient
}

// isContextErr reports whether err is (or wraps) a context error.
func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// wrap returns context errors as they are (a call that failed because ctx
// ended returns ctx's error) and prefixes anything else with the operation.
func wrap(ctx context.Context, err error, op string) error {
	if err == nil {
		return nil
	}
	if isContextErr(err) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("%s: %w", op, err)
}

// maxBackoff caps the wait between retries of a failing call. It is low so
// that the stream resumes within about a second of an endpoint coming back
// (a frozen or partitioned endpoint does not answer: every attempt then
// waits for the SDK's response-header timeout, so a low cap does not make
// the retries of a stuck call frequent).
const maxBackoff = time.Second

// oneAttempt makes a Kinesis call a single attempt: the stream retries every
// call itself (with maxBackoff; the SDK's retryer backs off up to 20 s
// between attempts, which would delay recovery after an outage by as much)
// and counts the failures in its metrics.
func oneAttempt(o *kinesis.Options) { o.RetryMaxAttempts = 1 }

// oneDynamoAttempt is oneAttempt for the lease table's calls.
func oneDynamoAttempt(o *dynamodb.Options) { o.RetryMaxAttempts = 1 }

// retryOp runs call until it succeeds, fails permanently or ctx ends,
// backing off after throttling and transient failures (timeouts included)
// and counting them under op.
func (s *Stream) retryOp(ctx context.Context, op string, call func() error) error {
	b := backoff.New(20*time.Millisecond, maxBackoff, backoff.Around)
	for failures := 1; ; failures++ {
		err := call()
		if err == nil || ctx.Err() != nil {
			return err
		}
		switch classify(err) {
		case permanent:
			return err
		case throttled:
			s.m.throttles.WithLabelValues(op).Inc()
		}
		s.m.retries.WithLabelValues(op).Inc()
		s.logRetry(failures, "retrying", "op", op, "err", err)
		if werr := b.Wait(ctx); werr != nil {
			return err
		}
	}
}

// logRetry logs a retried failure: at debug level, but every tenth
// failure in a row at warning level, so that a call retried for a long time
// (an endpoint down, sustained throttling) shows.
func (s *Stream) logRetry(failures int, msg string, args ...any) {
	level := slog.LevelDebug
	if failures%10 == 0 {
		level = slog.LevelWarn
		args = append(args, "failures_in_a_row", failures)
	}
	s.log.Log(context.Background(), level, msg, args...)
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
