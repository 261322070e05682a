package propagation_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testclock"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// fakeNodes answers probes from a settable status per node.
type fakeNodes struct {
	mu     sync.Mutex
	status map[string]propagation.NodeStatus // by Node.String()
	errs   map[string]error
	probes int
}

func (f *fakeNodes) set(n string, st propagation.NodeStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[n] = st
}

func (f *fakeNodes) Probe(_ context.Context, n propagation.Node, id string, v int64) (propagation.NodeStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	if err := f.errs[n.String()]; err != nil {
		return propagation.NodeStatus{}, err
	}
	return f.status[n.String()], nil
}

var served = propagation.NodeStatus{ReplicaVersion: 4, FeedVersion: 4, FeedUp: true, Served: true,
	Clients: propagation.ClientCounts{Acknowledged: 2, NotAcking: 1}}

func setup(t *testing.T) (*propagation.Checker, *propagation.Table, *fakeNodes, *testclock.Clock) {
	clk := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	tab := propagation.NewTable(6*time.Second, clk.Now)
	nodes := &fakeNodes{status: map[string]propagation.NodeStatus{}, errs: map[string]error{}}
	for _, n := range []propagation.Node{{Region: "eu-west-1", ID: "a", Addr: "127.0.0.1:1"}, {Region: "eu-west-1", ID: "b"}, {Region: "us-east-1", ID: "a"}} {
		tab.Heartbeat(n)
		nodes.set(n.String(), served)
	}
	return &propagation.Checker{Regions: []string{"eu-west-1", "us-east-1"}, Registry: tab, Prober: nodes}, tab, nodes, clk
}

func TestCheck(t *testing.T) {
	t.Parallel()
	c, tab, nodes, clk := setup(t)
	ctx := testwait.Context(t)
	st, err := c.Check(ctx, "acme", 4)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Done || len(st.Lagging()) != 0 {
		t.Fatalf("all served: done %v, lagging %q", st.Done, st.Lagging())
	}
	eu := st.Regions[0]
	if eu.Region != "eu-west-1" || len(eu.Nodes) != 2 || eu.Nodes[0].ID != "a" || eu.Nodes[0].Addr != "127.0.0.1:1" ||
		eu.Clients != (propagation.ClientCounts{Acknowledged: 4, NotAcking: 2}) || eu.ReplicaVersion != 4 {
		t.Errorf("eu-west-1: %+v", eu)
	}

	// One node's cache is behind, another's clients lag, a third fails.
	nodes.set("eu-west-1/a", propagation.NodeStatus{ReplicaVersion: 4, CachedVersion: 3, FeedVersion: 3, FeedUp: true})
	lagging := served
	lagging.Clients.Lagging = 1
	nodes.set("eu-west-1/b", lagging)
	nodes.errs["us-east-1/a"] = errors.New("connection refused")
	st, err = c.Check(ctx, "acme", 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"eu-west-1/a: cache holds version 3",
		"eu-west-1/b: 1 Watch client(s) not acknowledged",
		"us-east-1/a: not answering: connection refused",
	}
	if diff := cmp.Diff(want, st.Lagging()); st.Done || diff != "" {
		t.Errorf("done %v, lagging (-want +got):\n%s", st.Done, diff)
	}

	// us-east-1's only node stops heartbeating: after the bound it is
	// dropped and reported, and the region has no live node.
	delete(nodes.errs, "us-east-1/a")
	nodes.set("eu-west-1/a", served)
	nodes.set("eu-west-1/b", served)
	clk.Advance(4 * time.Second)
	tab.Heartbeat(propagation.Node{Region: "eu-west-1", ID: "a", Addr: "127.0.0.1:1"})
	tab.Heartbeat(propagation.Node{Region: "eu-west-1", ID: "b"})
	clk.Advance(4 * time.Second)
	st, err = c.Check(ctx, "acme", 4)
	if err != nil {
		t.Fatal(err)
	}
	us := st.Regions[1]
	if st.Done || len(us.Nodes) != 0 || len(us.Dropped) != 1 || us.Dropped[0].ID != "a" || us.Problem != "no live node" {
		t.Errorf("after us-east-1/a stopped: done %v, us-east-1 %+v", st.Done, us)
	}
	if got := st.Lagging(); len(got) != 1 || got[0] != "us-east-1: no live node" {
		t.Errorf("lagging %q", got)
	}
	// Dropped nodes are forgotten after ten bounds.
	clk.Advance(60 * time.Second)
	if _, dropped, _ := tab.Nodes(ctx); len(dropped) != 0 {
		t.Errorf("dropped after ten bounds: %v", dropped)
	}
}

