package lookup_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// dialFrom connects to e's server from the loopback address ip (any of
// 127.0.0.0/8), so that the server sees a caller of its own: without
// authentication a caller is its IP address.
func dialFrom(tb testing.TB, e *env, ip string) tcsv1.TenantContextServiceClient {
	tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := grpc.NewClient(e.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return tcsv1.NewTenantContextServiceClient(conn)
}

func randomHost(r *rand.Rand) string {
	return fmt.Sprintf("r%016x.flood.example.com", r.Uint64())
}

// series counts the time series e's registry exports.
func series(tb testing.TB, e *env) int {
	tb.Helper()
	mfs, err := e.srv.Registry().Gather()
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// codeCounts tallies status codes of concurrent calls.
type codeCounts struct {
	mu   sync.Mutex
	n    map[codes.Code]int
	msgs map[codes.Code]string // one message per code
}

func (c *codeCounts) add(err error) {
	st := status.Convert(err)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n, c.msgs = map[codes.Code]int{}, map[codes.Code]string{}
	}
	c.n[st.Code()]++
	c.msgs[st.Code()] = st.Message()
}

// TestHostileInput is the lookup server's hostile-input suite: each case
// is an attack a client on the network can make, and the bound the server
// keeps it to; the case fails if the bound is exceeded.
func TestHostileInput(t *testing.T) {
	tests := []struct {
		attack string
		bound  string
		run    func(t *testing.T)
	}{{
		attack: "10,000 Watch attempts from one caller",
		bound: "exactly --watch-max-per-caller streams accepted, the rest RESOURCE_EXHAUSTED naming the cap and flag; " +
			"goroutines and heap grow with the accepted streams only; another caller can still watch",
		run: watchFlood,
	}, {
		attack: "Watch streams from several callers, beyond the node's cap",
		bound:  "exactly --watch-max-streams streams open, the rest RESOURCE_EXHAUSTED naming the cap and flag",
		run:    watchNodeCap,
	}, {
		attack: "random-hostname flood from 4 addresses while another caller reads a hot set that fills the cache",
		bound: "hot lookups ≥ 99% fresh hits, no hot entry evicted; replica reads ≤ the miss budget (burst + rate × time); " +
			"negative entries ≤ their own cache size; metric series count unchanged",
		run: randomHostnameFlood,
	}, {
		attack: "one caller over its lookup rate",
		bound:  "calls past the burst RESOURCE_EXHAUSTED with a retry-after trailer; other callers unaffected; admitted again after the hint",
		run:    callerRate,
	}, {
		attack: "oversize batches: 101 hostnames; 100 hostnames of 4 KiB",
		bound:  "INVALID_ARGUMENT naming the cap of 100; RESOURCE_EXHAUSTED for a request over 256 KiB; no replica read",
		run:    oversizeBatch,
	}, {
		attack: "duplicate-heavy batch: 100 copies of the hostname of a 200 KB tenant",
		bound:  "one replica read, one tenant in the response (99 INVALID_ARGUMENT duplicates)",
		run:    duplicateBatch,
	}, {
		attack: "batch of 100 case variants of the hostname of a 200 KB tenant (distinct strings, one tenant)",
		bound:  "response ≤ MaxBatchResponse + one tenant; the results past it RESOURCE_EXHAUSTED naming the cap",
		run:    variantBatch,
	}, {
		attack: "HTTP/2 ping flood on one connection",
		bound:  "GOAWAY ENHANCE_YOUR_CALM (too_many_pings) and the connection closed within 10 pings",
		run:    pingFlood,
	}, {
		attack: "1,000 lookups of random hostnames while the replica fails",
		bound:  `one "replica read failed" log line per 10 s, the next one counting those suppressed`,
		run:    failureLogFlood,
	}}
	for _, tt := range tests {
		t.Run(tt.attack, func(t *testing.T) {
			t.Logf("bound: %s", tt.bound)
			tt.run(t)
		})
	}
}

func watchFlood(t *testing.T) {
	const perCaller, attempts = 20, 10_000
	e := start(t, lookup.Config{MaxWatchPerCaller: perCaller}, lookup.ServeOptions{})
	goroutines, heap := runtime.NumGoroutine(), heapInUse()

	ctx, cancel := context.WithCancel(testwait.Context(t))
	defer cancel()
	var accepted atomic.Int64
	var refused codeCounts
	var g errgroup.Group
	g.SetLimit(32)
	for range attempts {
		g.Go(func() error {
			stream, err := e.client.Watch(ctx, &tcsv1.WatchRequest{})
			if err == nil {
				_, err = stream.Recv() // the Resync, or the refusal
			}
			if err != nil {
				refused.add(err)
				return nil
			}
			accepted.Add(1) // left open until the test ends
			return nil
		})
	}
	_ = g.Wait()
	if n := accepted.Load(); n != perCaller {
		t.Errorf("accepted %d Watch streams, want %d", n, perCaller)
	}
	if n := refused.n[codes.ResourceExhausted]; n != attempts-perCaller || len(refused.n) != 1 {
		t.Errorf("refusals %v, want %d RESOURCE_EXHAUSTED", refused.n, attempts-perCaller)
	}
	if msg := refused.msgs[codes.ResourceExhausted]; !strings.Contains(msg, "--watch-max-per-caller") || !strings.Contains(msg, fmt.Sprint(perCaller)) {
		t.Errorf("refusal message %q does not name the cap (%d) and its flag", msg, perCaller)
	}
	if got := watchStreams(e); got != perCaller {
		t.Errorf("tcs_lookup_watch_streams = %v, want %d", got, perCaller)
	}
	// Each open stream holds a few goroutines (server handler, client
	// stream) and its buffer; the 9,980 refused ones hold nothing once
	// their goroutines have returned.
	bound := 4*perCaller + 20
	testwait.For(t, fmt.Sprintf("the goroutine delta to be at most %d with %d streams open", bound, perCaller),
		func() bool { return runtime.NumGoroutine()-goroutines <= bound })
	dg, dh := runtime.NumGoroutine()-goroutines, int64(heapInUse())-int64(heap)
	t.Logf("goroutine delta %d, heap delta %d KiB, for %d open streams", dg, dh>>10, perCaller)
	if dh > 4<<20 {
		t.Errorf("heap grew by %d KiB after %d Watch attempts, want ≤ 4 MiB", dh>>10, attempts)
	}
	got := gather(t, e.srv.Registry())
	if n := got[`tcs_lookup_shed_total{reason="watch_caller_cap"}`]; n != attempts-perCaller {
		t.Errorf(`tcs_lookup_shed_total{reason="watch_caller_cap"} = %v, want %d`, n, attempts-perCaller)
	}
	// Another caller is not starved.
	other, err := dialFrom(t, e, "127.0.0.2").Watch(ctx, &tcsv1.WatchRequest{})
	if err == nil {
		_, err = other.Recv()
	}
	if err != nil {
		t.Errorf("another caller's Watch: %v", err)
	}
	// Streams that end free their caller's slots.
	cancel()
	testwait.For(t, "the streams to end", func() bool { return watchStreams(e) == 0 })
	w := openWatch(t, e)
	w.cancel()
}

func watchNodeCap(t *testing.T) {
	const perCaller, node = 10, 25
	e := start(t, lookup.Config{MaxWatchPerCaller: perCaller, MaxWatchStreams: node}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	var accepted atomic.Int64
	var refused codeCounts
	var wg sync.WaitGroup
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		client := dialFrom(t, e, ip)
		for range perCaller {
			stream, err := client.Watch(ctx, &tcsv1.WatchRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if err != nil {
				refused.add(err)
				continue
			}
			accepted.Add(1)
			wg.Go(func() { _, _ = stream.Recv() }) // keep it open
		}
	}
	if n := accepted.Load(); n != node {
		t.Errorf("accepted %d Watch streams, want the node cap %d", n, node)
	}
	if n := refused.n[codes.ResourceExhausted]; n != 4*perCaller-node {
		t.Errorf("refusals %v, want %d RESOURCE_EXHAUSTED", refused.n, 4*perCaller-node)
	}
	if msg := refused.msgs[codes.ResourceExhausted]; !strings.Contains(msg, "--watch-max-streams") || !strings.Contains(msg, fmt.Sprint(node)) {
		t.Errorf("refusal message %q does not name the cap (%d) and its flag", msg, node)
	}
	_ = e.stop()
	wg.Wait()
}

func randomHostnameFlood(t *testing.T) {
	const (
		hot       = 1000
		negSize   = 100
		missRate  = 200 // per node, a second
		callerMis = 50  // per caller, a second
		steps     = 10  // simulated seconds of flood
		perStep   = 200 // flood calls per simulated second, per attacker (some batches of 100)
	)
	rep := newFakeReplica()
	for i := range hot {
		rep.set(makeTenant(fmt.Sprintf("t%04d", i), 1, benchHost(i)))
	}
	e := start(t, lookup.Config{
		Replica: rep,
		// One shard: the tenant entries are an exact LRU that the hot set
		// fills, so that any negative entry in it would evict a hot one.
		Cache:             cache.Options{Size: hot, NegativeSize: negSize, Shards: 1, TTL: time.Hour, NegativeTTL: time.Hour},
		MissRate:          missRate,
		MissRatePerCaller: callerMis,
		LookupRate:        -1, // the clock stands still between steps; callerRate tests this limit
	}, lookup.ServeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reader := dialFrom(t, e, "127.0.0.1")
	// Warm the hot set within the reader's miss budget, a simulated second
	// at a time.
	for i := 0; i < hot; {
		_, err := reader.Lookup(ctx, &tcsv1.LookupRequest{Hostname: benchHost(i)})
		if status.Code(err) == codes.ResourceExhausted {
			e.clock.Advance(time.Second)
			continue
		}
		if err != nil {
			t.Fatalf("warm-up Lookup(%s): %v", benchHost(i), err)
		}
		i++
	}
	e.clock.Advance(time.Second) // full buckets
	before := series(t, e)
	reads := rep.calls.Load()

	var hits, hotCalls atomic.Int64
	var attacks, hotOutcomes codeCounts
	stop := make(chan struct{})
	var hotLoad sync.WaitGroup
	for range 4 {
		hotLoad.Go(func() {
			r := rand.New(rand.NewPCG(1, 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := reader.Lookup(ctx, &tcsv1.LookupRequest{Hostname: benchHost(r.IntN(hot))})
				hotCalls.Add(1)
				if err == nil && !resp.GetStale() {
					hits.Add(1)
				} else {
					hotOutcomes.add(err)
				}
			}
		})
	}
	attackers := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	for step := range steps {
		var g errgroup.Group
		for a, ip := range attackers {
			client := dialFrom(t, e, ip)
			g.Go(func() error {
				r := rand.New(rand.NewPCG(uint64(step), uint64(a)))
				for i := range perStep {
					if i%50 == 0 { // some of it in batches
						names := make([]string, lookup.MaxBatch)
						for k := range names {
							names[k] = randomHost(r)
						}
						resp, err := client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: names})
						attacks.add(err)
						for _, res := range resp.GetResults() {
							attacks.add(status.Error(codes.Code(res.GetCode()), res.GetMessage()))
						}
						continue
					}
					_, err := client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: randomHost(r)})
					attacks.add(err)
				}
				return nil
			})
		}
		_ = g.Wait()
		e.clock.Advance(time.Second)
	}
	close(stop)
	hotLoad.Wait()

	floodReads := rep.calls.Load() - reads
	budget := int64(missRate + missRate*steps) // a burst, then the rate
	t.Logf("flood: %v; replica reads %d (budget %d); hot lookups %d, fresh hits %d", attacks.n, floodReads, budget, hotCalls.Load(), hits.Load())
	if floodReads > budget {
		t.Errorf("the flood made %d replica reads in %d simulated seconds, over the miss budget of %d", floodReads, steps, budget)
	}
	if attacks.n[codes.ResourceExhausted] == 0 || !strings.Contains(attacks.msgs[codes.ResourceExhausted], "--miss-rate") {
		t.Errorf("flood outcomes %v (%q), want RESOURCE_EXHAUSTED naming --miss-rate", attacks.n, attacks.msgs[codes.ResourceExhausted])
	}
	if ratio := float64(hits.Load()) / float64(hotCalls.Load()); hotCalls.Load() == 0 || ratio < 0.99 {
		t.Errorf("hot hit ratio %.4f over %d lookups (misses: %v), want ≥ 0.99", ratio, hotCalls.Load(), hotOutcomes.n)
	}
	for i := range hot {
		if _, ok := e.srv.Cache().Peek(benchHost(i)); !ok {
			t.Fatalf("hot entry %s was evicted by the flood", benchHost(i))
		}
	}
	if s := e.srv.Cache().Stats(); s.NegativeEntries > negSize {
		t.Errorf("negative entries %d, over their cache size %d", s.NegativeEntries, negSize)
	}
	if after := series(t, e); after != before {
		t.Errorf("metric series %d after the flood, %d before", after, before)
	}
}

