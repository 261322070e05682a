package clientotel

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcs-dev/tcs/internal/spanctx"
	"github.com/tcs-dev/tcs/tcs/client"
)

// WithTracing traces the client's calls to the lookup servers with tp: an
// otelgrpc client span per RPC (Lookup, BatchLookup, Watch; a hedge or a
// failover is an RPC of its own), the child of the span in the context of
// the lookup whose cache miss led it, its context sent to the server as W3C
// traceparent metadata, so that the tcs node's server span joins the
// caller's trace. A miss under a span that is not sampled only sends the
// caller's traceparent on (no client span: it would record nothing). Cache hits make no RPC and no span: the hit path costs
// what it costs without tracing.
func WithTracing(tp trace.TracerProvider) client.Option {
	h := otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider())) // Hooks count the RPCs
	return client.WithRPCStats(spanctx.SkipUnsampledClient(h), func(caller, call context.Context) context.Context {
		if sp := trace.SpanFromContext(caller); sp.SpanContext().IsValid() {
			return trace.ContextWithSpan(call, sp)
		}
		return call
	})
}
