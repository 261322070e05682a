package kinesis_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

// countingPuts counts PutRecords calls.
type countingPuts struct {
	*awskinesis.Client
	calls atomic.Int32
}

func (c *countingPuts) PutRecords(ctx context.Context, in *awskinesis.PutRecordsInput, opts ...func(*awskinesis.Options)) (*awskinesis.PutRecordsOutput, error) {
	c.calls.Add(1)
	return c.Client.PutRecords(ctx, in, opts...)
}

func TestAppendRejectsInvalidRecords(t *testing.T) {
	t.Parallel()
	c, cfg := newStream(t, 1)
	puts := &countingPuts{Client: c.kin}
	cfg.Kinesis = puts
	s := open(t, cfg)
	tests := []struct {
		name string
		bad  streamer.Record
		want string
	}{
		{"over 1 MiB", streamer.Record{PartitionKey: "tenant-a", Data: make([]byte, 1<<20)}, "the Kinesis limit is 1048576 (1 MiB)"},
		{"empty key", streamer.Record{Data: []byte("x")}, "partition key is empty"},
		{"long key", streamer.Record{PartitionKey: strings.Repeat("k", 257), Data: []byte("x")}, "the limit is 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok := streamer.Record{PartitionKey: "tenant-b", Data: []byte("fine")}
			err := s.Append(t.Context(), []streamer.Record{ok, tt.bad})
			if err == nil || !strings.Contains(err.Error(), "record 1") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Append = %v; want an error naming record 1 and saying %q", err, tt.want)
			}
		})
	}
	if n := puts.calls.Load(); n != 0 {
		t.Errorf("%d PutRecords calls; an invalid record must reject the whole Append before anything is sent", n)
	}
	// Exactly 1 MiB (key and data) is allowed.
	max := streamer.Record{PartitionKey: "tenant-c", Data: make([]byte, 1<<20-len("tenant-c"))}
	if err := s.Append(t.Context(), []streamer.Record{max}); err != nil {
		t.Fatalf("Append of a 1 MiB record: %v", err)
	}
}

func TestConsumeGroupOncePerStream(t *testing.T) {
	t.Parallel()
	_, cfg := newStream(t, 1)
	s := open(t, cfg)
	consume(t, t.Context(), s, "g", newLog().handler("a"))
	waitLeases(t, s, "g", "the first Consume to hold the lease", func(ls []kinesis.Lease) bool {
		return len(ls) == 1 && ls[0].Owner == s.Owner()
	})
	// Bounded, in case it is not refused.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := s.Consume(ctx, "g", newLog().handler("b"))
	if err == nil || !strings.Contains(err.Error(), "another Consume of this group") {
		t.Fatalf("second Consume of a running group = %v; want it refused", err)
	}
}

func TestCloseStopsConsume(t *testing.T) {
	t.Parallel()
	_, cfg := newStream(t, 2)
	s, err := kinesis.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	log := newLog()
	done := make(chan error, 1)
	go func() { done <- s.Consume(t.Context(), "g", log.handler("a")) }()
	recs := rounds(keys(4), 0, 2)
	if err := s.Append(t.Context(), recs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	log.waitFor(t, "every record", covers(recs))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, kinesis.ErrClosed) {
			t.Fatalf("Consume after Close = %v, want ErrClosed", err)
		}
	case <-time.After(patience):
		t.Fatalf("Consume did not return after Close")
	}
	if err := s.Append(t.Context(), recs); !errors.Is(err, kinesis.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	// Close released the leases and checkpointed everything accepted.
	s2 := open(t, cfg)
	ls, err := s2.Leases(t.Context(), "g")
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	if len(ls) != 2 {
		t.Fatalf("%d leases, want 2: %+v", len(ls), ls)
	}
	for _, l := range ls {
		if l.Owner != "" || l.Checkpoint == "" {
			t.Errorf("lease %s after Close: owner %q, checkpoint %q; want free and checkpointed", l.Shard, l.Owner, l.Checkpoint)
		}
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	t.Parallel()
	c, cfg := newStream(t, 2)
	if err := kinesis.CreateStream(t.Context(), c.kin, cfg.Stream, 5); err != nil {
		t.Fatalf("CreateStream of an existing stream: %v", err)
	}
	out, err := c.kin.DescribeStreamSummary(t.Context(), &awskinesis.DescribeStreamSummaryInput{StreamName: aws.String(cfg.Stream)})
	if err != nil {
		t.Fatalf("DescribeStreamSummary: %v", err)
	}
	if n := aws.ToInt32(out.StreamDescriptionSummary.OpenShardCount); n != 2 {
		t.Errorf("after CreateStream(5 shards) of an existing 2-shard stream: %d shards; want it left alone", n)
	}
	if err := kinesis.CreateLeaseTable(t.Context(), c.db, cfg.LeaseTable); err != nil {
		t.Fatalf("CreateLeaseTable of an existing table: %v", err)
	}
}

// TestAppendOnly opens a stream without a lease table, as the publisher
// does: Append works, Consume says why it cannot.
func TestAppendOnly(t *testing.T) {
	t.Parallel()
	c, cfg := newStream(t, 1)
	s := open(t, kinesis.Config{Kinesis: c.kin, Stream: cfg.Stream})
	if err := s.Append(t.Context(), rounds(keys(3), 0, 2)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	err := s.Consume(t.Context(), "g", newLog().handler("a"))
	if err == nil || !strings.Contains(err.Error(), "without a lease table") {
		t.Fatalf("Consume on an append-only stream = %v; want an error saying it has no lease table", err)
	}
	// What was appended is there for a consumer with a lease table.
	log := newLog()
	consume(t, t.Context(), open(t, cfg), "g", log.handler("b"))
	log.waitFor(t, "the appended records", covers(rounds(keys(3), 0, 2)))
}
