// Package streamtest is the conformance suite for streamer.Stream: every
// stream backend (the embedded bbolt log, Kinesis) runs Run against a fresh
// stream and must pass it unchanged. The suite tests the contract only: what
// a producer and a consumer group can observe through the interface.
//
// Beyond the words of streamer.Stream, the suite holds backends to these
// readings of it:
//   - Append with no records returns nil.
//   - A Handler is never called with an empty batch, nor twice at once for
//     one shard.
//   - Sequences compare as decimal numbers when both are decimal (Kinesis
//     sequence numbers are), as strings otherwise.
//   - When Consume returns nil, every batch its handler accepted is
//     checkpointed: a clean stop redelivers nothing.
//   - A handler that returns a context error after ctx has ended is a stop,
//     not a failure: Consume returns nil and the batch is delivered again.
//
// Nothing in the suite sleeps to let something happen: it waits for a
// condition with a generous deadline, so that it passes on a slow shared
// machine or against an emulator, and fails with a message when the
// condition never comes.
package streamtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/streamer"
)

const (
	// patience bounds every wait for something that must happen eventually.
	patience = 60 * time.Second
	// promptly bounds the delivery of a record appended while a consumer is
	// running and idle.
	promptly = 5 * time.Second
	// clockSlack bounds how far AppendedAt may be from the suite's clock
	// (the stream may be a server with its own clock).
	clockSlack = time.Minute
)

// Run runs the conformance suite. open must return a new, empty stream each
// time it is called and close it when t ends (t.Cleanup). Subtests run in
// parallel, each on its own stream.
func Run(t *testing.T, open func(t *testing.T) streamer.Stream) {
	tests := []struct {
		name string
		test func(t *testing.T, s streamer.Stream)
	}{
		{"AppendThenConsume", testAppendThenConsume},
		{"OrderPerPartitionKey", testOrderPerPartitionKey},
		{"ConcurrentAppend", testConcurrentAppend},
		{"GroupsAreIndependent", testGroupsAreIndependent},
		{"ResumeFromCheckpoint", testResumeFromCheckpoint},
		{"HandlerErrorRedelivers", testHandlerErrorRedelivers},
		{"DeliversNewRecordsPromptly", testDeliversNewRecordsPromptly},
		{"CancelReturnsNil", testCancelReturnsNil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, open(t))
		})
	}
}

func testAppendThenConsume(t *testing.T, s streamer.Stream) {
	ctx := t.Context()
	if err := s.Append(ctx, nil); err != nil {
		t.Fatalf("Append(no records) = %v, want nil", err)
	}
	recs := records(keys("tenant", 20), 5, 0)
	before := time.Now()
	appendAll(t, s, recs)
	after := time.Now()

	rec := newRecorder(t)
	c := startConsume(ctx, t, s, "g", rec.handle)
	rec.waitFor(t, patience, "every record", coversAll(recs))
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume after cancel = %v, want nil", err)
	}

	got := rec.messages()
	exactlyOnce(t, recs, got)
	for _, m := range got {
		if m.AppendedAt.Before(before.Add(-clockSlack)) || m.AppendedAt.After(after.Add(clockSlack)) {
			t.Errorf("message %q: AppendedAt %v, want between %v and %v (± %v)", m.Data, m.AppendedAt, before, after, clockSlack)
		}
	}
}

