package client_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// syntheticReplica holds a million tenants without storing them: tenant N
// owns host-N.tenants.example.com. Loading a million events into a bbolt
// replica would take the benchmark minutes; the server in front of it is
// the real one.
type syntheticReplica struct {
	tcs.Replica
	n int
}

func (s syntheticReplica) LookupHostname(_ context.Context, hostname string) (*tenant.Tenant, error) {
	num, ok := strings.CutPrefix(hostname, "host-")
	num, ok2 := strings.CutSuffix(num, ".tenants.example.com")
	i, err := strconv.Atoi(num)
	if !ok || !ok2 || err != nil || i < 0 || i >= s.n {
		return nil, tenant.Errorf(tenant.NotFound, "no tenant owns %q", hostname)
	}
	return replicatest.Doc(fmt.Sprintf("tenant-%07d", i), 1, hostname), nil
}

func (syntheticReplica) Ping(context.Context) error { return nil }

// zipfEnv is BenchmarkMixedZipf's server and warmed-up client, made once
// (the warm-up takes tens of seconds) and kept for the process's life.
var zipfEnv struct {
	once         sync.Once
	c            *client.Client
	hits, misses atomic.Int64
	names        []string
	err          error
}

// zipfS is the Zipf exponent of BenchmarkMixedZipf's hostnames.
const zipfS = 1.2

// zipfTenants is how many tenants BenchmarkMixedZipf's server holds.
func zipfTenants() int { return benchsize.Pick(1_000_000, 10_000) }

// zipfWarmup is how many lookups the warm-up stands for: a node making a
// million lookups a second sees this many per default TTL (30 s).
func zipfWarmup() int { return benchsize.Pick(30_000_000, 100_000) }

// zipfSettle is how many lookups each of the settling run's 2 goroutines
// makes after the warm-up.
func zipfSettle() int { return benchsize.Pick(500_000, 5_000) }

// zipfSetup starts a lookup server for a million tenants, a client in front
// of it, and warms the client's cache.
//
// The warm-up leaves the cache as zipfWarmup Zipf lookups would: every
// hostname they draw is cached (the cache holds a million entries, and the
// client's TTL is an hour, so nothing is evicted or expires during the
// benchmark). Making them one Lookup at a time would take minutes of
// misses on two cores, so the warm-up draws them, and looks up the
// distinct hostnames with BatchLookup, 100 to an RPC, from 4 goroutines.
// What stays cached is the same, and so is the hit ratio that follows: the
// steady state of a node whose TTL spans zipfWarmup lookups (a million a
// second with the default TTL of 30 s), since with Watch invalidations the
// TTL is what makes a hot entry miss again.
func zipfSetup(b *testing.B) {
	e := &zipfEnv
	e.once.Do(func() {
		// No rate limit or miss budget: the warm-up stands for 30 s of a
		// node's history, not for one caller's burst.
		srv := lookup.New(lookup.Config{Region: "eu-west-1", Replica: syntheticReplica{n: zipfTenants()},
			LookupRate: -1, MissRate: -1, MissRatePerCaller: -1})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			e.err = err
			return
		}
		go srv.Serve(context.Background(), lis, lookup.ServeOptions{})
		e.c, e.err = client.New(context.Background(), client.WithRegions(lis.Addr().String()),
			client.WithTTL(time.Hour),
			client.WithMetrics(client.Hooks{Hit: func() { e.hits.Add(1) }, Miss: func() { e.misses.Add(1) }}))
		if e.err != nil {
			return
		}
		testwait.For(b, "the watch stream", e.c.Watching)
		e.names = make([]string, zipfTenants())
		for i := range e.names {
			e.names[i] = fmt.Sprintf("host-%d.tenants.example.com", i)
		}
		e.err = zipfWarm(zipfWarmup())
		if e.err == nil {
			zipfRun(b, 2, zipfSettle(), false) // settle: a short run of the measured workload
		}
	})
	if e.err != nil {
		b.Fatal(e.err)
	}
}

// zipfWarm looks up every hostname that n Zipf draws give.
func zipfWarm(n int) error {
	e := &zipfEnv
	seen := make([]bool, zipfTenants())
	z := rand.NewZipf(rand.New(rand.NewPCG(7, 7)), zipfS, 1, uint64(zipfTenants()-1))
	var todo []string
	for range n {
		if k := z.Uint64(); !seen[k] {
			seen[k] = true
			todo = append(todo, e.names[k])
		}
	}
	chunks := make(chan []string)
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for chunk := range chunks {
				res, err := e.c.BatchLookup(context.Background(), chunk)
				for _, r := range res {
					err = errors.Join(err, r.Err)
				}
				if err != nil {
					mu.Lock()
					failed = errors.Join(failed, err)
					mu.Unlock()
				}
			}
		})
	}
	for len(todo) > 0 {
		k := min(100, len(todo))
		chunks <- todo[:k]
		todo = todo[k:]
	}
	close(chunks)
	wg.Wait()
	return failed
}

// zipfRun makes perWorker lookups from each of workers goroutines and
// returns their latencies if record is set.
func zipfRun(b *testing.B, workers, perWorker int, record bool) []time.Duration {
	e := &zipfEnv
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			z := rand.NewZipf(rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano()))), zipfS, 1, uint64(zipfTenants()-1))
			var lat []time.Duration
			if record {
				lat = make([]time.Duration, 0, perWorker)
			}
			for range perWorker {
				h := e.names[z.Uint64()]
				start := time.Now()
				if _, err := e.c.Lookup(context.Background(), h); err != nil {
					b.Error(err)
					return
				}
				if record {
					lat = append(lat, time.Since(start))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}

// BenchmarkMixedZipf is a compute node's view: Zipf-distributed hostnames
// (s = 1.2) over 1,000,000 tenants, through a Client in front of a real
// lookup server on loopback, from 2 goroutines, after the warm-up of
// zipfSetup (once per process). It reports the hit ratio (hit%) and the
// distribution of each Lookup's latency (including ~30 ns of time.Now to
// measure it), misses included: a miss is a gRPC round trip to the server.
// For the hit ratio to expect, see zipfSetup: the ratio after n draws is
// 1 − Σ p(k)·e^(−n·p(k)), 99.1% for n = 30,000,000. -short: 10,000
// tenants, a warm-up of 100,000 lookups, a smoke run: its figures mean
// nothing.
func BenchmarkMixedZipf(b *testing.B) {
	zipfSetup(b)
	e := &zipfEnv
	e.hits.Store(0)
	e.misses.Store(0)
	b.ResetTimer()
	lat := zipfRun(b, 2, max(b.N/2, 1), true)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(float64(e.hits.Load())/float64(e.hits.Load()+e.misses.Load())*100, "hit%")
	b.ReportMetric(q(0.50), "p50-ns")
	b.ReportMetric(q(0.99), "p99-ns")
	b.ReportMetric(q(0.999), "p999-ns")
	b.ReportMetric(float64(zipfWarmup()), "warmup-lookups")
}