func TestCheckArgs(t *testing.T) {
	t.Parallel()
	c, _, nodes, _ := setup(t)
	for _, tc := range []struct {
		id      string
		version int64
		field   string
	}{{"acme", 0, "version"}, {"acme", -1, "version"}, {"NOT AN ID", 1, "id"}} {
		_, err := c.Check(testwait.Context(t), tc.id, tc.version)
		if tenant.ErrorCode(err) != tenant.Invalid || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Check(%q, %d): %v, want Invalid naming %s", tc.id, tc.version, err, tc.field)
		}
	}
	if nodes.probes != 0 {
		t.Errorf("%d probes for bad input", nodes.probes)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	c, _, nodes, _ := setup(t)
	c.MinPoll, c.MaxPoll = time.Millisecond, 5*time.Millisecond
	nodes.set("eu-west-1/b", propagation.NodeStatus{ReplicaVersion: 3, FeedUp: true})

	// Bounded: not done, the last status names the laggard.
	ctx, cancel := context.WithTimeout(testwait.Context(t), 50*time.Millisecond)
	defer cancel()
	st, err := c.Wait(ctx, "acme", 4)
	if !errors.Is(err, context.DeadlineExceeded) || st.Done {
		t.Fatalf("Wait: done %v, %v; want not done, deadline exceeded", st.Done, err)
	}
	if got := st.Lagging(); len(got) != 1 || got[0] != "eu-west-1/b: replica at version 3" {
		t.Errorf("lagging %q", got)
	}

	// Returns once the node catches up.
	done := make(chan error, 1)
	go func() {
		st, err := c.Wait(testwait.Context(t), "acme", 4)
		if err == nil && !st.Done {
			err = errors.New("Wait returned not done without an error")
		}
		done <- err
	}()
	testwait.For(t, "Wait to probe a few times", func() bool {
		nodes.mu.Lock()
		defer nodes.mu.Unlock()
		return nodes.probes > 30
	})
	select {
	case err := <-done:
		t.Fatalf("Wait returned before the node caught up: %v", err)
	default:
	}
	nodes.set("eu-west-1/b", served)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNoRegions(t *testing.T) {
	t.Parallel()
	c := &propagation.Checker{Registry: propagation.NewTable(0, nil), Prober: &fakeNodes{}}
	st, err := c.Check(testwait.Context(t), "acme", 1)
	if err != nil || st.Done {
		t.Errorf("no node anywhere: done %v, %v; want not done", st.Done, err)
	}
}

// TestWaitPollsSoonAfterProgress: a check that finds the change further on
// (here a node serving it, its clients still to ack) is followed by one
// after MinPoll, not after the doubled pause: the acks a node asks for
// come within milliseconds. Compared with the pause before it, in one run.
func TestWaitPollsSoonAfterProgress(t *testing.T) {
	t.Parallel()
	c, _, nodes, _ := setup(t)
	c.MinPoll, c.MaxPoll = time.Millisecond, time.Hour
	lagging := propagation.NodeStatus{ReplicaVersion: 4, FeedVersion: 4, FeedUp: true, Served: true,
		Clients: propagation.ClientCounts{Lagging: 2}}
	nodes.set("eu-west-1/b", propagation.NodeStatus{ReplicaVersion: 3, FeedUp: true})
	var (
		mu     sync.Mutex
		checks []time.Time
	)
	c.Prober = propagation.ProbeFunc(func(ctx context.Context, n propagation.Node, id string, v int64) (propagation.NodeStatus, error) {
		st, err := nodes.Probe(ctx, n, id, v)
		if n.String() == "eu-west-1/b" {
			mu.Lock()
			checks = append(checks, time.Now())
			switch len(checks) { // what the next check finds
			case 9: // after pauses of 1, 2, … 128 ms; the next is 256 ms
				nodes.set("eu-west-1/b", lagging)
			case 10:
				nodes.set("eu-west-1/b", served)
			}
			mu.Unlock()
		}
		return st, err
	})
	st, err := c.Wait(testwait.Context(t), "acme", 4)
	if err != nil || !st.Done {
		t.Fatalf("Wait: done %v, %v", st.Done, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(checks) != 11 {
		t.Fatalf("%d checks, want 11", len(checks))
	}
	before, after := checks[9].Sub(checks[8]), checks[10].Sub(checks[9])
	if after >= before {
		t.Errorf("pause after the check that found progress %v, before it %v: want it shorter (back to MinPoll)", after, before)
	}
}
