package cmdutil

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/internal/requestid"
)

// RequestIDKey is the gRPC metadata key of the request id, both ways.
var RequestIDKey = strings.ToLower(requestid.Header)

// RequestIDs returns server options that give every gRPC call a request
// id: the caller's x-request-id metadata if sane (requestid.Valid), else a
// fresh one. The id is sent back in the response header metadata, is in
// the handler's context (requestid.FromContext), and names the call on the
// failure line logged (at most one a second, saying how many were held
// back) when a call fails with a server-side code (Internal, Unknown,
// Unavailable, DeadlineExceeded, ResourceExhausted, DataLoss); every
// other finished call is logged at debug. Calls refused before these
// interceptors run (authentication, which the lookup server chains first)
// get no id.
func RequestIDs(log *slog.Logger) []grpc.ServerOption {
	r := &requestIDs{log: log}
	r.failLog.Every = time.Second
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(r.unary), grpc.ChainStreamInterceptor(r.stream)}
}

type requestIDs struct {
	log     *slog.Logger
	failLog logevery.Limiter
}

func (r *requestIDs) id(ctx context.Context) string {
	var inbound string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDKey); len(v) > 0 {
			inbound = v[0]
		}
	}
	return requestid.Accept(inbound)
}

func (r *requestIDs) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := r.id(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, id)) // fails only on a finished call
	start := time.Now()
	resp, err := handler(requestid.NewContext(ctx, id), req)
	r.done(ctx, info.FullMethod, id, start, err)
	return resp, err
}

func (r *requestIDs) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := r.id(ss.Context())
	_ = ss.SetHeader(metadata.Pairs(RequestIDKey, id))
	start := time.Now()
	err := handler(srv, &idStream{ServerStream: ss, ctx: requestid.NewContext(ss.Context(), id)})
	r.done(ss.Context(), info.FullMethod, id, start, err)
	return err
}

func (r *requestIDs) done(ctx context.Context, method, id string, start time.Time, err error) {
	code := status.Code(err)
	attrs := []slog.Attr{slog.String("request_id", id), slog.String("method", method), slog.String("code", code.String()), slog.Duration("duration", time.Since(start))}
	switch code {
	case codes.Internal, codes.Unknown, codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.DataLoss:
		held, ok := r.failLog.Allow(time.Now())
		if !ok {
			return
		}
		attrs = append(attrs, slog.String("err", err.Error()), slog.Int("failures_held_back", held))
		r.log.LogAttrs(ctx, slog.LevelWarn, "call failed", attrs...)
	default:
		r.log.LogAttrs(ctx, slog.LevelDebug, "call", attrs...)
	}
}

type idStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *idStream) Context() context.Context { return s.ctx }
