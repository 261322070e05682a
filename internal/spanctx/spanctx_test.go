package spanctx_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/spanctx"
)

// TestCaptureAndStartChild: the context captured from a span makes the
// next stage's span its child, in another "process" (only the text
// crosses), with the sampling decision kept.
func TestCaptureAndStartChild(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "write")
	tc := spanctx.Capture(ctx)
	parent.End()
	if tc.Parent == "" || tc.Parent[len(tc.Parent)-2:] != "01" {
		t.Fatalf("captured %+v, want a sampled traceparent", tc)
	}
	_, child := spanctx.Start(context.Background(), spanctx.Tracer(tp), tc, "publish")
	child.End()
	got := rec.Ended()
	if len(got) != 2 || got[1].Parent().SpanID() != parent.SpanContext().SpanID() || got[1].SpanContext().TraceID() != parent.SpanContext().TraceID() || !got[1].Parent().IsRemote() {
		t.Errorf("publish span's parent %v, want the write's span %v (remote)", got[1].Parent(), parent.SpanContext())
	}
	if back := spanctx.Of(got[1].SpanContext()); back.Parent == tc.Parent || back.IsZero() {
		t.Errorf("Of(child) = %+v, want the child's own context", back)
	}
}

// TestNotTraced: no span, an invalid span context or a malformed
// traceparent give nothing to carry and a root span.
func TestNotTraced(t *testing.T) {
	t.Parallel()
	if tc := spanctx.Capture(context.Background()); !tc.IsZero() {
		t.Errorf("Capture without a span = %+v", tc)
	}
	if tc := spanctx.Of(trace.SpanContext{}); !tc.IsZero() {
		t.Errorf("Of(invalid) = %+v", tc)
	}
	for _, tc := range []tenant.TraceContext{{}, {Parent: "garbage"}, {Parent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}} {
		ctx := spanctx.Remote(context.Background(), tc)
		if trace.SpanContextFromContext(ctx).IsValid() {
			t.Errorf("Remote(%+v) gave a valid parent", tc)
		}
	}
	// A nil provider: no-op spans, nothing captured.
	ctx, sp := spanctx.Start(context.Background(), spanctx.Tracer(nil), tenant.TraceContext{}, "x")
	sp.End()
	if tc := spanctx.Capture(ctx); !tc.IsZero() {
		t.Errorf("no-op span captured as %+v", tc)
	}
}

// TestTraceStateCarried: tracestate crosses with traceparent.
func TestTraceStateCarried(t *testing.T) {
	t.Parallel()
	in := tenant.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "vendor=abc"}
	sc := trace.SpanContextFromContext(spanctx.Remote(context.Background(), in))
	if got := spanctx.Of(sc); got != in {
		t.Errorf("round trip = %+v, want %+v", got, in)
	}
}
