package kinesis_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

// faultyTransport fails a fraction of the calls to the operations in ops
// (X-Amz-Target values): a throttling error, an HTTP 500 without reaching
// the emulator, or an HTTP 500 after the emulator did the work (the answer
// was lost: the caller cannot tell that it happened).
type faultyTransport struct {
	base http.RoundTripper
	rate float64
	ops  map[string]bool

	mu       sync.Mutex
	injected map[string]int // kind → count
}

func (f *faultyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	target := req.Header.Get("X-Amz-Target")
	if !f.ops[target] || rand.Float64() >= f.rate {
		return f.base.RoundTrip(req)
	}
	dynamo := strings.HasPrefix(target, "DynamoDB_")
	kind := []string{"throughput", "throttling", "500", "500-after-success"}[rand.IntN(4)]
	f.mu.Lock()
	f.injected[kind]++
	f.mu.Unlock()
	status, errType := http.StatusBadRequest, ""
	switch kind {
	case "throughput":
		errType = "ProvisionedThroughputExceededException"
	case "throttling":
		errType = "ThrottlingException"
	case "500", "500-after-success":
		status, errType = http.StatusInternalServerError, "InternalFailure"
		if dynamo {
			errType = "InternalServerError"
		}
	}
	if kind == "500-after-success" {
		resp, err := f.base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	} else if req.Body != nil {
		req.Body.Close()
	}
	contentType := "application/x-amz-json-1.1"
	if dynamo {
		contentType = "application/x-amz-json-1.0"
		errType = "com.amazonaws.dynamodb.v20120810#" + errType
	}
	body := fmt.Sprintf(`{"__type":%q,"message":"injected by the test"}`, errType)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {contentType}, "X-Amzn-Requestid": {"injected"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

func (f *faultyTransport) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.injected)
}

// partialPuts fails a fraction of the records of each PutRecords call, as
// Kinesis does when a shard is over its throughput, storing the others. It
// also checks what Append promises: no partition key twice in one call.
type partialPuts struct {
	*awskinesis.Client
	t    *testing.T
	rate float64
}

func (p *partialPuts) PutRecords(ctx context.Context, in *awskinesis.PutRecordsInput, opts ...func(*awskinesis.Options)) (*awskinesis.PutRecordsOutput, error) {
	keys := map[string]bool{}
	for _, e := range in.Records {
		if keys[*e.PartitionKey] {
			p.t.Errorf("PutRecords call with partition key %s twice: its order would not survive a partial failure", *e.PartitionKey)
		}
		keys[*e.PartitionKey] = true
	}
	out := &awskinesis.PutRecordsOutput{Records: make([]ktypes.PutRecordsResultEntry, len(in.Records))}
	var send []ktypes.PutRecordsRequestEntry
	var at []int
	for i, e := range in.Records {
		if rand.Float64() < p.rate {
			out.Records[i] = ktypes.PutRecordsResultEntry{ErrorCode: aws.String("ProvisionedThroughputExceededException"), ErrorMessage: aws.String("injected")}
			out.FailedRecordCount = aws.Int32(aws.ToInt32(out.FailedRecordCount) + 1)
			continue
		}
		send = append(send, e)
		at = append(at, i)
	}
	if len(send) > 0 {
		res, err := p.Client.PutRecords(ctx, &awskinesis.PutRecordsInput{StreamName: in.StreamName, Records: send}, opts...)
		if err != nil {
			return nil, err
		}
		for j, r := range res.Records {
			out.Records[at[j]] = r
		}
	}
	return out, nil
}

// TestFaults runs two workers and a producer with a fifth of the Kinesis and
// DynamoDB calls failing (throttling, 500s, answers lost after the work was
// done) and a quarter of the records of each PutRecords refused. The SDK
// does not retry: every fault reaches the stream. Every record must still
// arrive, in order per key (after a replay, delivery goes on in order from
// where it went back to), and the retries show in the metrics.
func TestFaults(t *testing.T) {
	t.Parallel()
	const group = "faults"
	clean := newClients(t, nil)
	stream, table := resources(t, clean, 4)
	transport := &faultyTransport{
		base: http.DefaultTransport, rate: 0.2, injected: map[string]int{},
		ops: map[string]bool{
			"Kinesis_20131202.PutRecords": true, "Kinesis_20131202.GetRecords": true,
			"Kinesis_20131202.GetShardIterator": true, "Kinesis_20131202.ListShards": true,
			"DynamoDB_20120810.Query": true, "DynamoDB_20120810.UpdateItem": true, "DynamoDB_20120810.PutItem": true,
		},
	}
	faulty := newClients(t, transport)
	regs := map[string]*prometheus.Registry{}
	workers := map[string]*kinesis.Stream{}
	for _, w := range []string{"a", "b"} {
		regs[w] = prometheus.NewRegistry()
		workers[w] = open(t, kinesis.Config{
			Kinesis: &partialPuts{Client: faulty.kin, t: t, rate: 0.25}, DynamoDB: faulty.db,
			Stream: stream, LeaseTable: table, Owner: "worker-" + w,
			PollInterval: 50 * time.Millisecond, LeaseDuration: 3 * time.Second, Registerer: regs[w],
		})
	}
	log := newLog()
	for w, s := range workers {
		consume(t, t.Context(), s, group, log.handler(w))
	}

	ks := keys(25)
	var want []streamer.Record
	for i := range 20 {
		r := rounds(ks, i, 1)
		if err := workers["a"].Append(t.Context(), r); err != nil {
			t.Fatalf("Append round %d: %v", i, err)
		}
		want = append(want, r...)
	}
	log.waitFor(t, "every record", covers(want))
	ds := log.snapshot()

	replays := 0
	checkOrder(t, want, ds, func(delivery) error { replays++; return nil })
	wantData := map[string]bool{}
	for _, r := range want {
		wantData[string(r.Data)] = true
	}
	for _, d := range ds {
		if !wantData[string(d.msg.Data)] {
			t.Errorf("delivered %q, which was never appended", d.msg.Data)
		}
	}
	t.Logf("injected %v; %d records delivered as %d messages (%d replayed)", transport.counts(), len(want), len(ds), replays)

	sum := func(name, op string) float64 {
		var n float64
		for _, reg := range regs {
			n += metric(t, reg, name, map[string]string{"op": op})
		}
		return n
	}
	for _, op := range []string{"PutRecords", "GetRecords", "UpdateItem", "Query"} {
		retries, throttles := sum("tcs_kinesis_retries_total", op), sum("tcs_kinesis_throttles_total", op)
		t.Logf("%s: %v retries, %v throttled", op, retries, throttles)
		if retries == 0 {
			t.Errorf("tcs_kinesis_retries_total{op=%q} is 0; the faults should show", op)
		}
	}
	if sum("tcs_kinesis_throttles_total", "PutRecords") == 0 {
		t.Errorf("tcs_kinesis_throttles_total{op=\"PutRecords\"} is 0; throttled records should show")
	}
	kinds := slices.Sorted(maps.Keys(transport.counts()))
	if len(kinds) != 4 {
		t.Errorf("injected only %v", kinds)
	}
}
