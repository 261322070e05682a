package client_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	c, err := client.New(ctxT(t), client.WithRegions(p.lis.Addr().String()),
		client.WithMetrics(client.Hooks{WatchState: func(_ string, up bool) {
			if !up {
				downs.inc()
			}
		}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitFor(t, "the watch stream", c.Watching)
	time.Sleep(300 * time.Millisecond) // a heartbeat has told the client the interval

	p.frozen.Store(true)
	frozeAt := time.Now()
	waitFor(t, "the client to notice the silence", func() bool { return !c.Watching() })
	if took := time.Since(frozeAt); took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("noticed a silent stream after %v; want about three heartbeat intervals (300ms)", took)
	}
	p.frozen.Store(false)
	waitFor(t, "the stream back", c.Watching)
	if downs.get() != 1 {
		t.Errorf("%d watch losses, want 1", downs.get())
	}
}
