package publease_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer/kinesis"
	"github.com/tcs-dev/tcs/streamer/publease"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// killable is a DynamoDB client that can be cut off, as a publisher killed
// with -9 (or partitioned from the table) is: it stops writing.
type killable struct {
	publease.API
	dead atomic.Bool
	// delay slows every UpdateItem (a table under load); inflight and
	// most count the UpdateItems in flight now and at most.
	delay          time.Duration
	inflight, most atomic.Int64
}

var errDead = errors.New("killed")

func (k *killable) Query(ctx context.Context, in *dynamodb.QueryInput, o ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	return k.API.Query(ctx, in, o...)
}

func (k *killable) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	n := k.inflight.Add(1)
	defer k.inflight.Add(-1)
	for m := k.most.Load(); n > m && !k.most.CompareAndSwap(m, n); m = k.most.Load() {
	}
	time.Sleep(k.delay)
	return k.API.UpdateItem(ctx, in, o...)
}

type publisher struct {
	name   string
	leases *publease.Leases
	db     *killable
	reg    *prometheus.Registry
	stop   context.CancelFunc
	done   chan struct{}
}

const shards = 8

func start(t *testing.T, table, name string, lease time.Duration) *publisher {
	t.Helper()
	return startSlow(t, table, name, lease, 0)
}

