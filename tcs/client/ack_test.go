package client_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// ackNode is a lookup server whose TenantStatus the test reads.
func ackNode(t *testing.T) (*lookup.Server, *fanout.Hub, *boltreplica.Replica, string) {
	t.Helper()
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	hub := fanout.New(fanout.Options{})
	t.Cleanup(func() { hub.Close() })
	srv := lookup.New(lookup.Config{Region: "eu-west-1", Replica: rep, Feed: hub, FeedTimeout: -1, AckGrace: 200 * time.Millisecond})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, lis, lookup.ServeOptions{ShutdownTimeout: time.Second}) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.For(t, "the node to subscribe", func() bool { return hub.Subscribers() == 1 })
	return srv, hub, rep, lis.Addr().String()
}

// TestWatchAcks: a client acks what its Watch stream applied, so its node
// counts it acknowledged for a change it invalidated; a client with acks
// off counts as not acknowledging once the node's grace has passed.
func TestWatchAcks(t *testing.T) {
	t.Parallel()
	srv, hub, rep, addr := ackNode(t)
	ctx := testwait.Context(t)
	acking, err := client.New(ctx, client.WithRegions(addr), client.WithAckInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acking.Close() })
	mute, err := client.New(ctx, client.WithRegions(addr), client.WithAckInterval(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	testwait.For(t, "both clients to watch", func() bool { return acking.Watching() && mute.Watching() })

	status := func() lookup.ClientCounts {
		st, err := srv.TenantStatus(ctx, "acme", 2)
		if err != nil {
			t.Fatal(err)
		}
		return st.Clients
	}
	for v := int64(1); v <= 2; v++ {
		ev := replicatest.Event("acme", v, map[string]int64{"acme.example.com": 1}, nil)
		res, err := rep.Apply(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := hub.Broadcast(ctx, tcs.Invalidation{TenantID: "acme", Version: v, Hostnames: res.Hostnames}); err != nil {
			t.Fatal(err)
		}
	}
	want := lookup.ClientCounts{Acknowledged: 1, NotAcking: 1}
	testwait.For(t, "the acking client to be acknowledged and the other not acking", func() bool { return status() == want })
}

// TestAckOnRequest: a client whose ack interval has not passed acks a
// change as soon as its node, asked for the change's status, finds it
// lagging and asks it to (ack_now); without that request it would not ack
// for an hour.
func TestAckOnRequest(t *testing.T) {
	t.Parallel()
	srv, hub, rep, addr := ackNode(t)
	ctx := testwait.Context(t)
	c, err := client.New(ctx, client.WithRegions(addr), client.WithAckInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testwait.For(t, "the client to watch", c.Watching)
	status := func(v int64) lookup.ClientCounts {
		st, err := srv.TenantStatus(ctx, "acme", v)
		if err != nil {
			t.Fatal(err)
		}
		return st.Clients
	}
	apply := func(v int64) []string {
		res, err := rep.Apply(ctx, replicatest.Event("acme", v, map[string]int64{"acme.example.com": 1}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return res.Hostnames
	}
	// Its first ack (of the Resync) goes at once, and covers v1, in the
	// replica but never invalidated (a node counts clients lagging for a
	// version it has not reached itself).
	hostnames := apply(1)
	testwait.For(t, "the Resync's ack", func() bool { return status(1) == lookup.ClientCounts{Acknowledged: 1} })
	for v := int64(1); v <= 2; v++ {
		if v > 1 {
			hostnames = apply(v)
		}
		if err := hub.Broadcast(ctx, tcs.Invalidation{TenantID: "acme", Version: v, Hostnames: hostnames}); err != nil {
			t.Fatal(err)
		}
		// Each status call that finds it lagging asks it to ack.
		testwait.For(t, "the client to ack when asked", func() bool { return status(v) == lookup.ClientCounts{Acknowledged: 1} })
	}
}

// TestAckAcceptedHeader ties the header the client waits for to the one
// the node sends.
func TestAckAcceptedHeader(t *testing.T) {
	t.Parallel()
	if client.AckAcceptedHeader != lookup.AckAcceptedHeader {
		t.Errorf("client waits for %q, node sends %q", client.AckAcceptedHeader, lookup.AckAcceptedHeader)
	}
}
