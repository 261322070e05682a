package lookup_test

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/internal/telemetry"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// discard is a span exporter that drops what it is given: the cost
// measured is the instrumentation's and the SDK's, not a collector's.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkLookupTracing measures cached Lookup throughput over loopback
// gRPC with tracing off (no instrumentation: what the binaries run unless an
// OTEL_* exporter is set) and on, the server and the connection both
// traced as internal/telemetry sets them up (GRPCLeafServerOptions and
// GRPCDialOptions: interceptors, no stats handler) with the SDK's batch
// processor and a sampler of ParentBased(TraceIDRatioBased(0.01)): the
// node alone (callers not traced), both ends with each call made under no
// span (the client sends nothing; the node samples its own roots), both
// ends with each call made under a traced caller's request span (1%
// sampled: the other 99% pass straight through), and, for scale, both ends
// sampling every call. Every mode has its own server, in one run, measured
// in turns (20 rounds, each starting with another mode), and the ratios to
// "off" are reported (target for 1%: ≥ 0.95), with the allocations per
// lookup (client and server); off_again, untraced like off, shows how far
// the ratios of the run move by noise alone. -short: 2 rounds of at least
// 100 lookups per mode, a smoke run: its figures mean nothing.
func BenchmarkLookupTracing(b *testing.B) {
	type mode struct {
		name       string
		sampler    sdktrace.Sampler // nil: tracing off
		serverOnly bool             // the server traced, the caller not
		inSpans    bool             // each lookup made under a caller's request span
	}
	oneInHundred := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))
	modes := []mode{
		{name: "off"},
		{name: "off_again"}, // a second untraced server: its ratio to off is the run's noise
		{name: "server_1pct", sampler: oneInHundred, serverOnly: true},
		{name: "both_1pct", sampler: oneInHundred},
		{name: "callers_1pct", sampler: oneInHundred, inSpans: true},
		{name: "both_all", sampler: sdktrace.AlwaysSample()},
	}
	// The request spans of a traced caller, made before the clock starts
	// (they are the caller's cost, not the lookups'): a root each, 1% of
	// them sampled, the others passing "not sampled" on.
	callerTP := sdktrace.NewTracerProvider(sdktrace.WithSampler(oneInHundred), sdktrace.WithBatcher(discard{}))
	b.Cleanup(func() { _ = callerTP.Shutdown(context.Background()) })
	requests := make([]context.Context, 4096)
	for i := range requests {
		requests[i], _ = callerTP.Tracer("caller").Start(context.Background(), "request")
	}
	clients := map[string]tcsv1.TenantContextServiceClient{}
	for _, m := range modes {
		tracing, callerTracing := telemetry.New(nil), telemetry.New(nil)
		if m.sampler != nil {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(m.sampler), sdktrace.WithBatcher(discard{}))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			tracing = telemetry.New(tp)
			if !m.serverOnly {
				callerTracing = tracing
			}
		}
		rep, err := boltreplica.Open(filepath.Join(b.TempDir(), "replica.db"), boltreplica.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rep.Close() })
		if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
			b.Fatal(err)
		}
		srv := lookup.New(lookup.Config{Region: "bench", Replica: rep, FeedTimeout: -1, LookupRate: -1, MissRate: -1, MissRatePerCaller: -1,
			TracerProvider: tracing.Provider()})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- srv.Serve(ctx, lis, lookup.ServeOptions{ServerOptions: tracing.GRPCLeafServerOptions()})
		}()
		b.Cleanup(func() {
			cancel()
			<-done
		})
		dial := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, callerTracing.GRPCDialOptions()...)
		conn, err := grpc.NewClient(lis.Addr().String(), dial...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		c := tcsv1.NewTenantContextServiceClient(conn)
		if _, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil {
			b.Fatalf("%s: %v", m.name, err)
		}
		clients[m.name] = c
	}

	// measure runs n lookups on 16 goroutines and returns lookups/s, the
	// CPU time the process spent per lookup (client and server: both run
	// here), the steadier figure on a shared machine, and the allocations
	// per lookup.
	measure := func(c tcsv1.TenantContextServiceClient, inSpans bool, n int) (float64, float64, float64) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mallocs0 := ms.Mallocs
		cpu0 := cpuTime(b)
		const workers = 16
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					ctx := context.Background()
					if inSpans {
						ctx = requests[i%len(requests)]
					}
					if _, err := c.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		rate, cpu := float64(n)/time.Since(start).Seconds(), (cpuTime(b)-cpu0).Seconds()*1e6/float64(n)
		runtime.ReadMemStats(&ms)
		return rate, cpu, float64(ms.Mallocs-mallocs0) / float64(n)
	}
	// The machine is shared and noisy (one mode can run 15% faster than
	// another identical to it over a few seconds), so the modes are
	// measured in many short turns, and each ratio is the median over the
	// rounds of the mode's figure to off's in the same round.
	rounds := benchsize.Pick(20, 2)
	per := max(b.N/rounds, benchsize.Pick(1000, 100))
	type figures struct{ rate, cpu, allocs []float64 }
	got := map[string]*figures{}
	for _, m := range modes {
		got[m.name] = &figures{}
	}
	b.ResetTimer()
	for round := range rounds {
		for i := range modes {
			m := modes[(round+i)%len(modes)]
			r, c, a := measure(clients[m.name], m.inSpans, per)
			f := got[m.name]
			f.rate, f.cpu, f.allocs = append(f.rate, r), append(f.cpu, c), append(f.allocs, a)
		}
	}
	b.StopTimer()
	off := got["off"]
	for _, m := range modes {
		f := got[m.name]
		b.ReportMetric(median(f.rate), m.name+"_lookups/s")
		b.ReportMetric(median(f.cpu), m.name+"_cpu_us/lookup")
		b.ReportMetric(median(f.allocs), m.name+"_allocs/lookup")
		if m.name != "off" {
			// Throughput relative to off, by wall clock and by CPU time
			// per lookup (what a CPU-bound node's throughput follows).
			byRate, byCPU := make([]float64, rounds), make([]float64, rounds)
			for i := range rounds {
				byRate[i], byCPU[i] = f.rate[i]/off.rate[i], off.cpu[i]/f.cpu[i]
			}
			b.ReportMetric(median(byRate), m.name+"/off")
			b.ReportMetric(median(byCPU), m.name+"/off_by_cpu")
		}
	}
}

// median returns the median of xs (left as it is).
func median(xs []float64) float64 {
	xs = slices.Sorted(slices.Values(xs))
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}
