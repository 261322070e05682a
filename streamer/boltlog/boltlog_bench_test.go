package boltlog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
)

// benchBatch returns 100 records of ~400 bytes (about the size of a change
// event) over 100 tenants.
func benchBatch(round int) []streamer.Record {
	rs := make([]streamer.Record, 100)
	for i := range rs {
		data := make([]byte, 400)
		copy(data, fmt.Sprintf(`{"round":%d,"i":%d}`, round, i))
		rs[i] = streamer.Record{PartitionKey: fmt.Sprintf("tenant-%03d", i), Data: data}
	}
	return rs
}

// BenchmarkAppend measures one durable (fsynced) Append of 100 records.
func BenchmarkAppend(b *testing.B) {
	l := open(b, filepath.Join(b.TempDir(), "stream.db"), boltlog.Options{})
	ctx := b.Context()
	batch := benchBatch(0)
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := l.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkAppendOne measures one durable Append of a single record: the
// cost of not batching.
func BenchmarkAppendOne(b *testing.B) {
	l := open(b, filepath.Join(b.TempDir(), "stream.db"), boltlog.Options{})
	ctx := b.Context()
	batch := benchBatch(0)[:1]
	for b.Loop() {
		if err := l.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsume measures delivery of b.N stored records to a handler
// that does nothing, checkpointing every batch (default options: 8
// partitions, batches of 256).
func BenchmarkConsume(b *testing.B) {
	l := open(b, filepath.Join(b.TempDir(), "stream.db"), boltlog.Options{})
	for i := 0; i < b.N; i += 1000 {
		var batch []streamer.Record
		for j := 0; j < 1000 && i+j < b.N; j += 100 {
			batch = append(batch, benchBatch(i + j)[:min(100, b.N-i-j)]...)
		}
		if err := l.Append(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	remaining := make(chan int, 64)
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(ctx, "bench", func(_ context.Context, batch []streamer.Message) error {
			remaining <- len(batch)
			return nil
		})
	}()
	for left := b.N; left > 0; {
		select {
		case n := <-remaining:
			left -= n
		case err := <-done:
			b.Fatalf("Consume returned early: %v", err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}
