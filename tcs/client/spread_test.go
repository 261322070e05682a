package client_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"

	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// spreadNode is a real lookup node of a region served by several, on its
// own loopback port, counting the Lookup calls it serves.
type spreadNode struct {
	name   string
	addr   string
	calls  atomic.Int64
	cancel context.CancelFunc
	served chan error // Serve's result
}

// startSpreadNode serves rep on a free loopback port, closing connections
// after age (and cutting them off age later); it stops at the end of the
// test if it has not been drained.
func startSpreadNode(tb testing.TB, name string, rep tcs.Replica, age time.Duration) *spreadNode {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hub := fanout.New(fanout.Options{})
	tb.Cleanup(func() { hub.Close() })
	n := &spreadNode{name: name, addr: lis.Addr().String(), served: make(chan error, 1)}
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == tcsv1.TenantContextService_Lookup_FullMethodName {
			n.calls.Add(1)
		}
		return handler(ctx, req)
	}
	srv := lookup.New(lookup.Config{Region: "spread-1", Replica: rep, Feed: hub, HeartbeatInterval: 100 * time.Millisecond})
	var ctx context.Context
	ctx, n.cancel = context.WithCancel(context.Background())
	go func() {
		n.served <- srv.Serve(ctx, lis, lookup.ServeOptions{
			ShutdownTimeout: 5 * time.Second,
			Keepalive:       keepalive.ServerParameters{MaxConnectionAge: age, MaxConnectionAgeGrace: age},
			ServerOptions:   []grpc.ServerOption{grpc.ChainUnaryInterceptor(count)},
		})
	}()
	tb.Cleanup(func() { n.drain(tb) })
	waitServing(tb, name, hub, n.addr, insecure.NewCredentials())
	return n
}

// drain stops the node as a Kubernetes pod stops on SIGTERM: NOT_SERVING,
// GOAWAY, calls in flight finish (GracefulStop). It returns once Serve has
// returned; a second drain does nothing.
func (n *spreadNode) drain(tb testing.TB) {
	tb.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.served:
		if err != nil {
			tb.Errorf("%s Serve: %v", n.name, err)
		}
	case <-time.After(20 * time.Second):
		tb.Errorf("%s did not stop within 20 s", n.name)
	}
}

// names is what a resolver of scheme answers for any name: a list of
// addresses that can change without the resolver telling its clients, as
// a DNS name's records do. A client learns the current list when it builds
// the resolver and when it asks for a resolution (ResolveNow), which a
// gRPC client does whenever it loses a connection.
type names struct {
	scheme string

	mu          sync.Mutex
	addrs       []string
	resolutions int // ResolveNow calls answered
}

func (ns *names) set(nodes ...*spreadNode) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.addrs = ns.addrs[:0]
	for _, n := range nodes {
		ns.addrs = append(ns.addrs, n.addr)
	}
}

func (ns *names) state() resolver.State {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var s resolver.State
	for _, a := range ns.addrs {
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
	}
	return s
}

func (ns *names) resolved() int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.resolutions
}

func (ns *names) Scheme() string { return ns.scheme }

func (ns *names) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	r := &nameResolver{ns: ns, now: make(chan struct{}, 1), done: make(chan struct{})}
	if err := cc.UpdateState(ns.state()); err != nil {
		return nil, err
	}
	// Resolutions are answered from a goroutine of their own, in order: a
	// resolver must not call back into the ClientConn from ResolveNow.
	r.wg.Go(func() {
		for {
			select {
			case <-r.done:
				return
			case <-r.now:
			}
			ns.mu.Lock()
			ns.resolutions++
			ns.mu.Unlock()
			_ = cc.UpdateState(ns.state()) // an error would ask for another resolution: the next lost connection does
		}
	})
	return r, nil
}

type nameResolver struct {
	ns   *names
	now  chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func (r *nameResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default: // one is pending
	}
}

func (r *nameResolver) Close() {
	close(r.done)
	r.wg.Wait()
}

// spreadLoad runs lookups through c from workers goroutines until stop,
// counting failures; hostnames must be at least as many as workers.
type spreadLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   error
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