func callerRate(t *testing.T) {
	const rate = 100 // a second's burst too (the least: MaxBatch)
	rep := newFakeReplica(makeTenant("acme", 1, "acme.example.com"))
	e := start(t, lookup.Config{Replica: rep, LookupRate: rate}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	var ok, refused int
	var trailer metadata.MD
	var lastErr error
	for range rate + 50 {
		var tr metadata.MD
		_, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "acme.example.com"}, grpc.Trailer(&tr))
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			refused++
			trailer, lastErr = tr, err
		default:
			t.Fatalf("Lookup: %v", err)
		}
	}
	if ok != rate || refused != 50 {
		t.Errorf("%d answered, %d refused; want %d and 50", ok, refused, rate)
	}
	if msg := status.Convert(lastErr).Message(); !strings.Contains(msg, "--lookup-rate-per-caller") {
		t.Errorf("refusal %q does not name --lookup-rate-per-caller", msg)
	}
	hint := trailer.Get(lookup.TrailerRetryAfter)
	wait, err := time.ParseDuration(strings.Join(hint, ""))
	if len(hint) != 1 || err != nil || wait <= 0 || wait > time.Second {
		t.Errorf("retry-after trailer %q, want one duration in (0, 1s]", hint)
	}
	// A batch over the rate is refused whole, with its hint.
	var tr metadata.MD
	_, err = e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: []string{"acme.example.com"}}, grpc.Trailer(&tr))
	if status.Code(err) != codes.ResourceExhausted || len(tr.Get(lookup.TrailerRetryAfter)) != 1 {
		t.Errorf("BatchLookup over the rate: %v, trailer %v; want RESOURCE_EXHAUSTED with retry-after", err, tr)
	}
	if _, err := dialFrom(t, e, "127.0.0.2").Lookup(ctx, &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil {
		t.Errorf("another caller: %v", err)
	}
	e.clock.Advance(wait)
	if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil {
		t.Errorf("after the retry-after hint: %v", err)
	}
	if n := gather(t, e.srv.Registry())[`tcs_lookup_shed_total{reason="caller_rate"}`]; n != 51 {
		t.Errorf(`tcs_lookup_shed_total{reason="caller_rate"} = %v, want 51`, n)
	}
}

