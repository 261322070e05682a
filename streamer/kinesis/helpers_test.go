package kinesis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

const patience = 90 * time.Second

// delivery is one message a handler accepted, in the order of acceptance
// across every worker of a test.
type delivery struct {
	worker string
	batch  int // the worker's batch number
	msg    streamer.Message
}

// log records what the handlers of several workers accepted.
type deliveryLog struct {
	mu         sync.Mutex
	deliveries []delivery
	batches    map[string]int
	changed    chan struct{}
}

func newLog() *deliveryLog {
	return &deliveryLog{batches: map[string]int{}, changed: make(chan struct{})}
}

// handler accepts every batch, recording it as delivered to worker.
func (l *deliveryLog) handler(worker string) streamer.Handler {
	return func(ctx context.Context, batch []streamer.Message) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.batches[worker]++
		for _, m := range batch {
			l.deliveries = append(l.deliveries, delivery{worker: worker, batch: l.batches[worker], msg: m})
		}
		close(l.changed)
		l.changed = make(chan struct{})
		return nil
	}
}

func (l *deliveryLog) snapshot() []delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.deliveries)
}

// waitFor waits until done holds for the deliveries so far.
func (l *deliveryLog) waitFor(t *testing.T, what string, done func([]delivery) bool) {
	t.Helper()
	deadline := time.NewTimer(patience)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ok, n, changed := done(l.deliveries), len(l.deliveries), l.changed
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-time.After(time.Second): // for conditions that are not about deliveries
		case <-deadline.C:
			t.Fatalf("waited %v for %s; %d messages delivered", patience, what, n)
		}
	}
}

// covers reports whether every record's data was delivered.
func covers(want []streamer.Record) func([]delivery) bool {
	return func(ds []delivery) bool {
		seen := map[string]bool{}
		for _, d := range ds {
			seen[string(d.msg.Data)] = true
		}
		for _, r := range want {
			if !seen[string(r.Data)] {
				return false
			}
		}
		return true
	}
}

// rounds returns n rounds of one record per key, rounds from..from+n-1,
// with Data "<key>/<round>".
func rounds(keys []string, from, n int) []streamer.Record {
	var rs []streamer.Record
	for i := from; i < from+n; i++ {
		for _, k := range keys {
			rs = append(rs, streamer.Record{PartitionKey: k, Data: fmt.Appendf(nil, "%s/%d", k, i)})
		}
	}
	return rs
}

func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("tenant-%02d", i)
	}
	return ks
}

func roundOf(m streamer.Message) int {
	d := string(m.Data)
	n, err := strconv.Atoi(d[strings.LastIndexByte(d, '/')+1:])
	if err != nil {
		panic(fmt.Sprintf("record %q: %v", d, err))
	}
	return n
}

// checkOrder checks, for each key, the order in which its records were
// delivered: ds must cover want, and each key's deliveries, in order, must
// start at its first record and each be either the record after the one
// delivered just before (in order) or one already delivered (a replay,
// which then goes on in order). In other words a key is delivered as ascending
// runs without gaps, each run starting at or before where delivery had got
// to. replay, when non-nil, is called for each delivery that goes back
// (the start of a replay run) and for the deliveries of that run up to
// where delivery had got to, and reports whether the replay was allowed.
func checkOrder(t *testing.T, want []streamer.Record, ds []delivery, replay func(d delivery) error) {
	t.Helper()
	if !covers(want)(ds) {
		t.Errorf("not every record was delivered")
	}
	byKey := map[string][]delivery{}
	for _, d := range ds {
		byKey[d.msg.PartitionKey] = append(byKey[d.msg.PartitionKey], d)
	}
	first := map[string]int{}
	for _, r := range want {
		if _, ok := first[r.PartitionKey]; !ok {
			first[r.PartitionKey] = roundOf(streamer.Message{Data: r.Data})
		}
	}
	errs := 0
	for key, kds := range byKey {
		high := -1 // the highest round delivered so far
		prev := -1
		for i, d := range kds {
			n := roundOf(d.msg)
			switch {
			case i == 0 && n != first[key]:
				t.Errorf("key %s: first delivery is %q, want round %d", key, d.msg.Data, first[key])
				errs++
			case i > 0 && n != prev+1 && n > prev:
				t.Errorf("key %s: %q delivered after round %d (by %s, batch %d): a gap", key, d.msg.Data, prev, d.worker, d.batch)
				errs++
			}
			if i > 0 && n <= high {
				if replay == nil {
					t.Errorf("key %s: %q (by %s) delivered again after round %d", key, d.msg.Data, d.worker, high)
					errs++
				} else if err := replay(d); err != nil {
					t.Errorf("key %s: %q delivered again by %s after round %d: %v", key, d.msg.Data, d.worker, high, err)
					errs++
				}
			}
			high, prev = max(high, n), n
			if errs > 20 {
				t.Fatalf("too many order errors")
			}
		}
	}
}

// duplicates returns the data delivered more than once.
func duplicates(ds []delivery) []string {
	seen := map[string]int{}
	var dups []string
	for _, d := range ds {
		seen[string(d.msg.Data)]++
		if seen[string(d.msg.Data)] == 2 {
			dups = append(dups, string(d.msg.Data))
		}
	}
	return dups
}

// consume runs s.Consume in a goroutine until the returned stop is called
// (which returns Consume's result) or the test ends.
func consume(t *testing.T, ctx context.Context, s *kinesis.Stream, group string, h streamer.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Consume(ctx, group, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(patience):
				err = errors.New("Consume did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
	return stop
}

// waitLeases waits until the group's leases satisfy ok.
func waitLeases(t *testing.T, s *kinesis.Stream, group, what string, ok func([]kinesis.Lease) bool) []kinesis.Lease {
	t.Helper()
	var ls []kinesis.Lease
	testwait.Until(t, patience, 100*time.Millisecond, what, func() (bool, string) {
		var err error
		if ls, err = s.Leases(t.Context(), group); err != nil {
			t.Fatalf("Leases: %v", err)
		}
		return ok(ls), fmt.Sprintf("leases: %+v", ls)
	})
	return ls
}

// owners counts the unfinished leases of each owner ("" for free ones).
func owners(ls []kinesis.Lease) map[string]int {
	m := map[string]int{}
	for _, l := range ls {
		if l.Checkpoint != kinesis.ShardEnd {
			m[l.Owner]++
		}
	}
	return m
}

// waitActive waits until the stream is ACTIVE again after a reshard.
func waitActive(t *testing.T, kin *awskinesis.Client, stream string) {
	t.Helper()
	testwait.Until(t, patience, 20*time.Millisecond, "stream "+stream+" to be ACTIVE", func() (bool, string) {
		out, err := kin.DescribeStreamSummary(t.Context(), &awskinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err != nil {
			t.Fatalf("DescribeStreamSummary: %v", err)
		}
		status := out.StreamDescriptionSummary.StreamStatus
		return status == ktypes.StreamStatusActive, "status " + string(status)
	})
}

// metric sums the values of the named counter or gauge whose labels include
// the given ones.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