func startLoad(c *client.Client, workers int, hostnames []string) *spreadLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &spreadLoad{stop: cancel}
	for w := range workers {
		l.wg.Go(func() {
			// Each worker its own hostnames: a lookup of a hostname
			// another has in flight would share its call.
			mine := hostnames[w*len(hostnames)/workers : (w+1)*len(hostnames)/workers]
			for i := 0; ctx.Err() == nil; i++ {
				t, err := c.Lookup(ctx, mine[i%len(mine)])
				switch {
				case ctx.Err() != nil:
					return
				case err == nil && t.ID == "acme":
					l.ok.Add(1)
					continue
				case err == nil:
					err = fmt.Errorf("answered tenant %q, want acme", t.ID)
				}
				l.failed.Add(1)
				l.mu.Lock()
				if l.firstErr == nil {
					l.firstErr = err
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *spreadLoad) end() {
	l.stop()
	l.wg.Wait()
}

// check fails tb if a lookup has failed so far.
func (l *spreadLoad) check(tb testing.TB, when string) {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.failed.Load(); n > 0 {
		tb.Errorf("%s: %d of %d lookups failed; the first: %v", when, n, n+l.ok.Load(), l.firstErr)
	}
}

// callsOf returns each node's calls so far.
func callsOf(nodes []*spreadNode) []int64 {
	c := make([]int64, len(nodes))
	for i, n := range nodes {
		c[i] = n.calls.Load()
	}
	return c
}

// shares describes the calls each node served between two callsOf.
func shares(nodes []*spreadNode, before, after []int64) (deltas []int64, total int64, text string) {
	var parts []string
	deltas = make([]int64, len(nodes))
	for i := range nodes {
		deltas[i] = after[i] - before[i]
		total += deltas[i]
	}
	for i, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s %d (%.0f%%)", n.name, deltas[i], 100*float64(deltas[i])/float64(max(total, 1))))
	}
	return deltas, total, strings.Join(parts, ", ")
}

// TestLoadSpreading is issue 11's load-spreading test: a region served by
// three real lookup nodes behind one name, a client under load (concurrent
// lookups, no client cache, so every lookup is a call), nodes closing
// connections after MaxConnectionAge (1 s here). A fourth node added to
// the name, which the client learns only when it resolves the name again
// (as with DNS), gets at least 15% of the calls within 2 × MaxConnectionAge;
// a node removed from the name gets none after the client's next
// resolution, while it still runs; a node drained (removed and stopped
// gracefully, as a Kubernetes pod is) gets none; no lookup fails
// throughout. Calls are counted server-side.
func TestLoadSpreading(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: times load moving between nodes over several connection ages (about 3 s, alone)")
	}
	// Not parallel: it times how load moves between nodes, and the package
	// runs up to 8 parallel tests at once (TestMain).
	const age = time.Second
	var hostnames []string
	for i := range 64 {
		hostnames = append(hostnames, fmt.Sprintf("h%d.acme.example.com", i))
	}
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	claims := map[string]int64{}
	for _, h := range hostnames {
		claims[h] = 1
	}
	if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 1, claims, nil)); err != nil {
		t.Fatal(err)
	}
	a := startSpreadNode(t, "a", rep, age)
	b := startSpreadNode(t, "b", rep, age)
	c := startSpreadNode(t, "c", rep, age)
	ns := &names{scheme: "tcs-spread"}
	ns.set(a, b, c)

	cl, err := client.New(testwait.Context(t),
		client.WithRegions(ns.scheme+":///lookup.spread-1"),
		client.WithDialOptions(grpc.WithResolvers(ns)),
		client.WithCacheSize(0),
		client.WithLookupTimeout(10*time.Second), // a slow call on a loaded machine is not what this tests
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	load := startLoad(cl, 4, hostnames)
	defer load.end()

	nodes := []*spreadNode{a, b, c}
	testwait.For(t, "each of three nodes to serve 100 lookups", func() bool {
		return a.calls.Load() >= 100 && b.calls.Load() >= 100 && c.calls.Load() >= 100
	})
	load.check(t, "three nodes")

	// A fourth node joins the name; nothing tells the client.
	d := startSpreadNode(t, "d", rep, age)
	ns.set(a, b, c, d)
	added := time.Now()
	nodes = append(nodes, d)
	var last string
	prev := callsOf(nodes)
	testwait.Until(t, 2*age, 20*time.Millisecond, "the added node to serve ≥ 15% of the calls", func() (bool, string) {
		now := callsOf(nodes)
		deltas, total, text := shares(nodes, prev, now)
		if total < 40 {
			return false, "too few calls since the last poll: " + text // keep the window open
		}
		prev, last = now, text
		return float64(deltas[3]) >= 0.15*float64(total), "last window: " + text
	})
	t.Logf("the added node got its share %v after it joined; that window: %s", time.Since(added).Round(time.Millisecond), last)
	load.check(t, "a node added")

	// b leaves the name but keeps running: once the client has resolved
	// the name again it sends b nothing.
	ns.set(a, c, d)
	removed, resolved := time.Now(), ns.resolved()
	testwait.Within(t, 2*age, "the client to resolve the name again", func() bool { return ns.resolved() > resolved })
	prev = callsOf(nodes)
	testwait.Until(t, 2*age, 20*time.Millisecond, "the node removed from the name to get no calls", func() (bool, string) {
		now := callsOf(nodes)
		deltas, total, text := shares(nodes, prev, now)
		if total < 40 {
			return false, "too few calls since the last poll: " + text
		}
		prev = now
		return deltas[1] == 0, "last window: " + text
	})
	t.Logf("the removed node got its last call within %v", time.Since(removed).Round(time.Millisecond))
	// Connections keep aging (three more resolutions, each asked for by a
	// lost connection): b still gets none.
	quiet, resolved := callsOf(nodes), ns.resolved()
	testwait.Within(t, 4*age, "three more resolutions", func() bool { return ns.resolved() >= resolved+3 })
	after := callsOf(nodes)
	_, _, text := shares(nodes, quiet, after)
	if after[1] != quiet[1] {
		t.Errorf("the node removed from the name still served calls: %s", text)
	}
	if after[2] == quiet[2] {
		t.Fatalf("c served no calls before its drain, which would prove nothing: %s", text)
	}
	load.check(t, "a node removed from the name")

	// c is drained: removed from the name and stopped gracefully at once,
	// as Kubernetes does to a pod it deletes.
	ns.set(a, d)
	c.drain(t)
	stopped := callsOf(nodes)
	testwait.For(t, "the remaining nodes to serve 100 more lookups each", func() bool {
		return a.calls.Load() >= stopped[0]+100 && d.calls.Load() >= stopped[3]+100
	})
	after = callsOf(nodes)
	_, _, text = shares(nodes, stopped, after)
	if after[2] != stopped[2] {
		t.Errorf("the drained node served calls after it stopped: %s", text)
	}
	load.end()
	load.check(t, "a node drained")
	t.Logf("%d lookups, none failed; per node over the test: %s", load.ok.Load(), func() string {
		_, _, text := shares(nodes, make([]int64, len(nodes)), callsOf(nodes))
		return text
	}())
}

// TestPickFirst: with PickFirst, every call of a region goes to one of the
// addresses its name resolves to.
func TestPickFirst(t *testing.T) {
	t.Parallel()
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatal(err)
	}
	nodes := []*spreadNode{
		startSpreadNode(t, "a", rep, time.Hour), startSpreadNode(t, "b", rep, time.Hour), startSpreadNode(t, "c", rep, time.Hour),
	}
	ns := &names{scheme: "tcs-pick-first"}
	ns.set(nodes...)
	cl, err := client.New(testwait.Context(t), client.WithRegions(ns.scheme+":///lookup"), client.WithDialOptions(grpc.WithResolvers(ns)),
		client.WithCacheSize(0), client.WithBalancing(client.PickFirst))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range 60 {
		if _, err := cl.Lookup(testwait.Context(t), "acme.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	_, total, text := shares(nodes, make([]int64, len(nodes)), callsOf(nodes))
	busy := 0
	for _, n := range nodes {
		if n.calls.Load() > 0 {
			busy++
		}
	}
	if total != 60 || busy != 1 {
		t.Errorf("60 lookups with PickFirst reached %d nodes: %s", busy, text)
	}
}

// TestDNSEndpoint: a dns:/// endpoint is resolved through DNS (localhost
// here), and counts as loopback for WithToken without TLS; a remote name,
// or another resolver's target, does not. An unknown balancing policy is
// refused, naming it.
func TestDNSEndpoint(t *testing.T) {
	t.Parallel()
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatal(err)
	}
	n := startSpreadNode(t, "a", rep, time.Hour)
	_, port, _ := net.SplitHostPort(n.addr)
	cl, err := client.New(testwait.Context(t), client.WithRegions("dns:///localhost:"+port), client.WithToken("a-token"), client.WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if ten, err := cl.Lookup(testwait.Context(t), "acme.example.com"); err != nil || ten.ID != "acme" {
		t.Fatalf("lookup through dns:///localhost:%s: %v, %v", port, ten, err)
	}
	if n.calls.Load() != 1 {
		t.Errorf("the node served %d lookups, want 1", n.calls.Load())
	}

	for _, target := range []string{"dns:///tcs.example.com:9001", "dns://10.0.0.2:53/localhost.example.com:9001", "tcs-spread:///localhost:9001"} {
		_, err := client.New(testwait.Context(t), client.WithRegions(target), client.WithToken("a-token"))
		if err == nil || !strings.Contains(err.Error(), "in the clear") {
			t.Errorf("WithToken without TLS to %s: %v, want refused", target, err)
		}
	}
	for _, target := range []string{"localhost:9001", "127.0.0.1:9001", "[::1]:9001", "dns:///127.0.0.1:9001", "dns://10.0.0.2:53/localhost:9001", "passthrough:///127.0.0.1:9001"} {
		c, err := client.New(testwait.Context(t), client.WithRegions(target), client.WithToken("a-token"))
		if err != nil {
			t.Errorf("WithToken without TLS to %s: %v, want accepted (loopback)", target, err)
			continue
		}
		c.Close()
	}
	_, err = client.New(testwait.Context(t), client.WithRegions(n.addr), client.WithBalancing("least_request"))
	if err == nil || !strings.Contains(err.Error(), `"least_request"`) {
		t.Errorf("unknown balancing: %v, want an error naming it", err)
	}
}