func oversizeBatch(t *testing.T) {
	e := start(t, lookup.Config{}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	names := make([]string, lookup.MaxBatch+1)
	for i := range names {
		names[i] = benchHost(i)
	}
	_, err := e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: names})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "at most 100") {
		t.Errorf("BatchLookup of 101: %v, want INVALID_ARGUMENT naming the cap of 100", err)
	}
	long := strings.Repeat("a", 4096)
	for i := range lookup.MaxBatch {
		names[i] = long
	}
	_, err = e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: names[:lookup.MaxBatch]})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("BatchLookup of 400 KiB: %v, want RESOURCE_EXHAUSTED", err)
	}
	if n := e.replica.calls.Load(); n != 0 {
		t.Errorf("%d replica reads, want 0", n)
	}
}

// bigTenant is a tenant of about 200 KB on the wire (the fake replica does
// not enforce the catalog's bounds).
func bigTenant(hostname string) *tenant.Tenant {
	t := makeTenant("big", 1, hostname)
	for i := range 5000 {
		t.Hostnames = append(t.Hostnames, fmt.Sprintf("alias-%05d.big-tenant.example.com", i))
	}
	return t
}

func duplicateBatch(t *testing.T) {
	const host = "big.example.com"
	rep := newFakeReplica()
	rep.byHost[host] = bigTenant(host)
	e := start(t, lookup.Config{Replica: rep}, lookup.ServeOptions{})
	names := make([]string, lookup.MaxBatch)
	for i := range names {
		names[i] = host
	}
	resp, err := e.client.BatchLookup(testwait.Context(t), &tcsv1.BatchLookupRequest{Hostnames: names})
	if err != nil {
		t.Fatal(err)
	}
	tenantSize := proto.Size(tcsv1.TenantToProto(bigTenant(host)))
	if n := proto.Size(resp); n > tenantSize+lookup.MaxBatch*200 {
		t.Errorf("response of %d bytes for one %d-byte tenant asked 100 times", n, tenantSize)
	}
	for i, r := range resp.GetResults() {
		want := codes.InvalidArgument
		if i == 0 {
			want = codes.OK
		}
		if codes.Code(r.GetCode()) != want {
			t.Fatalf("result %d: %v %q, want %v", i, codes.Code(r.GetCode()), r.GetMessage(), want)
		}
	}
	if msg := resp.GetResults()[1].GetMessage(); !strings.Contains(msg, "duplicate of hostnames[0]") {
		t.Errorf("duplicate's message %q does not point at hostnames[0]", msg)
	}
	if n := rep.calls.Load(); n != 1 {
		t.Errorf("%d replica reads, want 1", n)
	}
}

