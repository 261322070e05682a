package spanctx

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// The otelgrpc stats handlers cost a call some 40 allocations at each end
// even when its span is not sampled. With sampling at 1%, 99% of the calls
// of traced callers are such calls: the gates below pass them by, keeping
// only what the decision needs to travel.

// unsampledKey marks the context of a call a gate passed by.
type unsampledKey struct{}

// SkipUnsampledClient wraps a client stats handler (otelgrpc's): a call made
// under a span that is not sampled is not handed to it; it only carries the
// caller's traceparent (sampled flag off), so that the server follows the
// caller's decision. Other calls (sampled, or with no span: a root, which
// the handler's sampler decides) go to h.
func SkipUnsampledClient(h stats.Handler) stats.Handler { return clientGate{h} }

type clientGate struct{ inner stats.Handler }

func (g clientGate) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !sc.IsSampled() {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-00")
		return context.WithValue(ctx, unsampledKey{}, true)
	}
	return g.inner.TagRPC(ctx, info)
}

func (g clientGate) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(unsampledKey{}) == nil {
		g.inner.HandleRPC(ctx, s)
	}
}

func (g clientGate) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return g.inner.TagConn(ctx, info)
}

func (g clientGate) HandleConn(ctx context.Context, s stats.ConnStats) { g.inner.HandleConn(ctx, s) }

// SkipUnsampledServer wraps a server stats handler (otelgrpc's) for a
// server whose calls make no traced calls of their own (a tcs lookup node):
// a call whose traceparent says "not sampled" is not handed to it, as its
// span would record nothing (the caller's decision is followed, as the
// parentbased samplers do) and no later call needs the context.
func SkipUnsampledServer(h stats.Handler) stats.Handler { return serverGate{h} }

type serverGate struct{ inner stats.Handler }

func (g serverGate) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if vs := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(vs) == 1 && unsampled(vs[0]) {
		return context.WithValue(ctx, unsampledKey{}, true)
	}
	return g.inner.TagRPC(ctx, info)
}

func (g serverGate) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(unsampledKey{}) == nil {
		g.inner.HandleRPC(ctx, s)
	}
}

func (g serverGate) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return g.inner.TagConn(ctx, info)
}

func (g serverGate) HandleConn(ctx context.Context, s stats.ConnStats) { g.inner.HandleConn(ctx, s) }

// unsampled reports whether traceparent is a well-formed version-00 W3C
// traceparent whose sampled flag is off.
func unsampled(traceparent string) bool {
	if len(traceparent) != 55 || traceparent[:3] != "00-" || traceparent[35] != '-' || traceparent[52] != '-' {
		return false
	}
	flags, err := strconv.ParseUint(traceparent[53:], 16, 8)
	return err == nil && flags&1 == 0
}
