// Package feedtest is the conformance suite of the invalidation broadcast:
// every pair of tcs.Broadcaster and tcs.Feed (the in-process fanout.Hub, the
// SNS topic with per-node SQS queues) runs Run.
//
// The contract it checks is the one lookup servers rely on: every
// invalidation broadcast while a subscriber is subscribed reaches it intact
// (or the subscriber is told of a gap), possibly duplicated or out of order;
// so does a heartbeat (an Invalidation with no tenant and no hostnames, see
// tcs.Invalidation.Heartbeat), as a heartbeat with its CommittedAt; deliver
// and gap are never called concurrently; and Subscribe returns nil once its
// context ends.
package feedtest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/tcs"
)

// Pair is one region's broadcast: a Broadcaster and a way to make the Feed
// of a new subscriber (a lookup server).
type Pair struct {
	Broadcaster tcs.Broadcaster
	// NewFeed returns the Feed a new subscriber subscribes with.
	NewFeed func(t *testing.T) tcs.Feed
	// Timeout bounds how long one delivery may take; zero means 10 s.
	Timeout time.Duration
}

// Run runs the suite. open returns a fresh, independent region each call.
func Run(t *testing.T, open func(t *testing.T) Pair) {
	t.Run("EverySubscriberReceivesEveryInvalidation", func(t *testing.T) {
		t.Parallel()
		testEverySubscriber(t, open(t))
	})
	t.Run("ContentIntact", func(t *testing.T) {
		t.Parallel()
		testContent(t, open(t))
	})
	t.Run("HeartbeatsDelivered", func(t *testing.T) {
		t.Parallel()
		testHeartbeat(t, open(t))
	})
	t.Run("SubscribeReturnsNilWhenCancelled", func(t *testing.T) {
		t.Parallel()
		testCancel(t, open(t))
	})
	t.Run("RegionsAreSeparate", func(t *testing.T) {
		t.Parallel()
		testSeparate(t, open(t), open(t))
	})
}

// sub is one running Subscribe, recording what it receives.
type sub struct {
	mu      sync.Mutex
	got     []tcs.Invalidation
	gaps    int
	inside  atomic.Int32 // deliver or gap running
	overlap atomic.Bool
	done    chan error
	cancel  context.CancelFunc
}

func subscribe(t *testing.T, f tcs.Feed) *sub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &sub{done: make(chan error, 1), cancel: cancel}
	enter := func() {
		if s.inside.Add(1) != 1 {
			s.overlap.Store(true)
		}
	}
	leave := func() { s.inside.Add(-1) }
	go func() {
		s.done <- f.Subscribe(ctx, func(inv tcs.Invalidation) {
			enter()
			defer leave()
			s.mu.Lock()
			s.got = append(s.got, inv)
			s.mu.Unlock()
		}, func() {
			enter()
			defer leave()
			s.mu.Lock()
			s.gaps++
			s.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("Subscribe did not return within 30s of its context ending")
		}
		if s.overlap.Load() {
			t.Error("deliver and gap ran concurrently")
		}
	})
	return s
}

func (s *sub) received() []tcs.Invalidation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *sub) has(tenantID string, version int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, inv := range s.got {
		if inv.TenantID == tenantID && inv.Version == version {
			return true
		}
	}
	return false
}

func timeout(p Pair) time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return 10 * time.Second
}