func variantBatch(t *testing.T) {
	const host = "bigtenant.example.com"
	rep := newFakeReplica()
	rep.byHost[host] = bigTenant(host)
	e := start(t, lookup.Config{Replica: rep}, lookup.ServeOptions{})
	names := make([]string, lookup.MaxBatch)
	for i := range names { // distinct case variants: bits of i upper-case letters of "bigtena"
		b := []byte(host)
		for k := range 7 {
			if i&(1<<k) != 0 {
				b[k] -= 'a' - 'A'
			}
		}
		names[i] = string(b)
	}
	resp, err := e.client.BatchLookup(testwait.Context(t), &tcsv1.BatchLookupRequest{Hostnames: names})
	if err != nil {
		t.Fatal(err)
	}
	tenantSize := proto.Size(tcsv1.TenantToProto(bigTenant(host)))
	size := proto.Size(resp)
	t.Logf("response %d bytes, tenant %d bytes", size, tenantSize)
	if size > lookup.MaxBatchResponse+tenantSize {
		t.Errorf("response of %d bytes, over MaxBatchResponse (%d) + one tenant", size, lookup.MaxBatchResponse)
	}
	var ok, capped int
	for _, r := range resp.GetResults() {
		switch codes.Code(r.GetCode()) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			capped++
			if !strings.Contains(r.GetMessage(), "MaxBatchResponse") {
				t.Errorf("capped result message %q does not name the cap", r.GetMessage())
			}
		default:
			t.Errorf("result %v %q", codes.Code(r.GetCode()), r.GetMessage())
		}
	}
	if ok == 0 || capped == 0 || ok*tenantSize > lookup.MaxBatchResponse {
		t.Errorf("%d answered, %d capped, want answers up to the cap and the rest capped", ok, capped)
	}
}