// startSlow is start with every UpdateItem delayed.
func startSlow(t *testing.T, table, name string, lease, delay time.Duration) *publisher {
	t.Helper()
	db := &killable{API: emulators.SharedDynamoDBClient(t), delay: delay}
	reg := prometheus.NewRegistry()
	l, err := publease.Open(t.Context(), db, table, name, publease.Config{Shards: shards, LeaseDuration: lease, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{name: name, leases: l, db: db, reg: reg, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_ = l.Keep(ctx)
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

func newTable(t *testing.T) string {
	t.Helper()
	name := emulators.Name("publease")
	if err := kinesis.CreateLeaseTable(t.Context(), emulators.SharedDynamoDBClient(t), name); err != nil {
		t.Fatal(err)
	}
	return name
}

// disjoint reports whether no shard is held by two publishers, and returns
// how many each holds.
func held(ps ...*publisher) (counts []int, disjoint bool) {
	seen := map[int]bool{}
	disjoint = true
	for _, p := range ps {
		h := p.leases.Held()
		counts = append(counts, len(h))
		for _, sh := range h {
			if seen[sh] {
				disjoint = false
			}
			seen[sh] = true
		}
	}
	return counts, disjoint
}

// TestShareAndTakeOver: a second publisher gets half the shards from the
// first (steal requests); once one is cut off, the other takes all its
// shards within about the lease duration, and the cut-off one stops using
// them before that (fencing). A clean stop hands the shards over at once.
func TestShareAndTakeOver(t *testing.T) {
	t.Parallel()
	const lease = 2 * time.Second
	table := newTable(t)
	a := start(t, table, "a", lease)
	testwait.Within(t, 10*time.Second, "a to hold every shard", func() bool {
		c, _ := held(a)
		return c[0] == shards
	})
	b := start(t, table, "b", lease)
	testwait.Within(t, 20*time.Second, "a and b to hold half the shards each, never one shard both", func() bool {
		c, ok := held(a, b)
		if !ok {
			t.Fatalf("a shard held by both: a %v, b %v", a.leases.Held(), b.leases.Held())
		}
		return c[0] == shards/2 && c[1] == shards/2
	})
	if n := events(t, b.reg, "steal_request"); n < 1 {
		t.Errorf("b made %v steal requests, want at least 1", n)
	}

	// Cut a off: its leases lapse for it before b may take them.
	a.db.dead.Store(true)
	killed := time.Now()
	testwait.Within(t, lease, "a to stop using its shards (fenced) within the lease duration", func() bool {
		return len(a.leases.Held()) == 0
	})
	testwait.Within(t, 10*lease, "b to take over every shard", func() bool {
		c, ok := held(a, b)
		if !ok {
			t.Fatalf("a shard held by both: a %v, b %v", a.leases.Held(), b.leases.Held())
		}
		return c[1] == shards
	})
	if took := time.Since(killed); took < lease*8/10 {
		t.Errorf("b took a's shards %v after a stopped renewing, before the lease duration %v", took, lease)
	}
	if n := events(t, b.reg, "takeover"); n != shards/2 {
		t.Errorf("b took over %v leases, want %d", n, shards/2)
	}

	// A clean stop releases: c gets b's shards without waiting for expiry.
	c := start(t, table, "c", time.Minute)
	b.stop()
	<-b.done
	testwait.Within(t, 10*time.Second, "c to hold every shard after b's clean stop (not a minute later)", func() bool {
		n, _ := held(c)
		return n[0] == shards
	})
	if n := events(t, c.reg, "takeover"); n != 0 {
		t.Errorf("c took over %v expired leases, want 0 (released)", n)
	}
}

// events returns tcs_publish_lease_events_total{event} of reg.
func events(t *testing.T, reg *prometheus.Registry, event string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "tcs_publish_lease_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "event" && l.GetValue() == event {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no tcs_publish_lease_events_total{event=%q}", event)
	return 0
}

// TestEpochChangesWithEveryTake: an entry read under one holding is never
// appended under another, nor after a lapse (the publisher may have dropped
// entries read under it: a new epoch makes it read the shard again from its
// first entry not acknowledged), nor after another publisher held it.
func TestEpochChangesWithEveryTake(t *testing.T) {
	t.Parallel()
	const lease = 2 * time.Second
	table := newTable(t)
	a := start(t, table, "a", lease)
	testwait.Within(t, 10*time.Second, "a to hold every shard", func() bool { return len(a.leases.Held()) == shards })
	e1, ok := a.leases.Epoch(0)
	if !ok {
		t.Fatal("a holds shard 0 but Epoch says not")
	}
	a.db.dead.Store(true)
	testwait.Within(t, lease, "a's leases to lapse", func() bool { return len(a.leases.Held()) == 0 })
	if _, ok := a.leases.Epoch(0); ok {
		t.Fatal("Epoch says a still holds shard 0 after its lease lapsed")
	}
	a.db.dead.Store(false)
	testwait.Within(t, 10*time.Second, "a to hold every shard again", func() bool { return len(a.leases.Held()) == shards })
	e2, ok := a.leases.Epoch(0)
	if !ok || e2 == e1 {
		t.Errorf("epoch of shard 0 renewed after a lapse: %d, %v; want held, not %d", e2, ok, e1)
	}
	if n := events(t, a.reg, "lost"); n != 0 {
		t.Errorf("a counted %v lost leases after a lapse nobody used, want 0", n)
	}

	a.db.dead.Store(true)
	b := start(t, table, "b", lease)
	testwait.Within(t, 10*lease, "b to take over every shard", func() bool { return len(b.leases.Held()) == shards })
	b.stop()
	<-b.done
	a.db.dead.Store(false)
	testwait.Within(t, 10*time.Second, "a to hold every shard once more", func() bool { return len(a.leases.Held()) == shards })
	if e, ok := a.leases.Epoch(0); !ok || e == e2 {
		t.Errorf("epoch of shard 0 after b held it: %d, %v; want held, not %d", e, ok, e2)
	}
	if n := events(t, a.reg, "lost"); n != shards {
		t.Errorf("a counted %v lost leases, want %d", n, shards)
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	db := emulators.SharedDynamoDBClient(t)
	if _, err := publease.Open(t.Context(), db, emulators.Name("missing"), "a", publease.Config{Shards: 4}); err == nil || !strings.Contains(err.Error(), "does not exist: create it with tcsctl infra apply") {
		t.Errorf("Open of a missing table = %v", err)
	}
	table := newTable(t)
	for _, c := range []struct {
		owner string
		cfg   publease.Config
		want  string
	}{
		{"", publease.Config{Shards: 4}, "no owner"},
		{"a", publease.Config{Shards: 0}, "0 outbox shards"},
		{"a", publease.Config{Shards: 4, LeaseDuration: -time.Second}, "lease duration -1s"},
	} {
		if _, err := publease.Open(t.Context(), db, table, c.owner, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(owner %q, %+v) = %v, want an error containing %q", c.owner, c.cfg, err, c.want)
		}
	}
}

// TestRestartUnderTheSameNameAdopts: a publisher killed and started again
// under the same name (streamer publish --worker-id) takes its leases back
// at its first scan, without waiting for them to expire.
func TestRestartUnderTheSameNameAdopts(t *testing.T) {
	t.Parallel()
	const lease = time.Minute
	table := newTable(t)
	a := start(t, table, "a", lease)
	testwait.Within(t, 10*time.Second, "a to hold every shard", func() bool { return len(a.leases.Held()) == shards })
	a.db.dead.Store(true) // killed: it cannot release
	a.stop()
	<-a.done
	again := start(t, table, "a", lease)
	testwait.Within(t, 10*time.Second, "a, restarted, to hold every shard again (well before the 1m lease duration)", func() bool {
		return len(again.leases.Held()) == shards
	})
	if n := events(t, again.reg, "takeover"); n != 0 {
		t.Errorf("the restarted publisher counted %v takeovers, want 0 (adopted)", n)
	}
}

// TestLeaseWritesOverlap: a publisher takes, renews and adopts its leases
// several at a time, not one after another (64 shards on a table answering
// in 50 ms took 3.2 s to adopt after a restart), and never more than 8 at
// once.
func TestLeaseWritesOverlap(t *testing.T) {
	t.Parallel()
	const lease = time.Minute
	table := newTable(t)
	a := startSlow(t, table, "a", lease, 20*time.Millisecond)
	testwait.Within(t, 10*time.Second, "a to hold every shard", func() bool { return len(a.leases.Held()) == shards })
	if m := a.db.most.Load(); m < 2 || m > 8 {
		t.Errorf("taking %d leases: at most %d UpdateItems in flight at once, want 2 to 8", shards, m)
	}
	a.db.dead.Store(true) // killed: it cannot release
	a.stop()
	<-a.done
	again := startSlow(t, table, "a", lease, 20*time.Millisecond)
	testwait.Within(t, 10*time.Second, "a, restarted, to adopt every shard", func() bool { return len(again.leases.Held()) == shards })
	if m := again.db.most.Load(); m < 2 || m > 8 {
		t.Errorf("adopting %d leases: at most %d UpdateItems in flight at once, want 2 to 8", shards, m)
	}
}
