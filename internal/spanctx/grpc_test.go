package spanctx_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/tcs-dev/tcs/internal/spanctx"
)

// TestSkipUnsampledClient: a call under an unsampled span makes no client
// span and sends the caller's traceparent with the sampled flag off; a call
// under a sampled span gets its client span, whose context it sends.
func TestSkipUnsampledClient(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string // the traceparent each call brought
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		mu.Lock()
		got = append(got, strings.Join(metadata.ValueFromIncomingContext(ctx, "traceparent"), ","))
		mu.Unlock()
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(spanctx.SkipUnsampledClient(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(propagation.TraceContext{})))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hc := healthpb.NewHealthClient(conn)

	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	unsampledCtx, unsampled := never.Tracer("caller").Start(context.Background(), "request")
	sampledCtx, sampled := tp.Tracer("caller").Start(context.Background(), "request")
	for _, ctx := range []context.Context{unsampledCtx, sampledCtx} {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	sampled.End()
	var clientSpans []sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.Name() == "grpc.health.v1.Health/Check" {
			clientSpans = append(clientSpans, sp)
		}
	}
	if len(clientSpans) != 1 || clientSpans[0].Parent().SpanID() != sampled.SpanContext().SpanID() {
		t.Fatalf("client spans %v, want one, under the sampled request", clientSpans)
	}
	usc := unsampled.SpanContext()
	want := []string{
		"00-" + usc.TraceID().String() + "-" + usc.SpanID().String() + "-00",
		"00-" + sampled.SpanContext().TraceID().String() + "-" + clientSpans[0].SpanContext().SpanID().String() + "-01",
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("traceparents received %q, want %q", got, want)
	}
}
