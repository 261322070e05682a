package spanctx_test

import (
	"context"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/spanctx"
)

const (
	lookupMethod  = "/tcs.v1.TenantContextService/Lookup"
	parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID  = "00f067aa0ba902b7"
)

// attrs returns sp's attributes as a map, for cmp.Diff.
func attrs(sp sdktrace.ReadOnlySpan) map[string]any {
	m := map[string]any{}
	for _, kv := range sp.Attributes() {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func lookupAttrs(code codes.Code) map[string]any {
	return map[string]any{"rpc.system": "grpc", "rpc.service": "tcs.v1.TenantContextService", "rpc.method": "Lookup",
		"rpc.grpc.status_code": int64(code)}
}

// TestUnaryServerInterceptor: a call whose caller's traceparent is sampled
// is a server span, the caller's child, named and attributed as otelgrpc's
// and in the handler's context; one whose traceparent is not sampled makes
// no span and leaves the context alone; a call with no (or a malformed)
// traceparent is a root the sampler decides.
func TestUnaryServerInterceptor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		sampler     sdktrace.Sampler
		traceparent string
		tracestate  string
		err         error
		want        bool // a span
		wantParent  bool // … the caller's child
		wantStatus  otelcodes.Code
	}{
		{name: "sampled parent", sampler: sdktrace.ParentBased(sdktrace.NeverSample()),
			traceparent: "00-" + parentTraceID + "-" + parentSpanID + "-01", tracestate: "vendor=x", want: true, wantParent: true},
		{name: "unsampled parent", sampler: sdktrace.AlwaysSample(),
			traceparent: "00-" + parentTraceID + "-" + parentSpanID + "-00"},
		{name: "root sampled", sampler: sdktrace.ParentBased(sdktrace.AlwaysSample()), want: true},
		{name: "root not sampled", sampler: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))},
		{name: "malformed traceparent is a root", sampler: sdktrace.AlwaysSample(),
			traceparent: "00-" + parentTraceID + "-" + parentSpanID + "-zz", want: true},
		{name: "server fault", sampler: sdktrace.AlwaysSample(), err: status.Error(codes.Internal, "boom"),
			want: true, wantStatus: otelcodes.Error},
		{name: "caller's fault", sampler: sdktrace.AlwaysSample(), err: status.Error(codes.NotFound, "no such tenant"),
			want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(tc.sampler), sdktrace.WithSpanProcessor(rec))
			md := metadata.MD{}
			if tc.traceparent != "" {
				md.Set("traceparent", tc.traceparent)
			}
			if tc.tracestate != "" {
				md.Set("tracestate", tc.tracestate)
			}
			ctx := metadata.NewIncomingContext(context.Background(), md)
			var inHandler trace.SpanContext
			_, err := spanctx.UnaryServerInterceptor(tp)(ctx, "req", &grpc.UnaryServerInfo{FullMethod: lookupMethod},
				func(ctx context.Context, _ any) (any, error) {
					inHandler = trace.SpanContextFromContext(ctx)
					return "resp", tc.err
				})
			if err != tc.err {
				t.Fatalf("interceptor returned %v, want the handler's %v", err, tc.err)
			}
			spans := rec.Ended()
			if !tc.want {
				if len(spans) != 0 || inHandler.IsValid() {
					t.Fatalf("%d spans, handler's span context %v; want none", len(spans), inHandler)
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if sp.Name() != "tcs.v1.TenantContextService/Lookup" || sp.SpanKind() != trace.SpanKindServer {
				t.Errorf("span %q of kind %v, want tcs.v1.TenantContextService/Lookup, server", sp.Name(), sp.SpanKind())
			}
			if inHandler.SpanID() != sp.SpanContext().SpanID() {
				t.Errorf("handler's span %v, want the server span %v", inHandler.SpanID(), sp.SpanContext().SpanID())
			}
			if got := sp.Parent().IsValid(); got != tc.wantParent {
				t.Errorf("span has a parent: %v, want %v", got, tc.wantParent)
			}
			if tc.wantParent {
				if sp.Parent().TraceID().String() != parentTraceID || sp.Parent().SpanID().String() != parentSpanID || !sp.Parent().IsRemote() {
					t.Errorf("parent %v, want the caller's remote span %s/%s", sp.Parent(), parentTraceID, parentSpanID)
				}
				if got := sp.SpanContext().TraceState().String(); got != tc.tracestate {
					t.Errorf("tracestate %q, want the caller's %q", got, tc.tracestate)
				}
			}
			if diff := cmp.Diff(lookupAttrs(status.Code(tc.err)), attrs(sp)); diff != "" {
				t.Errorf("attributes (-want +got):\n%s", diff)
			}
			if sp.Status().Code != tc.wantStatus {
				t.Errorf("status %v, want %v", sp.Status(), tc.wantStatus)
			}
		})
	}
}

// fakeStream is a server stream with a context and nothing else.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

// TestStreamServerInterceptor: a stream under a sampled traceparent is a
// server span whose context the handler's stream carries; one under an
// unsampled traceparent is handed on untouched.
func TestStreamServerInterceptor(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	intercept := spanctx.StreamServerInterceptor(tp)
	info := &grpc.StreamServerInfo{FullMethod: "/tcs.v1.TenantContextService/Watch", IsServerStream: true}
	for _, flags := range []string{"00", "01"} {
		ss := fakeStream{ctx: metadata.NewIncomingContext(context.Background(),
			metadata.Pairs("traceparent", "00-"+parentTraceID+"-"+parentSpanID+"-"+flags))}
		var got grpc.ServerStream
		if err := intercept(nil, ss, info, func(_ any, s grpc.ServerStream) error { got = s; return nil }); err != nil {
			t.Fatal(err)
		}
		spans := rec.Ended()
		if flags == "00" {
			if len(spans) != 0 || got != grpc.ServerStream(ss) {
				t.Fatalf("unsampled: %d spans, stream %v; want none, the stream itself", len(spans), got)
			}
			continue
		}
		if len(spans) != 1 || spans[0].Name() != "tcs.v1.TenantContextService/Watch" || spans[0].Parent().SpanID().String() != parentSpanID {
			t.Fatalf("sampled: spans %v, want one Watch span, the caller's child", spans)
		}
		if trace.SpanContextFromContext(got.Context()).SpanID() != spans[0].SpanContext().SpanID() {
			t.Errorf("the handler's stream context does not hold the server span")
		}
	}
}

