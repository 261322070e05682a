package clientotel_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clientotel"
	"github.com/tcs-dev/tcs/tcs/client/clienttest"
)

// TestWithTracing: a lookup the cache cannot answer is a client span, the
// child of the caller's span; a cache hit makes none.
func TestWithTracing(t *testing.T) {
	t.Parallel()
	srv, err := clienttest.NewServer(&tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx := testwait.Context(t)
	c, err := srv.NewClient(ctx, clientotel.WithTracing(tp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	lookups := func() []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, sp := range rec.Ended() {
			if sp.Name() == "tcs.v1.TenantContextService/Lookup" {
				out = append(out, sp)
			}
		}
		return out
	}
	callerCtx, caller := tp.Tracer("test").Start(ctx, "handle request")
	for range 2 { // a miss, then a hit
		if _, err := c.Lookup(callerCtx, "acme.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	caller.End()
	got := lookups()
	if len(got) != 1 {
		t.Fatalf("%d Lookup spans, want 1 (the miss; a hit makes no RPC)", len(got))
	}
	if sp := got[0]; sp.SpanKind() != trace.SpanKindClient || sp.Parent().SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("Lookup span: kind %v, parent %v; want a client span, the caller's child %v", sp.SpanKind(), sp.Parent().SpanID(), caller.SpanContext().SpanID())
	}
}

// BenchmarkLookupHitTracing: a cache hit with WithTracing, under a sampled
// caller span, against a client without it, in one run; a hit makes no RPC
// and no span, so both stay allocation-free at the same cost.
func BenchmarkLookupHitTracing(b *testing.B) {
	srv, err := clienttest.NewServer(&tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	for _, name := range []string{"off", "traced"} {
		b.Run(name, func(b *testing.B) {
			var opts []client.Option
			if name == "traced" {
				opts = append(opts, clientotel.WithTracing(tp))
			}
			c, err := srv.NewClient(context.Background(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx, sp := tp.Tracer("bench").Start(context.Background(), "request")
			defer sp.End()
			if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
