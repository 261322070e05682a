package kinesis_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/streamer"
)

// latencies is a handler that records, for each message, the time from the
// append (Unix nanoseconds in the first 8 bytes of Data) to delivery.
type latencies struct {
	mu      sync.Mutex
	got     []time.Duration
	changed chan struct{}
}

func (l *latencies) handle(_ context.Context, batch []streamer.Message) error {
	now := time.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range batch {
		l.got = append(l.got, time.Duration(now-int64(binary.BigEndian.Uint64(m.Data))))
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

func (l *latencies) waitFor(b *testing.B, n int) {
	deadline := time.After(patience)
	for {
		l.mu.Lock()
		have, changed := len(l.got), l.changed
		l.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			b.Fatalf("%d of %d records delivered after %v", have, n, patience)
		}
	}
}

func (l *latencies) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.got)
	q := func(p float64) float64 { return float64(l.got[int(p*float64(len(l.got)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

func stamped(keys []string) []streamer.Record {
	now := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	rs := make([]streamer.Record, len(keys))
	for i, k := range keys {
		rs[i] = streamer.Record{PartitionKey: k, Data: append(slices.Clip(now), k...)}
	}
	return rs
}

// BenchmarkAppendConsume appends batches of 100 records (100 keys) to a
// 4-shard stream as fast as Append returns while one worker consumes with
// PollInterval 100ms: records/s is the append rate, p50/p99 the time from
// Append's call to delivery under that load.
func BenchmarkAppendConsume(b *testing.B) {
	for _, batch := range []int{1, 100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			_, cfg := newStream(b, 4)
			cfg.PollInterval = 100 * time.Millisecond
			s := open(b, cfg)
			l := &latencies{changed: make(chan struct{})}
			ctx, cancel := context.WithCancel(b.Context())
			done := make(chan error, 1)
			go func() { done <- s.Consume(ctx, "bench", l.handle) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Errorf("Consume: %v", err)
				}
			}()
			ks := make([]string, batch)
			for i := range ks {
				ks[i] = fmt.Sprintf("tenant-%04d", i)
			}
			// Wait for the consumer to hold its leases.
			if err := s.Append(b.Context(), stamped(ks[:1])); err != nil {
				b.Fatal(err)
			}
			l.waitFor(b, 1)
			l.mu.Lock()
			l.got = l.got[:0]
			l.mu.Unlock()

			n := 0
			var appending time.Duration
			for b.Loop() {
				start := time.Now()
				if err := s.Append(b.Context(), stamped(ks)); err != nil {
					b.Fatal(err)
				}
				appending += time.Since(start)
				n += batch
			}
			l.waitFor(b, n)
			b.ReportMetric(float64(n)/appending.Seconds(), "records/s")
			l.report(b)
		})
	}
}

// BenchmarkDeliveryLatency appends one record at a time to an idle consumer
// (PollInterval 100ms), at a random point of its poll cycle, and waits for
// it: ns/op and p50/p99 are the end-to-end latency with no load.
func BenchmarkDeliveryLatency(b *testing.B) {
	_, cfg := newStream(b, 2)
	cfg.PollInterval = 100 * time.Millisecond
	s := open(b, cfg)
	l := &latencies{changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- s.Consume(ctx, "bench", l.handle) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Consume: %v", err)
		}
	}()
	if err := s.Append(b.Context(), stamped([]string{"warm"})); err != nil {
		b.Fatal(err)
	}
	l.waitFor(b, 1)
	l.mu.Lock()
	l.got = l.got[:0]
	l.mu.Unlock()
	n := 0
	for b.Loop() {
		// Append at a random point of the poll cycle, not right after the
		// poll that delivered the previous record.
		b.StopTimer()
		time.Sleep(rand.N(cfg.PollInterval))
		b.StartTimer()
		if err := s.Append(b.Context(), stamped([]string{fmt.Sprintf("tenant-%d", n%10)})); err != nil {
			b.Fatal(err)
		}
		n++
		l.waitFor(b, n)
	}
	l.report(b)
}

// BenchmarkConsume measures how fast one worker drains a backlog of 20,000
// records (200 keys) from a 4-shard stream, MaxRecords 1000.
func BenchmarkConsume(b *testing.B) {
	const keys, rounds = 200, 100
	for b.Loop() {
		b.StopTimer()
		_, cfg := newStream(b, 4)
		s := open(b, cfg)
		ks := make([]string, keys)
		for i := range ks {
			ks[i] = fmt.Sprintf("tenant-%04d", i)
		}
		for range rounds {
			if err := s.Append(b.Context(), stamped(ks)); err != nil {
				b.Fatal(err)
			}
		}
		l := &latencies{changed: make(chan struct{})}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- s.Consume(ctx, "bench", l.handle) }()
		l.waitFor(b, keys*rounds)
		b.ReportMetric(keys*rounds/time.Since(start).Seconds(), "records/s")
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Consume: %v", err)
		}
	}
}
