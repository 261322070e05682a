package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testnet"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
)

func TestWatchHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1") // heartbeats every 100 ms
	p := testnet.NewFreezer(t, r.addr)
	var downs counter
	c, err := client.New(testwait.Context(t), client.WithRegions(p.Addr()),
		client.WithMetrics(client.Hooks{WatchState: func(_ string, up bool) {
			if !up {
				downs.inc()
			}
		}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testwait.For(t, "the watch stream", c.Watching)
	testwait.For(t, "a heartbeat to tell the client the interval", func() bool {
		return client.SilenceTimeout(c) == 300*time.Millisecond
	})

	p.Freeze()
	frozeAt := time.Now()
	testwait.For(t, "the client to notice the silence", func() bool { return !c.Watching() })
	// The silence is counted from the last message received, up to one
	// interval (100 ms) before the freeze: 200 to 300 ms after it.
	if took := time.Since(frozeAt); took < 150*time.Millisecond || took > 3*time.Second {
		t.Errorf("noticed a silent stream after %v; want about three heartbeat intervals (300ms) after the last message", took)
	}
	p.Thaw()
	testwait.For(t, "the stream back", c.Watching)
	if downs.get() != 1 {
		t.Errorf("%d watch losses, want 1", downs.get())
	}
}

// TestKeepaliveNoticesDeadPath: a region whose network path goes silent (no
// FIN, no RST) is noticed by the connection's keepalive pings, so a lookup
// in flight fails over long before its deadline instead of waiting for it.
// It takes gRPC's smallest keepalive interval, 10 s.
func TestKeepaliveNoticesDeadPath(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits out gRPC keepalive timeouts (about 10 s)")
	}
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	p := testnet.NewFreezer(t, r.addr)
	c, err := client.New(testwait.Context(t), client.WithRegions(p.Addr()),
		client.WithKeepalive(10*time.Second, 500*time.Millisecond),
		client.WithLookupTimeout(time.Minute), client.WithHedgeDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testwait.For(t, "the watch stream", c.Watching)

	p.Freeze()
	start := time.Now()
	_, err = c.Lookup(testwait.Context(t), "acme.example.com")
	took := time.Since(start)
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("lookup over a dead path: %v, want ErrUnavailable", err)
	}
	if took > 20*time.Second {
		t.Errorf("lookup over a dead path failed after %v; want about the keepalive interval and timeout (10.5s)", took)
	}
	if r.lookups.Load() != 0 {
		t.Errorf("the region got %d lookups through a frozen path", r.lookups.Load())
	}
}