// testOrderPerPartitionKey appends 50 keys × 40 records from 5 goroutines,
// each owning 10 keys and interleaving them, while a consumer runs.
func testOrderPerPartitionKey(t *testing.T, s streamer.Stream) {
	const writers, keysPerWriter, perKey, perCall = 5, 10, 40, 2
	ctx := t.Context()
	rec := newRecorder(t)
	c := startConsume(ctx, t, s, "g", rec.handle)

	all := keys("tenant", writers*keysPerWriter)
	var want []streamer.Record
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		own := all[w*keysPerWriter : (w+1)*keysPerWriter]
		want = append(want, records(own, perKey, 0)...)
		wg.Go(func() {
			for n := 0; n < perKey; n += perCall {
				if err := s.Append(ctx, records(own, perCall, n)); err != nil {
					errs <- fmt.Errorf("writer %d: Append: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	rec.waitFor(t, patience, "every record", coversAll(want))
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume after cancel = %v, want nil", err)
	}
	got := rec.messages()
	exactlyOnce(t, want, got)
	if diff := cmp.Diff(dataByKey(want), dataByKey(got)); diff != "" {
		t.Errorf("per-key delivery order (-appended +delivered):\n%s", diff)
	}
}

// testConcurrentAppend has 8 goroutines append to the same 10 keys at once.
// Each goroutine's records of a key must arrive in the goroutine's order.
func testConcurrentAppend(t *testing.T, s streamer.Stream) {
	const writers, calls, perCall = 8, 25, 4
	ctx := t.Context()
	shared := keys("tenant", 10)
	var want []streamer.Record
	batches := make([][][]streamer.Record, writers)
	for w := range writers {
		counter := map[string]int{}
		for i := range calls {
			var batch []streamer.Record
			for j := range perCall {
				key := shared[(w+i*perCall+j)%len(shared)]
				batch = append(batch, streamer.Record{
					PartitionKey: key,
					Data:         fmt.Appendf(nil, "%s/w%d/%d", key, w, counter[key]),
				})
				counter[key]++
			}
			batches[w] = append(batches[w], batch)
			want = append(want, batch...)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for _, batch := range batches[w] {
				if err := s.Append(ctx, batch); err != nil {
					errs <- fmt.Errorf("writer %d: Append: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	rec := newRecorder(t)
	c := startConsume(ctx, t, s, "g", rec.handle)
	rec.waitFor(t, patience, "every record", coversAll(want))
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume after cancel = %v, want nil", err)
	}
	got := rec.messages()
	exactlyOnce(t, want, got)
	// Data is key/writer/counter: per key and writer, the order appended.
	byWriter := func(msgs []string) map[string][]string {
		m := map[string][]string{}
		for _, d := range msgs {
			i := strings.LastIndexByte(d, '/')
			m[d[:i]] = append(m[d[:i]], d)
		}
		return m
	}
	wantOrder, gotOrder := map[string][]string{}, map[string][]string{}
	for key, d := range dataByKey(want) {
		for kw, ds := range byWriter(d) {
			wantOrder[kw] = ds
		}
		for kw, ds := range byWriter(dataByKey(got)[key]) {
			gotOrder[kw] = ds
		}
	}
	if diff := cmp.Diff(wantOrder, gotOrder); diff != "" {
		t.Errorf("per key and writer delivery order (-appended +delivered):\n%s", diff)
	}
}

// testGroupsAreIndependent runs two groups at once, then stops one, appends
// more and resumes it: each sees every record once, whatever the other did.
func testGroupsAreIndependent(t *testing.T, s streamer.Stream) {
	ctx := t.Context()
	ks := keys("tenant", 10)
	first := records(ks, 10, 0)
	recA, recB := newRecorder(t), newRecorder(t)
	a := startConsume(ctx, t, s, "group-a", recA.handle)
	b := startConsume(ctx, t, s, "group-b", recB.handle)
	appendAll(t, s, first)
	recA.waitFor(t, patience, "group-a to see every record", coversAll(first))
	recB.waitFor(t, patience, "group-b to see every record", coversAll(first))
	if err := a.stop(t); err != nil {
		t.Fatalf("group-a Consume after cancel = %v, want nil", err)
	}
	exactlyOnce(t, first, recA.messages())

	// Every key gets new records, so that anything group-a redelivered
	// would arrive before what the wait below waits for.
	second := records(ks, 5, 10)
	appendAll(t, s, second)
	recA2 := newRecorder(t)
	a2 := startConsume(ctx, t, s, "group-a", recA2.handle)
	recA2.waitFor(t, patience, "resumed group-a to see the new records", coversAll(second))
	recB.waitFor(t, patience, "group-b to see the new records", coversAll(second))
	for _, c := range []*consumer{a2, b} {
		if err := c.stop(t); err != nil {
			t.Fatalf("Consume after cancel = %v, want nil", err)
		}
	}
	exactlyOnce(t, second, recA2.messages())
	exactlyOnce(t, slices.Concat(first, second), recB.messages())
}

// testResumeFromCheckpoint stops a consumer after it accepted exactly one
// batch (refusing the others with a context error as it stops), then resumes
// the group twice: nothing accepted is delivered again, nothing is lost.
func testResumeFromCheckpoint(t *testing.T, s streamer.Stream) {
	ks := keys("tenant", 30)
	want := records(ks, 10, 0)
	appendAll(t, s, want)

	ctx, cancel := context.WithCancel(t.Context())
	rec1 := newRecorder(t)
	rec1.decide = func(batch []streamer.Message, accepted int) error {
		if accepted == 0 {
			cancel()
			return nil
		}
		return fmt.Errorf("stopping: %w", context.Canceled)
	}
	c1 := startConsume(ctx, t, s, "g", rec1.handle)
	if err := c1.wait(t); err != nil {
		t.Fatalf("Consume whose handler cancelled its context = %v, want nil", err)
	}
	got1 := rec1.messages()
	if len(got1) == 0 {
		t.Fatalf("first Consume accepted nothing")
	}
	t.Logf("first Consume accepted %d of %d records", len(got1), len(want))

	tail := records(ks, 1, 10) // every shard gets a record after the rest
	appendAll(t, s, tail)
	want = append(want, tail...)
	rec2 := newRecorder(t)
	c2 := startConsume(t.Context(), t, s, "g", rec2.handle)
	rec2.waitFor(t, patience, "the records the first Consume did not accept", func(got []streamer.Message) bool {
		return coversAll(want)(slices.Concat(got, got1))
	})
	if err := c2.stop(t); err != nil {
		t.Fatalf("Consume after cancel = %v, want nil", err)
	}
	got2 := rec2.messages()
	if redelivered := common(got1, got2); len(redelivered) > 0 {
		t.Errorf("resumed Consume redelivered %d accepted records: %q", len(redelivered), redelivered)
	}
	exactlyOnce(t, want, slices.Concat(got1, got2))
	if diff := cmp.Diff(dataByKey(want), dataByKey(slices.Concat(got1, got2))); diff != "" {
		t.Errorf("per-key order over both runs (-appended +delivered):\n%s", diff)
	}

	more := records(ks, 2, 11)
	appendAll(t, s, more)
	rec3 := newRecorder(t)
	c3 := startConsume(t.Context(), t, s, "g", rec3.handle)
	rec3.waitFor(t, patience, "the records appended after the second Consume", coversAll(more))
	if err := c3.stop(t); err != nil {
		t.Fatalf("Consume after cancel = %v, want nil", err)
	}
	exactlyOnce(t, more, rec3.messages())
}

var errInjected = errors.New("streamtest: injected handler failure")

// testHandlerErrorRedelivers fails the first batch delivered and accepts the
// rest: Consume returns the failure, and the next Consume of the group
// delivers the failed batch again, then everything after it in its shard.
func testHandlerErrorRedelivers(t *testing.T, s streamer.Stream) {
	ks := keys("tenant", 20)
	want := records(ks, 10, 0)
	appendAll(t, s, want)

	var failed []streamer.Message // set under rec1's lock, read after Consume returned
	rec1 := newRecorder(t)
	rec1.decide = func(batch []streamer.Message, _ int) error {
		if failed == nil {
			failed = batch
			return fmt.Errorf("applying %d messages: %w", len(batch), errInjected)
		}
		return nil
	}
	c1 := startConsume(t.Context(), t, s, "g", rec1.handle)
	if err := c1.wait(t); !errors.Is(err, errInjected) {
		t.Fatalf("Consume whose handler failed = %v, want an error wrapping %v", err, errInjected)
	}
	if failed == nil {
		t.Fatalf("Consume returned an error but the handler never failed")
	}
	shard := failed[0].Shard
	got1 := rec1.messages()
	for _, m := range got1 {
		if m.Shard == shard && !seqLess(m.Sequence, failed[0].Sequence) {
			t.Errorf("after the failed batch (shard %s from %s), shard %s delivered %q at %s", shard, failed[0].Sequence, shard, m.Data, m.Sequence)
		}
	}

	tail := records(ks, 1, 10) // every shard gets a record after the rest
	appendAll(t, s, tail)
	want = append(want, tail...)
	rec2 := newRecorder(t)
	c2 := startConsume(t.Context(), t, s, "g", rec2.handle)
	rec2.waitFor(t, patience, "the failed batch and everything not accepted", func(got []streamer.Message) bool {
		return coversAll(want)(slices.Concat(got, got1))
	})
	if err := c2.stop(t); err != nil {
		t.Fatalf("Consume after cancel = %v, want nil", err)
	}
	got2 := rec2.messages()

	var again []string
	for _, m := range got2 {
		if m.Shard == shard && len(again) < len(failed) {
			again = append(again, string(m.Data))
		}
	}
	if diff := cmp.Diff(data(failed), again); diff != "" {
		t.Errorf("first messages of shard %s after the failure (-failed batch +delivered):\n%s", shard, diff)
	}
	// Other shards may redeliver (delivery is at least once), but each run
	// delivers each key in order and together they lose nothing.
	for key, ds := range dataByKey(got2) {
		if i := outOfOrder(ds); i >= 0 {
			t.Errorf("key %s: second Consume delivered %q after %q", key, ds[i], ds[i-1])
		}
	}
	all := dataByKey(slices.Concat(got1, got2))
	for key, wantData := range dataByKey(want) {
		if diff := cmp.Diff(wantData, dedupe(all[key])); diff != "" {
			t.Errorf("key %s over both runs (-appended +delivered, duplicates removed):\n%s", key, diff)
		}
	}
}

// testDeliversNewRecordsPromptly appends to a running, idle consumer.
func testDeliversNewRecordsPromptly(t *testing.T, s streamer.Stream) {
	ctx := t.Context()
	rec := newRecorder(t)
	c := startConsume(ctx, t, s, "g", rec.handle)
	// The first record may wait for the consumer to start (list shards,
	// take leases): that is not what this test measures.
	warm := []streamer.Record{{PartitionKey: "tenant-warm", Data: []byte("warm")}}
	appendAll(t, s, warm)
	rec.waitFor(t, patience, "the first record", coversAll(warm))

	var slowest time.Duration
	for i := range 5 {
		r := []streamer.Record{{PartitionKey: fmt.Sprintf("tenant-%d", i), Data: fmt.Appendf(nil, "prompt/%d", i)}}
		start := time.Now()
		appendAll(t, s, r)
		rec.waitFor(t, promptly, fmt.Sprintf("record %d appended while consuming", i), coversAll(r))
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest append-to-delivery: %v", slowest)
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume after cancel = %v, want nil", err)
	}
}

func testCancelReturnsNil(t *testing.T, s streamer.Stream) {
	t.Run("AlreadyCancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		c := startConsume(ctx, t, s, "cancelled", newRecorder(t).handle)
		if err := c.wait(t); err != nil {
			t.Fatalf("Consume with a cancelled context = %v, want nil", err)
		}
	})
	t.Run("Idle", func(t *testing.T) {
		rec := newRecorder(t)
		c := startConsume(t.Context(), t, s, "idle", rec.handle)
		// Nothing to consume: cancel while the consumer waits. It may not
		// have started yet; the busy case below covers a running one.
		if err := c.stop(t); err != nil {
			t.Fatalf("idle Consume after cancel = %v, want nil", err)
		}
	})
	t.Run("HandlerBlocked", func(t *testing.T) {
		appendAll(t, s, records(keys("tenant", 4), 3, 0))
		entered := make(chan struct{})
		var once sync.Once
		h := func(ctx context.Context, batch []streamer.Message) error {
			once.Do(func() { close(entered) })
			<-ctx.Done()
			return ctx.Err()
		}
		c := startConsume(t.Context(), t, s, "blocked", h)
		select {
		case <-entered:
		case <-time.After(patience):
			t.Fatalf("handler not called within %v", patience)
		}
		if err := c.stop(t); err != nil {
			t.Fatalf("Consume cancelled while its handler waited = %v, want nil", err)
		}
	})
}

// consumer is a Consume running in its own goroutine.
type consumer struct {
	group  string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startConsume runs s.Consume(ctx, group, h) until stop, ctx's end or the
// end of the test.
func startConsume(ctx context.Context, t *testing.T, s streamer.Stream, group string, h streamer.Handler) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	c := &consumer{group: group, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = s.Consume(ctx, group, h)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(patience):
			t.Errorf("Consume(%q) had not returned %v after its context ended", group, patience)
		}
	})
	return c
}

// stop cancels the consumer's context and returns what Consume returned.
func (c *consumer) stop(t *testing.T) error {
	t.Helper()
	c.cancel()
	return c.wait(t)
}

// wait returns what Consume returned, failing t if it does not return.
func (c *consumer) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(patience):
		t.Fatalf("Consume(%q) did not return within %v", c.group, patience)
		return nil
	}
}

// recorder is a Handler that keeps the messages it accepted and checks what
// every call must satisfy: a non-empty batch from one shard, in increasing
// sequence order after the previous batch of that shard, stamped with a
// time, and no other call for that shard at the same time.
type recorder struct {
	t *testing.T
	// decide returns the handler's result for a batch, given how many
	// batches were accepted before it; nil accepts everything. It runs
	// under the recorder's lock and must not block.
	decide func(batch []streamer.Message, accepted int) error

	mu       sync.Mutex
	accepted []streamer.Message
	batches  int
	lastSeq  map[string]position
	busy     map[string]bool
	changed  chan struct{} // closed and replaced when accepted grows
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, lastSeq: map[string]position{}, busy: map[string]bool{}, changed: make(chan struct{})}
}

func (r *recorder) handle(ctx context.Context, batch []streamer.Message) error {
	r.mu.Lock()
	if len(batch) == 0 {
		r.mu.Unlock()
		r.t.Errorf("handler called with an empty batch")
		return nil
	}
	shard := batch[0].Shard
	if shard == "" {
		r.t.Errorf("message %q has no Shard", batch[0].Data)
	}
	if r.busy[shard] {
		r.t.Errorf("two handler calls at once for shard %s", shard)
	}
	prev := r.lastSeq[shard]
	for _, m := range batch {
		switch {
		case m.Shard != shard:
			r.t.Errorf("one batch holds shards %s and %s", shard, m.Shard)
		case m.Sequence == "":
			r.t.Errorf("message %q has no Sequence", m.Data)
		case m.Sub < 0:
			r.t.Errorf("message %q has Sub %d", m.Data, m.Sub)
		case prev.seq != "" && !posLess(prev, position{m.Sequence, m.Sub}):
			r.t.Errorf("shard %s: position %s/%d delivered after %s/%d", shard, m.Sequence, m.Sub, prev.seq, prev.sub)
		}
		if m.AppendedAt.IsZero() {
			r.t.Errorf("message %q has no AppendedAt", m.Data)
		}
		prev = position{m.Sequence, m.Sub}
	}
	r.lastSeq[shard] = prev
	r.busy[shard] = true
	r.mu.Unlock()

	runtime.Gosched() // give an overlapping call for this shard a chance to show

	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy[shard] = false
	var err error
	if r.decide != nil {
		err = r.decide(batch, r.batches)
	}
	if err == nil {
		r.accepted = append(r.accepted, batch...)
		r.batches++
		close(r.changed)
		r.changed = make(chan struct{})
	}
	return err
}

// messages returns the accepted messages in the order they were accepted.
func (r *recorder) messages() []streamer.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]streamer.Message(nil), r.accepted...)
}

