// Package spanctx carries OpenTelemetry span contexts through the pipeline's
// own messages: outbox entries and stream events (tenant.ChangeEvent.Trace)
// and invalidations (tcs.Invalidation.Trace), as W3C Trace Context text.
//
// It also holds the gRPC interceptors that trace the lookup hot path
// (UnaryServerInterceptor, StreamServerInterceptor, UnaryClientInterceptor)
// in place of otelgrpc's stats handlers, at next to no cost to the calls
// that are not sampled.
//
// It needs only the OpenTelemetry API, never the SDK: with no tracer
// provider configured (the default) every span is a no-op, Capture returns
// the zero TraceContext and nothing is stored or sent.
package spanctx

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// ScopeName is the instrumentation scope of the pipeline's own spans
// (publish, apply, invalidate).
const ScopeName = "github.com/tcs-dev/tcs"

// Tracer returns tp's tracer for the pipeline's spans; a nil tp gives a
// tracer whose spans are no-ops.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

// Capture returns the trace context of the span in ctx, or the zero
// TraceContext if ctx holds no valid span context (not traced).
func Capture(ctx context.Context) tenant.TraceContext {
	return Of(trace.SpanContextFromContext(ctx))
}

// Of returns sc as a TraceContext; the zero TraceContext if sc is invalid.
func Of(sc trace.SpanContext) tenant.TraceContext {
	if !sc.IsValid() {
		return tenant.TraceContext{}
	}
	var c carrier
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), &c)
	return tenant.TraceContext(c)
}

// Remote returns ctx with tc as its remote parent span context, so that a
// span started from it is tc's child. A zero or malformed tc leaves ctx as
// it is (a malformed one is dropped: tracing never fails the pipeline).
func Remote(ctx context.Context, tc tenant.TraceContext) context.Context {
	if tc.Parent == "" {
		return ctx
	}
	c := carrier(tc)
	return propagation.TraceContext{}.Extract(ctx, &c)
}

// Start starts a span named name as the child of tc (a root span if tc is
// zero). Callers that start spans only for traced changes check tc first.
func Start(ctx context.Context, t trace.Tracer, tc tenant.TraceContext, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return t.Start(Remote(ctx, tc), name, opts...)
}

// carrier is a propagation.TextMapCarrier over the two W3C headers.
type carrier tenant.TraceContext

func (c *carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.Parent
	case "tracestate":
		return c.State
	}
	return ""
}

func (c *carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.Parent = value
	case "tracestate":
		c.State = value
	}
}

func (c *carrier) Keys() []string { return []string{"traceparent", "tracestate"} }
