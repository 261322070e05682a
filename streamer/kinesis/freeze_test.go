package kinesis_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/awsclient"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

// freezer is a proxy in front of kinesalite that can freeze it as SIGSTOP
// does: while frozen, requests are held unanswered (the client's timeouts
// fire), and those still waiting when it thaws go through.
type freezer struct {
	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	thawed  chan struct{} // nil while not frozen
	gaveUp  map[string]int
	changed chan struct{}
}

func newFreezer(t *testing.T, target string) (*freezer, string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("kinesalite endpoint %q: %v", target, err)
	}
	f := &freezer{proxy: httputil.NewSingleHostReverseProxy(u), gaveUp: map[string]int{}, changed: make(chan struct{})}
	f.proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *freezer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the body first: the server notices that the client went away
	// (r.Context ends) only once the body is read.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.mu.Lock()
	thawed := f.thawed
	f.mu.Unlock()
	if thawed != nil {
		select {
		case <-thawed:
		case <-r.Context().Done():
			op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
			f.mu.Lock()
			f.gaveUp[op]++
			close(f.changed)
			f.changed = make(chan struct{})
			f.mu.Unlock()
			return
		}
	}
	f.proxy.ServeHTTP(w, r)
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.thawed = make(chan struct{})
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.thawed)
	f.thawed = nil
}

// waitGaveUp waits until the clients gave up (timed out) on at least n calls
// of each op during the freeze.
func (f *freezer) waitGaveUp(t *testing.T, n int, ops ...string) {
	t.Helper()
	deadline := time.NewTimer(patience)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		done := !slices.ContainsFunc(ops, func(op string) bool { return f.gaveUp[op] < n })
		counts, changed := maps.Clone(f.gaveUp), f.changed
		f.mu.Unlock()
		if done {
			t.Logf("calls timed out during the freeze: %v", counts)
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %d timed-out calls of each of %v; got %v", patience, n, ops, counts)
		}
	}
}

