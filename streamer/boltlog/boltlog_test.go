package boltlog_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/streamer/streamtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	streamtest.Run(t, func(t *testing.T) streamer.Stream {
		return open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{})
	})
}

// TestConformanceSmallBatches runs the suite with several batches per
// partition, so that resuming and redelivery start mid-partition. Its poll
// interval is longer than the suite's patience: consumers must be woken by
// Append.
func TestConformanceSmallBatches(t *testing.T) {
	t.Parallel()
	streamtest.Run(t, func(t *testing.T) streamer.Stream {
		return open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{Partitions: 3, BatchSize: 5, PollInterval: time.Hour})
	})
}

func open(tb testing.TB, path string, opts boltlog.Options) *boltlog.Log {
	tb.Helper()
	l, err := boltlog.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return l
}

func records(n int, key func(i int) string) []streamer.Record {
	rs := make([]streamer.Record, n)
	for i := range rs {
		rs[i] = streamer.Record{PartitionKey: key(i), Data: fmt.Appendf(nil, "record-%d", i)}
	}
	return rs
}

func tenant(i int) string { return fmt.Sprintf("tenant-%02d", i%10) }

// consumeN consumes with group until n messages have been handled (or the
// handler fails), and returns them and what Consume returned.
func consumeN(t *testing.T, l *boltlog.Log, group string, n int, fail func(batch []streamer.Message) error) ([]streamer.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var got []streamer.Message
	err := l.Consume(ctx, group, func(_ context.Context, batch []streamer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if fail != nil {
			if err := fail(batch); err != nil {
				return err
			}
		}
		got = append(got, batch...)
		if len(got) >= n {
			cancel()
		}
		return nil
	})
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatalf("Consume(%q): %d of %d messages within a minute", group, len(got), n)
	}
	return got, err
}

func TestReopenKeepsRecordsAndCheckpoints(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "stream.db")
	ctx := t.Context()
	l, err := boltlog.Open(path, boltlog.Options{Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, records(20, tenant)); err != nil {
		t.Fatal(err)
	}
	if _, err := consumeN(t, l, "g", 20, nil); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	checkpoints := map[string]string{}
	for p := range 4 {
		shard := fmt.Sprintf("p%d", p)
		if checkpoints[shard], err = l.Checkpoint("g", shard); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = open(t, path, boltlog.Options{})
	if got := l.Partitions(); got != 4 {
		t.Fatalf("Partitions after reopen = %d, want 4", got)
	}
	for shard, want := range checkpoints {
		if got, err := l.Checkpoint("g", shard); err != nil || got != want {
			t.Errorf("Checkpoint(g, %s) after reopen = %q, %v; want %q", shard, got, err, want)
		}
	}
	if lag, err := l.Lag("g"); err != nil || lag != 0 {
		t.Errorf("Lag(g) after reopen = %d, %v; want 0", lag, err)
	}
	if lag, err := l.Lag("other"); err != nil || lag != 20 {
		t.Errorf("Lag(other) after reopen = %d, %v; want 20", lag, err)
	}
	more := records(5, tenant)
	for i := range more {
		more[i].Data = fmt.Appendf(nil, "more-%d", i)
	}
	if err := l.Append(ctx, more); err != nil {
		t.Fatal(err)
	}
	got, err := consumeN(t, l, "g", 5, nil)
	if err != nil {
		t.Fatalf("Consume after reopen: %v", err)
	}
	var gotData []string
	for _, m := range got {
		gotData = append(gotData, string(m.Data))
		if cp := checkpoints[m.Shard]; cp != "" && m.Sequence <= cp {
			t.Errorf("sequence %s in %s after reopen, checkpoint was %s", m.Sequence, m.Shard, cp)
		}
	}
	if len(gotData) != 5 || !strings.HasPrefix(strings.Join(gotData, ","), "more-") || strings.Contains(strings.Join(gotData, ","), "record-") {
		t.Errorf("after reopen the group got %q, want only the 5 new records", gotData)
	}
}

func TestPartitionCountIsPersisted(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "stream.db")
	l, err := boltlog.Open(path, boltlog.Options{Partitions: 5})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()

	for _, n := range []int{0, 5} {
		l, err := boltlog.Open(path, boltlog.Options{Partitions: n})
		if err != nil {
			t.Fatalf("reopen with Partitions %d: %v", n, err)
		}
		if got := l.Partitions(); got != 5 {
			t.Errorf("reopen with Partitions %d: Partitions() = %d, want 5", n, got)
		}
		l.Close()
	}
	l, err = boltlog.Open(path, boltlog.Options{Partitions: 8})
	if err == nil {
		l.Close()
		t.Fatalf("reopen with Partitions 8 of a 5-partition file succeeded")
	}
	if !strings.Contains(err.Error(), "5 partitions") || !strings.Contains(err.Error(), path) {
		t.Errorf("reopen with Partitions 8: %v; want it to name the file and its 5 partitions", err)
	}

	if l, err := boltlog.Open(filepath.Join(t.TempDir(), "new.db"), boltlog.Options{}); err != nil {
		t.Fatal(err)
	} else {
		if got := l.Partitions(); got != boltlog.DefaultPartitions {
			t.Errorf("new file: Partitions() = %d, want %d", got, boltlog.DefaultPartitions)
		}
		l.Close()
	}
	if _, err := boltlog.Open(filepath.Join(t.TempDir(), "neg.db"), boltlog.Options{Partitions: -1}); err == nil {
		t.Errorf("Open with Partitions -1 succeeded")
	}
}

func TestLockedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "stream.db")
	open(t, path, boltlog.Options{})

	start := time.Now()
	l, err := boltlog.Open(path, boltlog.Options{Timeout: 100 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		l.Close()
		t.Fatalf("second Open succeeded")
	}
	if !strings.Contains(err.Error(), "stream data file "+path+" is locked by another process") || !errors.Is(err, berrors.ErrTimeout) {
		t.Fatalf("second Open: %v", err)
	}
	if took > 5*time.Second {
		t.Fatalf("second Open took %v with a 100ms timeout", took)
	}
}

// TestPartitionIsFNV1a pins the key → partition mapping: changing it would
// reorder records already in existing files.
func TestPartitionIsFNV1a(t *testing.T) {
	t.Parallel()
	const partitions = 7
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{Partitions: partitions})
	recs := records(40, func(i int) string { return fmt.Sprintf("tenant-%d", i) })
	if err := l.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	got, err := consumeN(t, l, "g", len(recs), nil)
	if err != nil {
		t.Fatal(err)
	}
	gotShards, wantShards := map[string]string{}, map[string]string{}
	for _, m := range got {
		gotShards[m.PartitionKey] = m.Shard
	}
	for _, r := range recs {
		h := fnv.New32a()
		h.Write([]byte(r.PartitionKey))
		wantShards[r.PartitionKey] = fmt.Sprintf("p%d", h.Sum32()%partitions)
	}
	if diff := cmp.Diff(wantShards, gotShards); diff != "" {
		t.Errorf("partition key → shard (-FNV-1a +got):\n%s", diff)
	}
}

func TestSequencesSortAsStrings(t *testing.T) {
	t.Parallel()
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{Partitions: 1, BatchSize: 3})
	for range 4 { // sequences cross from one digit to two
		if err := l.Append(t.Context(), records(3, tenant)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := consumeN(t, l, "g", 12, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Sequence <= got[i-1].Sequence {
			t.Errorf("sequence %q after %q: string order is not append order", got[i].Sequence, got[i-1].Sequence)
		}
	}
	if s := got[len(got)-1].Sequence; s != "00000000000000000012" {
		t.Errorf("12th sequence = %q, want 00000000000000000012", s)
	}
}

func TestCheckpointAndLag(t *testing.T) {
	t.Parallel()
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{Partitions: 4, BatchSize: 2})
	if err := l.Append(t.Context(), records(30, tenant)); err != nil {
		t.Fatal(err)
	}
	if lag, err := l.Lag("g"); err != nil || lag != 30 {
		t.Fatalf("Lag before consuming = %d, %v; want 30", lag, err)
	}
	if cp, err := l.Checkpoint("g", "p0"); err != nil || cp != "" {
		t.Fatalf("Checkpoint before consuming = %q, %v; want \"\"", cp, err)
	}
	got, err := consumeN(t, l, "g", 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]string{}
	for _, m := range got {
		last[m.Shard] = m.Sequence
	}
	for shard, want := range last {
		if cp, err := l.Checkpoint("g", shard); err != nil || cp != want {
			t.Errorf("Checkpoint(g, %s) = %q, %v; want %q", shard, cp, err, want)
		}
	}
	if lag, err := l.Lag("g"); err != nil || lag != 0 {
		t.Errorf("Lag after consuming everything = %d, %v; want 0", lag, err)
	}
	for _, shard := range []string{"p4", "q1", "p", "p01", ""} {
		if _, err := l.Checkpoint("g", shard); err == nil {
			t.Errorf("Checkpoint(g, %q) of a 4-partition log succeeded", shard)
		}
	}
}

