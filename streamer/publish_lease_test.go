package streamer_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// fakeLeases is a ShardLeases a test grants and revokes by hand.
type fakeLeases struct {
	mu     sync.Mutex
	epochs map[int]uint64
	kept   atomic.Bool // Keep is running
}

func (f *fakeLeases) Keep(ctx context.Context) error {
	f.kept.Store(true)
	defer f.kept.Store(false)
	<-ctx.Done()
	return nil
}

func (f *fakeLeases) Held() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var held []int
	for sh := range f.epochs {
		held = append(held, sh)
	}
	slices.Sort(held)
	return held
}

func (f *fakeLeases) Epoch(shard int) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.epochs[shard]
	return e, ok
}

func (f *fakeLeases) set(shard int, epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch == 0 {
		delete(f.epochs, shard)
		return
	}
	f.epochs[shard] = epoch
}

// keyStream records the partition keys appended; Append fails while down.
type keyStream struct {
	streamer.Stream
	down  atomic.Bool
	calls atomic.Int64
	mu    sync.Mutex
	keys  []string
}

func (s *keyStream) Append(_ context.Context, records []streamer.Record) error {
	s.calls.Add(1)
	if s.down.Load() {
		return errors.New("stream down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range records {
		s.keys = append(s.keys, r.PartitionKey)
	}
	return nil
}

func (s *keyStream) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.keys {
		if k == key {
			n++
		}
	}
	return n
}

func (o *pollOutbox) ackedUpTo(shard int) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.acked[shard]
}

// TestPublisherPublishesHeldShardsOnly: a publisher sharing the outbox
// reads, appends and acknowledges only the shards it holds a lease of; one
// whose lease it lost between reading and appending is neither appended nor
// acknowledged (fencing), and once held again (a new epoch) it is read from
// its first entry not acknowledged.
func TestPublisherPublishesHeldShardsOnly(t *testing.T) {
	t.Parallel()
	o := &pollOutbox{shards: 4}
	s := &keyStream{}
	leases := &fakeLeases{epochs: map[int]uint64{0: 1, 1: 1}}
	put := func(shard int, seq uint64, tenant string) {
		ev := replicatest.Event(tenant, int64(seq), map[string]int64{tenant + ".example.com": int64(seq)}, nil)
		o.put(catalog.OutboxEntry{Shard: shard, Seq: seq, Event: *ev})
	}
	for sh, tenant := range []string{"t0", "t1", "t2", "t3"} {
		put(sh, 1, tenant)
	}
	p := streamer.NewPublisher(streamer.PublisherConfig{Outbox: o, Stream: s, Leases: leases, RetryBackoff: time.Millisecond, PollInterval: time.Millisecond, MaxPollInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	testwait.Within(t, 5*time.Second, "the held shards 0 and 1 to be appended and acknowledged", func() bool {
		return s.count("t0") == 1 && s.count("t1") == 1 && o.ackedUpTo(0) == 1 && o.ackedUpTo(1) == 1
	})
	if s.count("t2")+s.count("t3") != 0 || o.ackedUpTo(2)+o.ackedUpTo(3) != 0 {
		t.Fatalf("shards not held were published: t2 %d, t3 %d appended, acked up to %d, %d", s.count("t2"), s.count("t3"), o.ackedUpTo(2), o.ackedUpTo(3))
	}

	// Shard 1's lease is lost while its next entry is read and its append
	// failing: it must not be appended (nor acknowledged) once the stream
	// heals.
	s.down.Store(true)
	calls := s.calls.Load()
	put(1, 2, "t1")
	testwait.Within(t, 5*time.Second, "the append of shard 1's new entry to be tried", func() bool { return s.calls.Load() > calls })
	leases.set(1, 0)
	s.down.Store(false)
	put(0, 2, "t0")
	testwait.Within(t, 5*time.Second, "shard 0's new entry to be appended and acknowledged", func() bool {
		return s.count("t0") == 2 && o.ackedUpTo(0) == 2
	})
	if n, acked := s.count("t1"), o.ackedUpTo(1); n != 1 || acked != 1 {
		t.Fatalf("after shard 1's lease was lost: t1 appended %d times (want 1), acked up to %d (want 1)", n, acked)
	}

	// Held again under a new epoch: its entry is published now.
	leases.set(1, 2)
	testwait.Within(t, 5*time.Second, "shard 1's entry to be published once its lease is held again", func() bool {
		return s.count("t1") == 2 && o.ackedUpTo(1) == 2
	})
	if !leases.kept.Load() {
		t.Error("Run does not keep its leases")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if leases.kept.Load() {
		t.Error("Keep still runs after Run returned")
	}
}
