package testnet

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// LatencyProxy is an HTTP reverse proxy on loopback that holds every request
// for a fixed delay before forwarding it: a remote service (DynamoDB, a few
// milliseconds a call) in front of a local emulator that answers in
// microseconds. Requests are held concurrently, so, as with the real
// service, the delay bounds each caller's rate, not the proxy's. It counts
// the requests by their X-Amz-Target operation, for benchmarks to report
// calls per write.
type LatencyProxy struct {
	delay time.Duration
	srv   *http.Server
	ln    net.Listener

	mu    sync.Mutex
	calls map[string]int64
}

// NewLatencyProxy starts a LatencyProxy to upstream (an http:// URL) that
// delays each request by delay (0: none). It is closed when tb's test ends.
func NewLatencyProxy(tb testing.TB, upstream string, delay time.Duration) *LatencyProxy {
	tb.Helper()
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		tb.Fatalf("latency proxy upstream %q: want an http:// URL", upstream)
	}
	if delay < 0 {
		tb.Fatalf("latency proxy delay %v: want 0 or more", delay)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &LatencyProxy{delay: delay, ln: ln, calls: map[string]int64{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	// The default transport keeps two idle connections per host: with more
	// callers than that it would dial anew for most requests.
	rp.Transport = &http.Transport{Proxy: nil, MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() != nil {
			return // the caller gave up (its deadline): nobody reads an answer
		}
		http.Error(w, "latency proxy: "+err.Error(), http.StatusBadGateway)
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if op == "" {
			op = r.Method
		}
		p.mu.Lock()
		p.calls[op]++
		p.mu.Unlock()
		if p.delay > 0 {
			t := time.NewTimer(p.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.srv.Serve(ln) // returns when Close closes the listener
	}()
	tb.Cleanup(func() {
		p.srv.Close()
		<-done
	})
	return p
}

// URL is the proxy's base URL, http://127.0.0.1:port.
func (p *LatencyProxy) URL() string { return "http://" + p.ln.Addr().String() }

// Calls returns how many requests the proxy has received, by X-Amz-Target
// operation (the HTTP method for requests without one).
func (p *LatencyProxy) Calls() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.calls)
}

// ResetCalls zeroes the counts Calls returns.
func (p *LatencyProxy) ResetCalls() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.calls)
}

// String describes the proxy, for logs.
func (p *LatencyProxy) String() string {
	return fmt.Sprintf("latency proxy %s (+%v a request)", p.URL(), p.delay)
}
