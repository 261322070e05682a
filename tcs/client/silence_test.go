package client_test

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
)

// freezer is a TCP proxy that can stop forwarding bytes without closing
// anything: a network path that went silent.
type freezer struct {
	lis    net.Listener
	frozen atomic.Bool
}

func startFreezer(tb testing.TB, target string) *freezer {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &freezer{lis: lis}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		f.frozen.Store(false) // let the pipes see their connections closed
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Go(func() { f.pipe(out, in) })
			wg.Go(func() { f.pipe(in, out) })
		}
	})
	return f
}

// pipe copies src to dst, holding what it read while frozen.
func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for f.frozen.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestWatchHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1") // heartbeats every 100 ms
	p := startFreezer(t, r.addr)
	var downs counter
	c, err := client.New(testwait.Context(t), client.WithRegions(p.lis.Addr().String()),
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

	p.frozen.Store(true)
	frozeAt := time.Now()
	testwait.For(t, "the client to notice the silence", func() bool { return !c.Watching() })
	// The silence is counted from the last message received, up to one
	// interval (100 ms) before the freeze: 200 to 300 ms after it.
	if took := time.Since(frozeAt); took < 150*time.Millisecond || took > 3*time.Second {
		t.Errorf("noticed a silent stream after %v; want about three heartbeat intervals (300ms) after the last message", took)
	}
	p.frozen.Store(false)
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
	p := startFreezer(t, r.addr)
	c, err := client.New(testwait.Context(t), client.WithRegions(p.lis.Addr().String()),
		client.WithKeepalive(10*time.Second, 500*time.Millisecond),
		client.WithLookupTimeout(time.Minute), client.WithHedgeDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testwait.For(t, "the watch stream", c.Watching)

	p.frozen.Store(true)
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