func failureLogFlood(t *testing.T) {
	var logs testio.SyncBuffer
	rep := newFakeReplica()
	rep.setErr(fmt.Errorf("replica exploded"))
	e := start(t, lookup.Config{
		Replica: rep,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		Cache:   cache.Options{FailingAfter: -1},
	}, lookup.ServeOptions{})
	c := testwait.Context(t)
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		if _, err := e.client.Lookup(c, &tcsv1.LookupRequest{Hostname: randomHost(r)}); status.Code(err) != codes.Unavailable {
			t.Fatalf("Lookup with the replica failing: %v, want UNAVAILABLE", err)
		}
	}
	if n := logs.Count("replica read failed"); n != 1 {
		t.Errorf(`%d "replica read failed" lines for 1,000 failed lookups in one interval, want 1`, n)
	}
	e.clock.Advance(11 * time.Second)
	_, _ = e.client.Lookup(c, &tcsv1.LookupRequest{Hostname: randomHost(r)})
	if n := logs.Count("replica read failed"); n != 2 {
		t.Errorf(`%d "replica read failed" lines after the interval, want 2`, n)
	}
	// 1,000 lookups each read twice (a miss with nothing kept retries once):
	// 2,000 failures, one logged; the second line counts the others.
	if n := logs.Count("suppressed=1999"); n != 1 {
		t.Errorf("the second line does not count the 1,999 suppressed failures:\n%s", logs.String())
	}
}

func pingFlood(t *testing.T) {
	e := start(t, lookup.Config{}, lookup.ServeOptions{})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range 10 {
			if fr.WritePing(false, [8]byte{byte(i)}) != nil {
				return
			}
		}
	}()
	var goAway *http2.GoAwayFrame
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break // closed by the server (or the deadline, checked below)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goAway = g
		}
	}
	if goAway == nil || goAway.ErrCode != http2.ErrCodeEnhanceYourCalm || string(goAway.DebugData()) != "too_many_pings" {
		t.Fatalf("GOAWAY %+v, want ENHANCE_YOUR_CALM too_many_pings", goAway)
	}
}
