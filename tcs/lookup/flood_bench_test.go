package lookup_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// floodHot is how many tenants the hot set of BenchmarkRandomHostnameFlood
// holds: 10,000; under -short 1,000 (its fill, each a replica read of
// floodReadLatency, would take seconds).
func floodHot() int { return benchsize.Pick(10_000, 1_000) }

// The load of BenchmarkRandomHostnameFlood.
const (
	floodReaders     = 8                      // concurrent hot-set readers, one address
	floodAttackers   = 4                      // addresses the flood comes from
	floodPerAttacker = 8                      // concurrent calls per attacker address
	floodMissRate    = 1_000                  // the node's miss budget, reads a second
	floodMissPer     = 500                    // each caller's miss budget
	floodReadLatency = 200 * time.Microsecond // a replica read (a nearby store)
	floodBatchEvery  = 10                     // one flood call in this many is a BatchLookup of 100
)

// slowReplica is a fakeReplica whose reads take floodReadLatency.
type slowReplica struct{ *fakeReplica }

func (r slowReplica) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	t := time.NewTimer(floodReadLatency)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.fakeReplica.LookupHostname(ctx, hostname)
}

// hotPhase makes n lookups of the hot set from floodReaders goroutines and
// returns their latencies and how many were fresh hits.
func hotPhase(b *testing.B, client tcsv1.TenantContextServiceClient, n int) (lat []time.Duration, hits int) {
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	hot := floodHot()
	for w := range floodReaders {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			var mine []time.Duration
			fresh := 0
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				resp, err := client.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: benchHost(r.IntN(hot))})
				mine = append(mine, time.Since(t0))
				if err == nil && !resp.GetStale() {
					fresh++
				}
			}
			mu.Lock()
			lat, hits = append(lat, mine...), hits+fresh
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat, hits
}

func p99(lat []time.Duration) float64 {
	slices.Sort(lat)
	return float64(lat[int(0.99*float64(len(lat)-1))].Nanoseconds()) / 1e3
}

// BenchmarkRandomHostnameFlood: a hot set of 10,000 tenants read by one
// caller, before and during a flood of random hostnames at full speed from
// four other addresses (Lookup, and BatchLookups of 100). Reported: the hot
// set's p99 latency and fresh-hit ratio in each phase, the replica reads a
// second during the flood (bounded by the node's miss budget, reported as
// miss-budget/s; measured once the flood has spent the budget's burst),
// and the flood's hostnames a second and the share refused. -short: a hot set
// of 1,000 (floodHot), a smoke run: its figures mean nothing.
func BenchmarkRandomHostnameFlood(b *testing.B) {
	rep := newFakeReplica()
	for i := range floodHot() {
		rep.set(makeTenant(fmt.Sprintf("t%06d", i), 1, benchHost(i)))
	}
	e := start(b, lookup.Config{
		Replica:           slowReplica{rep},
		Now:               time.Now,
		Cache:             cache.Options{Now: time.Now},
		MissRate:          floodMissRate,
		MissRatePerCaller: floodMissPer,
		LookupRate:        -1, // the hot reader is one address reading flat out
	}, lookup.ServeOptions{})
	for i := range floodHot() {
		if _, err := e.srv.Cache().Lookup(context.Background(), benchHost(i)); err != nil {
			b.Fatal(err)
		}
	}
	reader := dialFrom(b, e, "127.0.0.1")
	attackers := make([]tcsv1.TenantContextServiceClient, floodAttackers)
	for a := range attackers {
		attackers[a] = dialFrom(b, e, fmt.Sprintf("127.0.0.%d", a+2))
	}

	b.ResetTimer()
	latBefore, hitsBefore := hotPhase(b, reader, b.N)

	stop := make(chan struct{})
	var flooded, refused atomic.Int64
	var flood sync.WaitGroup
	for a, client := range attackers {
		for g := range floodPerAttacker {
			flood.Go(func() {
				r := rand.New(rand.NewPCG(uint64(a), uint64(g)))
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if i%floodBatchEvery == 0 {
						names := make([]string, lookup.MaxBatch)
						for k := range names {
							names[k] = randomHost(r)
						}
						resp, _ := client.BatchLookup(context.Background(), &tcsv1.BatchLookupRequest{Hostnames: names})
						flooded.Add(int64(len(names)))
						for _, res := range resp.GetResults() {
							if codes.Code(res.GetCode()) == codes.ResourceExhausted {
								refused.Add(1)
							}
						}
						continue
					}
					_, err := client.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: randomHost(r)})
					flooded.Add(1)
					if status.Code(err) == codes.ResourceExhausted {
						refused.Add(1)
					}
				}
			})
		}
	}
	// Measure from when the flood has spent the budget's burst: what
	// follows is the steady state, reads bounded by the rate.
	testwait.For(b, "the flood to exhaust the miss budget", func() bool { return refused.Load() > 0 })
	reads0, start := rep.calls.Load(), time.Now()
	latDuring, hitsDuring := hotPhase(b, reader, b.N)
	elapsed := time.Since(start).Seconds()
	reads := rep.calls.Load() - reads0
	close(stop)
	flood.Wait()
	b.StopTimer()

	b.ReportMetric(p99(latBefore), "hot-p99-before-µs")
	b.ReportMetric(p99(latDuring), "hot-p99-during-µs")
	b.ReportMetric(float64(hitsBefore)/float64(b.N), "hot-hit-ratio-before")
	b.ReportMetric(float64(hitsDuring)/float64(b.N), "hot-hit-ratio-during")
	b.ReportMetric(float64(reads)/elapsed, "replica-reads/s")
	b.ReportMetric(floodMissRate, "miss-budget/s")
	b.ReportMetric(float64(flooded.Load())/elapsed, "flood-hostnames/s")
	b.ReportMetric(float64(refused.Load())/max(float64(flooded.Load()), 1), "flood-refused-ratio")
}

// BenchmarkBroadcast: the cost of relaying one invalidation to the node's
// cap of Watch streams (DefaultMaxWatchStreams), which a broadcast walks
// under the server's lock.
func BenchmarkBroadcast(b *testing.B) {
	e := start(b, lookup.Config{MaxWatchPerCaller: -1}, lookup.ServeOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range lookup.DefaultMaxWatchStreams {
		s := &drainStream{ctx: ctx}
		wg.Go(func() { _ = e.srv.Watch(&tcsv1.WatchRequest{}, s) })
	}
	waitStreams(b, e, lookup.DefaultMaxWatchStreams)
	msg := &tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Invalidation{Invalidation: &tcsv1.Invalidation{
		TenantId: "acme", Version: 2, Hostnames: []string{"acme.example.com"},
	}}}
	b.ResetTimer()
	for b.Loop() {
		e.srv.Broadcast(msg)
	}
	b.ReportMetric(float64(lookup.DefaultMaxWatchStreams), "streams")
}

// drainStream is an in-process Watch stream whose client reads everything
// at once.
type drainStream struct {
	grpc.ServerStream // nil: only the methods below are used
	ctx               context.Context
}

func (d *drainStream) Context() context.Context        { return d.ctx }
func (d *drainStream) SetHeader(metadata.MD) error     { return nil }
func (d *drainStream) Send(*tcsv1.WatchResponse) error { return nil }

func waitStreams(tb testing.TB, e *env, n int) {
	tb.Helper()
	testwait.For(tb, fmt.Sprintf("%d Watch streams", n), func() bool { return watchStreams(e) == float64(n) })
}