func TestHandlerErrorNamesShard(t *testing.T) {
	t.Parallel()
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{})
	if err := l.Append(t.Context(), records(10, tenant)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	var shard string
	_, err := consumeN(t, l, "g", 10, func(batch []streamer.Message) error {
		if shard == "" {
			shard = batch[0].Shard
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "shard "+shard+":") || !strings.Contains(err.Error(), `group "g"`) {
		t.Fatalf("Consume = %v; want %v wrapped with group g and shard %s", err, boom, shard)
	}
	if cp, err := l.Checkpoint("g", shard); err != nil || cp != "" {
		t.Errorf("Checkpoint of the failed shard = %q, %v; want none", cp, err)
	}
}

func TestOneConsumePerGroup(t *testing.T) {
	t.Parallel()
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	entered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(ctx, "g", func(ctx context.Context, _ []streamer.Message) error {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	if err := l.Append(t.Context(), records(1, tenant)); err != nil {
		t.Fatal(err)
	}
	<-entered // the first Consume is surely registered now
	err := l.Consume(t.Context(), "g", func(context.Context, []streamer.Message) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "another Consume") {
		t.Errorf("second Consume of a running group = %v, want an error", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("first Consume = %v, want nil", err)
	}
}

func TestCloseStopsConsume(t *testing.T) {
	t.Parallel()
	l, err := boltlog.Open(filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(t.Context(), "g", func(ctx context.Context, _ []streamer.Message) error {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	if err := l.Append(t.Context(), records(1, tenant)); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, boltlog.ErrClosed) {
		t.Errorf("Consume running at Close = %v, want ErrClosed", err)
	}
	if err := l.Append(t.Context(), records(1, tenant)); !errors.Is(err, boltlog.ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if err := l.Consume(t.Context(), "g", func(context.Context, []streamer.Message) error { return nil }); !errors.Is(err, boltlog.ErrClosed) {
		t.Errorf("Consume after Close = %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestAppendRejectsInvalidRecords(t *testing.T) {
	t.Parallel()
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{})
	good := streamer.Record{PartitionKey: "tenant-1", Data: []byte("ok")}
	tests := []struct {
		name   string
		record streamer.Record
		want   string
	}{
		{"EmptyKey", streamer.Record{Data: []byte("x")}, "record 1: partition key is empty"},
		{"LongKey", streamer.Record{PartitionKey: strings.Repeat("é", 257)}, "record 1: partition key has 257 characters, the limit is 256"},
		{"TooBig", streamer.Record{PartitionKey: "k", Data: make([]byte, 1<<20)}, "record 1: partition key \"k\": key and data are 1048577 bytes, the limit is 1048576"},
	}
	for _, tc := range tests {
		err := l.Append(t.Context(), []streamer.Record{good, tc.record})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Append = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if lag, err := l.Lag("g"); err != nil || lag != 0 {
		t.Errorf("after rejected appends Lag = %d, %v; want 0 (nothing written)", lag, err)
	}
	if err := l.Append(t.Context(), []streamer.Record{{PartitionKey: strings.Repeat("é", 256), Data: make([]byte, 1<<20-512)}}); err != nil {
		t.Errorf("Append at the limits: %v", err)
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{Now: func() time.Time { return at }})
	if err := l.Append(t.Context(), records(1, tenant)); err != nil {
		t.Fatal(err)
	}
	got, err := consumeN(t, l, "g", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].AppendedAt.Equal(at) {
		t.Errorf("AppendedAt = %v, want %v", got[0].AppendedAt, at)
	}
}

func TestTrim(t *testing.T) {
	t.Parallel()
	l := open(t, filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{Partitions: 2})
	ctx := t.Context()
	if n, err := l.Trim(); err != nil || n != 0 {
		t.Fatalf("Trim with no groups = %d, %v; want 0", n, err)
	}
	if err := l.Append(ctx, records(20, tenant)); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Trim(); err != nil || n != 0 {
		t.Fatalf("Trim with no groups = %d, %v; want 0", n, err)
	}
	if _, err := consumeN(t, l, "fast", 20, nil); err != nil {
		t.Fatal(err)
	}
	// "slow" becomes known but processes nothing: it holds every record.
	if _, err := consumeN(t, l, "slow", 1, func([]streamer.Message) error { return errors.New("not yet") }); err == nil {
		t.Fatal("Consume whose handler failed returned nil")
	}
	if n, err := l.Trim(); err != nil || n != 0 {
		t.Fatalf("Trim while slow has processed nothing = %d, %v; want 0", n, err)
	}
	if _, err := consumeN(t, l, "slow", 20, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Trim(); err != nil || n != 20 {
		t.Fatalf("Trim after both groups processed everything = %d, %v; want 20", n, err)
	}
	if lag, err := l.Lag("new"); err != nil || lag != 0 {
		t.Errorf("Lag of a new group after trimming everything = %d, %v; want 0", lag, err)
	}
	before, _ := l.Checkpoint("fast", "p0")
	if err := l.Append(ctx, records(20, tenant)); err != nil {
		t.Fatal(err)
	}
	for _, group := range []string{"fast", "new"} {
		if lag, err := l.Lag(group); err != nil || lag != 20 {
			t.Errorf("Lag(%s) after trimming and appending 20 = %d, %v; want 20", group, lag, err)
		}
	}
	got, err := consumeN(t, l, "fast", 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got {
		if m.Shard == "p0" && m.Sequence <= before {
			t.Errorf("sequence %s in p0 after trimming up to %s: sequences restarted", m.Sequence, before)
		}
	}

	// slow has not processed the new records: they stay until it is gone.
	if n, err := l.Trim(); err != nil || n != 0 {
		t.Fatalf("Trim while slow lags = %d, %v; want 0", n, err)
	}
	if err := l.DeleteGroup("slow"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteGroup("never-existed"); err != nil {
		t.Errorf("DeleteGroup of an unknown group: %v", err)
	}
	if n, err := l.Trim(); err != nil || n != 20 {
		t.Fatalf("Trim after deleting slow = %d, %v; want 20", n, err)
	}
}