// waitFor waits until done holds for the accepted messages, failing t after
// timeout.
func (r *recorder) waitFor(t *testing.T, timeout time.Duration, what string, done func([]streamer.Message) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, n, changed := done(r.accepted), len(r.accepted), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; %d messages accepted", timeout, what, n)
		}
	}
}

// keys returns n partition keys.
func keys(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return ks
}

// records returns perKey records for each key, interleaving the keys, with
// Data "<key>/<n>" for n from start on.
func records(keys []string, perKey, start int) []streamer.Record {
	var rs []streamer.Record
	for n := start; n < start+perKey; n++ {
		for _, k := range keys {
			rs = append(rs, streamer.Record{PartitionKey: k, Data: fmt.Appendf(nil, "%s/%d", k, n)})
		}
	}
	return rs
}

func appendAll(t *testing.T, s streamer.Stream, recs []streamer.Record) {
	t.Helper()
	if err := s.Append(t.Context(), recs); err != nil {
		t.Fatalf("Append(%d records): %v", len(recs), err)
	}
}

// coversAll reports whether every record's Data is among the messages'.
func coversAll(want []streamer.Record) func([]streamer.Message) bool {
	return func(got []streamer.Message) bool {
		seen := make(map[string]bool, len(got))
		for _, m := range got {
			seen[string(m.Data)] = true
		}
		for _, r := range want {
			if !seen[string(r.Data)] {
				return false
			}
		}
		return true
	}
}