// TestUnaryClientInterceptor: a call under a sampled span is a client span,
// its child, whose traceparent (and the caller's tracestate) the call
// sends; a call under an unsampled span or none makes no span and sends no
// metadata.
func TestUnaryClientInterceptor(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	intercept := spanctx.UnaryClientInterceptor(tp)
	call := func(ctx context.Context, err error) (metadata.MD, bool) {
		t.Helper()
		var md metadata.MD
		var ok bool
		got := intercept(ctx, lookupMethod, "req", "reply", nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			md, ok = metadata.FromOutgoingContext(ctx)
			return err
		})
		if got != err {
			t.Fatalf("interceptor returned %v, want the invoker's %v", got, err)
		}
		return md, ok
	}

	unsampledCtx, unsampled := never.Tracer("caller").Start(context.Background(), "request")
	defer unsampled.End()
	for name, ctx := range map[string]context.Context{"no span": context.Background(), "unsampled span": unsampledCtx} {
		if md, ok := call(ctx, nil); ok || len(rec.Ended()) != 0 {
			t.Errorf("%s: metadata %v (%v), %d spans; want none", name, md, ok, len(rec.Ended()))
		}
	}

	caller := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{1}, SpanID: [8]byte{2}, TraceFlags: trace.FlagsSampled})
	ts, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), caller.WithTraceState(ts))
	md, _ := call(ctx, status.Error(codes.NotFound, "no such tenant"))
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	if sp.Name() != "tcs.v1.TenantContextService/Lookup" || sp.SpanKind() != trace.SpanKindClient || sp.Parent().SpanID() != caller.SpanID() {
		t.Errorf("span %q of kind %v, parent %v; want tcs.v1.TenantContextService/Lookup, client, the caller's child %v",
			sp.Name(), sp.SpanKind(), sp.Parent().SpanID(), caller.SpanID())
	}
	want := metadata.Pairs("traceparent", "00-"+sp.SpanContext().TraceID().String()+"-"+sp.SpanContext().SpanID().String()+"-01",
		"tracestate", "vendor=x")
	if diff := cmp.Diff(want, md); diff != "" {
		t.Errorf("metadata sent (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(lookupAttrs(codes.NotFound), attrs(sp)); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
	if sp.Status().Code != otelcodes.Error { // a client span fails on any code but OK
		t.Errorf("status %v, want an error", sp.Status())
	}
}

// TestInterceptorsJoinOneTrace: over a real connection, the server span of
// a call made under a sampled span is the child of its client span.
func TestInterceptorsJoinOneTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(spanctx.UnaryServerInterceptor(tp)))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(spanctx.UnaryClientInterceptor(tp)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, request := tp.Tracer("caller").Start(context.Background(), "request")
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	request.End()
	// The server span ends before the handler's answer is sent, so before
	// the client span: all three have ended.
	byKind := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, sp := range rec.Ended() {
		byKind[sp.SpanKind()] = sp
	}
	client, server := byKind[trace.SpanKindClient], byKind[trace.SpanKindServer]
	if client == nil || server == nil {
		t.Fatalf("spans %v, want a client and a server span", rec.Ended())
	}
	if client.Parent().SpanID() != request.SpanContext().SpanID() || server.Parent().SpanID() != client.SpanContext().SpanID() ||
		server.SpanContext().TraceID() != request.SpanContext().TraceID() {
		t.Errorf("request %v → client (parent %v) → server (parent %v): not one chain", request.SpanContext().SpanID(),
			client.Parent().SpanID(), server.Parent().SpanID())
	}
	if got := server.Attributes(); !contains(got, attribute.String("rpc.service", "grpc.health.v1.Health")) {
		t.Errorf("server span attributes %v, want rpc.service grpc.health.v1.Health", got)
	}
}

func contains(kvs []attribute.KeyValue, kv attribute.KeyValue) bool {
	for _, x := range kvs {
		if x == kv {
			return true
		}
	}
	return false
}

// BenchmarkServerInterceptor: what the server interceptor costs a call
// it does not record (a caller's unsampled traceparent; a root the
// sampler, at 1%, mostly does not sample) and one it records, against no
// interceptor.
func BenchmarkServerInterceptor(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
	defer tp.Shutdown(context.Background())
	intercept := spanctx.UnaryServerInterceptor(tp)
	info := &grpc.UnaryServerInfo{FullMethod: lookupMethod}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, bc := range []struct{ name, traceparent string }{
		{"root_1pct", ""},
		{"unsampled_parent", "00-" + parentTraceID + "-" + parentSpanID + "-00"},
		{"sampled_parent", "00-" + parentTraceID + "-" + parentSpanID + "-01"},
	} {
		md := metadata.MD{}
		if bc.traceparent != "" {
			md.Set("traceparent", bc.traceparent)
		}
		ctx := metadata.NewIncomingContext(context.Background(), md)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := intercept(ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("none", func(b *testing.B) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{})
		b.ReportAllocs()
		for range b.N {
			if _, err := handler(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
