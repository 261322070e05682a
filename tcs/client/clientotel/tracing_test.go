package clientotel_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
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
	_ = context.Background()
}