// exactlyOnce checks that got holds each record of want once, with its
// partition key and data, and nothing else. Data identifies a record.
func exactlyOnce(t *testing.T, want []streamer.Record, got []streamer.Message) {
	t.Helper()
	wantKeys := map[string]string{}
	for _, r := range want {
		wantKeys[string(r.Data)] = r.PartitionKey
	}
	gotKeys := map[string]string{}
	var dups []string
	for _, m := range got {
		if _, ok := gotKeys[string(m.Data)]; ok {
			dups = append(dups, string(m.Data))
		}
		gotKeys[string(m.Data)] = m.PartitionKey
	}
	if len(dups) > 0 {
		t.Errorf("delivered more than once: %q", dups)
	}
	if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
		t.Errorf("delivered records, data → partition key (-appended +delivered):\n%s", diff)
	}
}

// dataByKey returns each partition key's data, in order.
func dataByKey[T streamer.Record | streamer.Message](items []T) map[string][]string {
	m := map[string][]string{}
	for _, it := range items {
		var key string
		var d []byte
		switch v := any(it).(type) {
		case streamer.Record:
			key, d = v.PartitionKey, v.Data
		case streamer.Message:
			key, d = v.PartitionKey, v.Data
		}
		m[key] = append(m[key], string(d))
	}
	return m
}