// ready broadcasts probe invalidations until every subscriber has received
// one: a subscription may take effect a while after Subscribe started (an
// SQS queue is created and subscribed first).
func ready(t *testing.T, p Pair, subs ...*sub) {
	t.Helper()
	deadline := time.Now().Add(3 * timeout(p))
	for v := int64(1); ; v++ {
		if err := p.Broadcaster.Broadcast(context.Background(), tcs.Invalidation{TenantID: "probe", Version: v, Hostnames: []string{"probe.example.com"}}); err != nil {
			t.Fatalf("Broadcast probe: %v", err)
		}
		wait := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(wait) {
			all := true
			for _, s := range subs {
				all = all && s.has("probe", v)
			}
			if all {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscribers did not receive a probe invalidation within %v", 3*timeout(p))
		}
	}
}

// waitFor waits until s has received every (tenant, version) in want.
func waitFor(t *testing.T, p Pair, s *sub, name string, want []tcs.Invalidation) {
	t.Helper()
	deadline := time.Now().Add(timeout(p))
	for {
		missing := 0
		for _, w := range want {
			if !s.has(w.TenantID, w.Version) {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d invalidations not delivered within %v (gaps reported: %d)", name, missing, len(want), timeout(p), s.gaps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func invalidations(tenant string, n int) []tcs.Invalidation {
	var out []tcs.Invalidation
	for i := 1; i <= n; i++ {
		out = append(out, tcs.Invalidation{
			TenantID:    tenant,
			Version:     int64(i),
			Hostnames:   []string{fmt.Sprintf("%s-%d.example.com", tenant, i), tenant + ".example.com"},
			CommittedAt: time.Date(2026, 11, 27, 12, 0, i, 123_000_000, time.UTC),
		})
	}
	return out
}

func broadcastAll(t *testing.T, p Pair, invs []tcs.Invalidation) {
	t.Helper()
	for _, inv := range invs {
		if err := p.Broadcaster.Broadcast(context.Background(), inv); err != nil {
			t.Fatalf("Broadcast %s@%d: %v", inv.TenantID, inv.Version, err)
		}
	}
}

func testEverySubscriber(t *testing.T, p Pair) {
	a, b := subscribe(t, p.NewFeed(t)), subscribe(t, p.NewFeed(t))
	ready(t, p, a, b)
	want := invalidations("acme", 20)
	broadcastAll(t, p, want)
	waitFor(t, p, a, "first subscriber", want)
	waitFor(t, p, b, "second subscriber", want)
}

func testContent(t *testing.T, p Pair) {
	s := subscribe(t, p.NewFeed(t))
	ready(t, p, s)
	want := invalidations("globex", 3)
	want[2].Hostnames = nil // a tenant without hostnames left (deleted)
	broadcastAll(t, p, want)
	waitFor(t, p, s, "subscriber", want)
	var got []tcs.Invalidation
	for _, inv := range s.received() {
		if inv.TenantID == "globex" && !slices.ContainsFunc(got, func(g tcs.Invalidation) bool { return g.Version == inv.Version }) {
			got = append(got, inv)
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Version < got[j].Version })
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
		cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) })); diff != "" {
		t.Errorf("delivered invalidations (-broadcast +delivered):\n%s", diff)
	}
}

func testHeartbeat(t *testing.T, p Pair) {
	s := subscribe(t, p.NewFeed(t))
	ready(t, p, s)
	at := time.Date(2026, 11, 27, 12, 0, 0, 456_000_000, time.UTC)
	if err := p.Broadcaster.Broadcast(context.Background(), tcs.Invalidation{CommittedAt: at}); err != nil {
		t.Fatalf("Broadcast heartbeat: %v", err)
	}
	heartbeats := func() (out []tcs.Invalidation) {
		for _, inv := range s.received() {
			if inv.TenantID == "" {
				out = append(out, inv)
			}
		}
		return out
	}
	deadline := time.Now().Add(timeout(p))
	for len(heartbeats()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat not delivered within %v (gaps reported: %d)", timeout(p), s.gaps)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, hb := range heartbeats() {
		if !hb.Heartbeat() || hb.Version != 0 || !hb.CommittedAt.Equal(at) {
			t.Errorf("delivered %+v, want a heartbeat (no tenant, version or hostnames) committed at %v", hb, at)
		}
	}
}

func testCancel(t *testing.T, p Pair) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	f := p.NewFeed(t)
	go func() { done <- f.Subscribe(ctx, func(tcs.Invalidation) {}, func() {}) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Subscribe after its context ended = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Subscribe did not return within 30s of its context ending")
	}
}

func testSeparate(t *testing.T, p, other Pair) {
	s, o := subscribe(t, p.NewFeed(t)), subscribe(t, other.NewFeed(t))
	ready(t, p, s)
	ready(t, other, o)
	want := invalidations("initech", 2)
	broadcastAll(t, p, want)
	waitFor(t, p, s, "subscriber", want)
	// Give the other region's delivery a moment to go wrong.
	time.Sleep(200 * time.Millisecond)
	for _, inv := range o.received() {
		if inv.TenantID == "initech" {
			t.Fatalf("a subscriber of another region received %s@%d", inv.TenantID, inv.Version)
		}
	}
}