// TestKinesisFreeze freezes Kinesis (every call hangs, as with a SIGSTOPped
// or partitioned endpoint) for longer than the SDK's per-attempt and
// per-operation deadlines (internal/awsclient, as the binaries set them, with
// the SDK's standard retryer). Calls time out with errors that match
// context.DeadlineExceeded; the stream must treat them as failures to retry,
// not as its own context ending: Append keeps retrying and returns nil,
// Consume keeps running (it used to fail when GetShardIterator timed out,
// and a shard loop whose GetRecords timed out ended). Once Kinesis thaws,
// everything appended arrives, in order per key; the time from the thaw to
// the last delivery is logged.
func TestKinesisFreeze(t *testing.T) {
	t.Parallel()
	const group = "freeze"
	clean := newClients(t, nil)
	stream, table := resources(t, clean, 2)
	f, endpoint := newFreezer(t, emulators.SharedKinesis(t))
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	awsclient.Timeouts{ResponseHeader: 200 * time.Millisecond, Operation: 600 * time.Millisecond}.Apply(&cfg)
	kin := awskinesis.NewFromConfig(cfg, func(o *awskinesis.Options) { o.BaseEndpoint = aws.String(endpoint) })
	s := open(t, kinesis.Config{
		Kinesis: kin, DynamoDB: clean.db, Stream: stream, LeaseTable: table, Owner: "worker",
		PollInterval: 50 * time.Millisecond, LeaseDuration: 3 * time.Second,
	})

	log := newLog()
	ctx, cancel := context.WithCancel(t.Context())
	consumed := make(chan error, 1)
	go func() { consumed <- s.Consume(ctx, group, log.handler("worker")) }()
	t.Cleanup(func() {
		cancel()
		if err := <-consumed; err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
	waitDelivered := func(what string, want func([]delivery) bool) {
		t.Helper()
		deadline := time.NewTimer(patience)
		defer deadline.Stop()
		for {
			log.mu.Lock()
			ok, changed := want(log.deliveries), log.changed
			log.mu.Unlock()
			if ok {
				return
			}
			select {
			case <-changed:
			case err := <-consumed:
				t.Fatalf("Consume returned before %s: %v", what, err)
			case <-deadline.C:
				t.Fatalf("waited %v for %s", patience, what)
			}
		}
	}

	ks := keys(10)
	before := rounds(ks, 0, 2)
	if err := s.Append(t.Context(), before); err != nil {
		t.Fatalf("Append: %v", err)
	}
	waitDelivered("the records appended before the freeze", covers(before))

	f.freeze()
	during := rounds(ks, 2, 3)
	appended := make(chan error, 1)
	go func() { appended <- s.Append(t.Context(), during) }()
	// Several whole operations (all attempts) time out.
	f.waitGaveUp(t, 3, "GetRecords", "PutRecords")
	select {
	case err := <-appended:
		t.Fatalf("Append returned during the freeze: %v; want it to keep retrying", err)
	default:
	}
	f.thaw()
	thawed := time.Now()
	if err := <-appended; err != nil {
		t.Fatalf("Append: %v", err)
	}
	all := slices.Concat(before, during)
	waitDelivered("every record after the thaw", covers(all))
	t.Logf("everything delivered %v after the thaw", time.Since(thawed).Round(time.Millisecond))
	checkOrder(t, all, log.snapshot(), func(delivery) error { return nil })
}

// TestHandlerFencedWhenLeaseLapses freezes DynamoDB (the lease table) while
// the handler is stuck in a batch (as an applier is when its replica, also
// DynamoDB, is frozen). The worker cannot renew its lease, so once the lease
// runs out another worker may take the shard and deliver the batch again:
// the stuck handler's context must end then, not when the freeze does, so
// that two workers never apply one shard at once. After the thaw the worker
// holds the lease again and delivers the batch again, and Consume never
// failed.
func TestHandlerFencedWhenLeaseLapses(t *testing.T) {
	t.Parallel()
	const group, lease = "fenced", 2 * time.Second
	clean := newClients(t, nil)
	stream, table := resources(t, clean, 1)
	f, endpoint := newFreezer(t, emulators.SharedDynamoDB(t))
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	awsclient.Timeouts{ResponseHeader: 200 * time.Millisecond, Operation: 600 * time.Millisecond}.Apply(&cfg)
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.DisableValidateResponseChecksum = true // DynamoDB Local's error responses
	})
	s := open(t, kinesis.Config{
		Kinesis: clean.kin, DynamoDB: db, Stream: stream, LeaseTable: table, Owner: "worker",
		PollInterval: 50 * time.Millisecond, LeaseDuration: lease,
	})

	log := newLog()
	record := log.handler("worker")
	stuck := make(chan time.Time, 1)     // the handler got the batch it sticks in
	cancelled := make(chan time.Time, 1) // its context ended
	var once sync.Once
	handler := func(ctx context.Context, batch []streamer.Message) error {
		if slices.ContainsFunc(batch, func(m streamer.Message) bool { return roundOf(m) == 1 }) {
			first := false
			once.Do(func() { first = true })
			if first {
				stuck <- time.Now()
				<-ctx.Done()
				cancelled <- time.Now()
				return ctx.Err()
			}
		}
		return record(ctx, batch)
	}
	ctx, cancel := context.WithCancel(t.Context())
	consumed := make(chan error, 1)
	go func() { consumed <- s.Consume(ctx, group, handler) }()
	t.Cleanup(func() {
		cancel()
		if err := <-consumed; err != nil {
			t.Errorf("Consume: %v", err)
		}
	})

	ks := keys(5)
	r0 := rounds(ks, 0, 1)
	if err := s.Append(t.Context(), r0); err != nil {
		t.Fatalf("Append: %v", err)
	}
	log.waitFor(t, "round 0", covers(r0))
	ds := log.snapshot()
	last := ds[len(ds)-1].msg.Sequence
	waitLeases(t, s, group, "round 0 to be checkpointed", func(ls []kinesis.Lease) bool {
		return len(ls) == 1 && ls[0].Checkpoint == last
	})
	f.freeze()
	r1 := rounds(ks, 1, 1)
	if err := s.Append(t.Context(), r1); err != nil {
		t.Fatalf("Append: %v", err)
	}
	var stuckAt, cancelledAt time.Time
	select {
	case stuckAt = <-stuck:
	case <-time.After(patience):
		t.Fatalf("round 1 was not delivered within %v", patience)
	}
	select {
	case cancelledAt = <-cancelled:
	case err := <-consumed:
		t.Fatalf("Consume returned: %v", err)
	case <-time.After(patience):
		t.Fatalf("the handler stuck in a batch still ran %v after the lease table froze; want its context cancelled once the lease ran out", patience)
	}
	t.Logf("the stuck handler was cancelled %v after it got the batch (lease %v)", cancelledAt.Sub(stuckAt).Round(time.Millisecond), lease)
	f.thaw()
	log.waitFor(t, "round 1, delivered again after the thaw", covers(slices.Concat(r0, r1)))
	checkOrder(t, slices.Concat(r0, r1), log.snapshot(), nil)
}
