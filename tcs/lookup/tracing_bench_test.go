package lookup_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
// gRPC with tracing off (no stats handlers: what the binaries run unless an
// OTEL_* exporter is set) and on, the server and the connection both
// traced (otelgrpc, as internal/telemetry sets them up) with the SDK's
// batch processor and a sampler of ParentBased(TraceIDRatioBased(0.01)):
// the node alone (callers not traced), both ends with each call a root
// (the client decides), both ends with each call made under a traced
// caller's request span (1% sampled: the gates pass the other 99% by),
// and, for scale, both ends sampling every call. Every mode has its own server, in
// one run, measured in turns (six rounds, each starting with another mode),
// and the ratios to "off" are reported (target for 1%: ≥ 0.95).
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

	// measure runs n lookups on 16 goroutines and returns lookups/s and
	// the CPU time the process spent per lookup (client and server: both
	// run here), the steadier figure on a shared machine.
	measure := func(c tcsv1.TenantContextServiceClient, inSpans bool, n int) (float64, float64) {
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
		return float64(n) / time.Since(start).Seconds(), (cpuTime(b) - cpu0).Seconds() * 1e6 / float64(n)
	}
	const rounds = 6
	per := max(b.N/rounds, 1000)
	rate, cpu := map[string]float64{}, map[string]float64{}
	b.ResetTimer()
	for round := range rounds {
		for i := range modes {
			m := modes[(round+i)%len(modes)]
			r, c := measure(clients[m.name], m.inSpans, per)
			rate[m.name] += r
			cpu[m.name] += c
		}
	}
	b.StopTimer()
	for _, m := range modes {
		b.ReportMetric(rate[m.name]/rounds, m.name+"_lookups/s")
		b.ReportMetric(cpu[m.name]/rounds, m.name+"_cpu_us/lookup")
		if m.name != "off" {
			// Throughput relative to off, by wall clock and by CPU time
			// per lookup (what a CPU-bound node's throughput follows).
			b.ReportMetric(rate[m.name]/rate["off"], m.name+"/off")
			b.ReportMetric(cpu["off"]/cpu[m.name], m.name+"/off_by_cpu")
		}
	}
}