func data(msgs []streamer.Message) []string {
	ds := make([]string, len(msgs))
	for i, m := range msgs {
		ds[i] = string(m.Data)
	}
	return ds
}

// common returns the data of the messages in both a and b.
func common(a, b []streamer.Message) []string {
	in := map[string]bool{}
	for _, m := range a {
		in[string(m.Data)] = true
	}
	var both []string
	for _, m := range b {
		if in[string(m.Data)] {
			both = append(both, string(m.Data))
		}
	}
	return both
}

func dedupe(ds []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range ds {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// outOfOrder returns the index of the first "<key>/<n>" whose n is not
// greater than its predecessor's, or -1.
func outOfOrder(ds []string) int {
	n := func(d string) int {
		v, _ := strconv.Atoi(d[strings.LastIndexByte(d, '/')+1:])
		return v
	}
	for i := 1; i < len(ds); i++ {
		if n(ds[i]) <= n(ds[i-1]) {
			return i
		}
	}
	return -1
}

// seqLess orders two sequences of one shard: numerically when both are
// decimal, as strings otherwise.
// position is a message's place in its shard: (Sequence, Sub).
type position struct {
	seq string
	sub int
}

func posLess(a, b position) bool {
	if a.seq != b.seq {
		return seqLess(a.seq, b.seq)
	}
	return a.sub < b.sub
}

func seqLess(a, b string) bool {
	if isDecimal(a) && isDecimal(b) {
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			return len(a) < len(b)
		}
	}
	return a < b
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
