package clientotel

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcs-dev/tcs/internal/spanctx"
	"github.com/tcs-dev/tcs/tcs/client"
)

// WithTracing traces the client's calls to the lookup servers with tp: a
// client span per Lookup or BatchLookup RPC (a hedge or a failover is an RPC
// of its own) made under a sampled span, the child of the span in the
// context of the lookup whose cache miss led it, named and attributed as
// otelgrpc's client spans are; its context is sent to the server as W3C
// traceparent/tracestate metadata, so that the tcs node's server span joins
// the caller's trace. A miss under no span or an unsampled one makes no
// span and sends no trace context (the node's own sampler decides whether
// to trace its side). It installs an interceptor, not a stats handler, so
// that those RPCs cost what they cost untraced; the Watch stream is not
// traced. Cache hits make no RPC and no span: the hit path costs what it
// costs without tracing.
func WithTracing(tp trace.TracerProvider) client.Option {
	return client.WithRPCInterceptor(spanctx.UnaryClientInterceptor(tp), func(caller, call context.Context) context.Context {
		if sp := trace.SpanFromContext(caller); sp.SpanContext().IsSampled() {
			return trace.ContextWithSpan(call, sp)
		}
		return call
	})
}
