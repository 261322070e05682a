package spanctx

import (
	"context"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The interceptors below trace the lookup hot path in place of otelgrpc's
// stats handlers. Once a gRPC server or connection has any stats handler,
// grpc-go builds the stats events of every call for it (headers, payloads,
// begin and end: some 45 allocations a call), sampled or not; with sampling
// at 1% that is paid 99 times for nothing. An interceptor costs an
// unsampled call a metadata look-up (server) or a span-context check
// (client), and makes spans only for the calls that record them.

// Attribute keys of the RPC spans, as otelgrpc names them.
const (
	rpcSystemKey  = attribute.Key("rpc.system")
	rpcServiceKey = attribute.Key("rpc.service")
	rpcMethodKey  = attribute.Key("rpc.method")
	rpcCodeKey    = attribute.Key("rpc.grpc.status_code")
)

// The span kinds as start options, made once: an option list built per
// call would be one more allocation for every call not recorded.
var (
	serverKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// UnaryServerInterceptor traces a server's unary calls with tp: a server
// span per call the caller's traceparent says is sampled (the child of the
// caller's span), or, with no usable traceparent, per call tp's sampler
// samples as a root; nothing for the rest. Spans are named and attributed
// as otelgrpc's are ("tcs.v1.TenantContextService/Lookup", rpc.system,
// rpc.service, rpc.method, rpc.grpc.status_code). It is for a server whose
// calls make no traced calls of their own (a tcs lookup node): a call it
// passes by keeps no trace context.
func UnaryServerInterceptor(tp trace.TracerProvider) grpc.UnaryServerInterceptor {
	t := Tracer(tp)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		sctx, sp := startServer(ctx, t, info.FullMethod)
		if sp == nil {
			return handler(ctx, req)
		}
		resp, err := handler(sctx, req)
		end(sp, err, true)
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls
// (the span covers the whole stream).
func StreamServerInterceptor(tp trace.TracerProvider) grpc.StreamServerInterceptor {
	t := Tracer(tp)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		sctx, sp := startServer(ss.Context(), t, info.FullMethod)
		if sp == nil {
			return handler(srv, ss)
		}
		err := handler(srv, tracedStream{ss, sctx})
		end(sp, err, true)
		return err
	}
}

// tracedStream is a server stream whose context holds its span.
type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tracedStream) Context() context.Context { return s.ctx }

// startServer starts the server span of a call to method, or returns a nil
// span if the call is not to be recorded.
func startServer(ctx context.Context, t trace.Tracer, method string) (context.Context, trace.Span) {
	parent := ctx
	if vs := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(vs) == 1 {
		if unsampled(vs[0]) {
			return ctx, nil // the caller's decision is followed, as the parentbased samplers do
		}
		c := carrier{Parent: vs[0], State: strings.Join(metadata.ValueFromIncomingContext(ctx, "tracestate"), ",")}
		parent = propagation.TraceContext{}.Extract(ctx, &c) // malformed: no parent, a root
	}
	sctx, sp := t.Start(parent, spanName(method), serverKind...)
	if !sp.IsRecording() {
		sp.End()
		return ctx, nil
	}
	sp.SetAttributes(rpcAttributes(method)...)
	return sctx, sp
}

// UnaryClientInterceptor traces a connection's unary calls with tp: a call
// made under a sampled span gets a client span, its child, named and
// attributed as otelgrpc's are, whose context it sends as W3C
// traceparent/tracestate metadata. Any other call goes straight through,
// sending nothing: the server's own sampler decides whether to trace it.
func UnaryClientInterceptor(tp trace.TracerProvider) grpc.UnaryClientInterceptor {
	t := Tracer(tp)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !trace.SpanContextFromContext(ctx).IsSampled() {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		cctx, sp := t.Start(ctx, spanName(method), clientKind...)
		if !sp.IsRecording() { // a sampler that overrules its parent
			sp.End()
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		sp.SetAttributes(rpcAttributes(method)...)
		var c carrier
		propagation.TraceContext{}.Inject(cctx, &c)
		kv := []string{"traceparent", c.Parent}
		if c.State != "" {
			kv = append(kv, "tracestate", c.State)
		}
		err := invoker(metadata.AppendToOutgoingContext(cctx, kv...), method, req, reply, cc, opts...)
		end(sp, err, false)
		return err
	}
}

// spanName is otelgrpc's span name: the full method without its leading
// slash.
func spanName(fullMethod string) string { return strings.TrimPrefix(fullMethod, "/") }

// rpcAttributes returns rpc.system, and rpc.service and rpc.method if
// fullMethod is /service/method.
func rpcAttributes(fullMethod string) []attribute.KeyValue {
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return []attribute.KeyValue{rpcSystemKey.String("grpc")}
	}
	return []attribute.KeyValue{rpcSystemKey.String("grpc"), rpcServiceKey.String(service), rpcMethodKey.String(method)}
}

// end records a call's status code on sp and ends it. As otelgrpc does
// (after the OpenTelemetry conventions for RPC), a client span is an error
// for any code but OK, a server span only for the codes that are the
// server's fault.
func end(sp trace.Span, err error, server bool) {
	s, _ := status.FromError(err)
	sp.SetAttributes(rpcCodeKey.Int64(int64(s.Code())))
	if s.Code() != codes.OK && (!server || serverFault(s.Code())) {
		sp.SetStatus(otelcodes.Error, s.Message())
	}
	sp.End()
}

// serverFault reports whether a server answering code is in error.
func serverFault(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// unsampled reports whether traceparent is a well-formed version-00 W3C
// traceparent whose sampled flag is off.
func unsampled(traceparent string) bool {
	if len(traceparent) != 55 || traceparent[:3] != "00-" || traceparent[35] != '-' || traceparent[52] != '-' {
		return false
	}
	flags, err := strconv.ParseUint(traceparent[53:], 16, 8)
	return err == nil && flags&1 == 0
}
