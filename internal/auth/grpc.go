package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Policy is the role each gRPC method needs. Methods maps a full method
// ("/pkg.Service/Method") or a whole service ("/pkg.Service/") to its role;
// Open lists services ("pkg.Service") anyone may call (health checks). Every other method
// is refused (PermissionDenied): a method added to a service without a
// role cannot be called by accident.
type Policy struct {
	Methods map[string]Role
	Open    []string
}

// Need returns the role a method needs ("" if it is open), and false if
// the policy does not know it (every call refused).
func (p Policy) Need(method string) (Role, bool) {
	r, _, known := p.need(method)
	return r, known
}

func (p Policy) need(method string) (Role, bool, bool) {
	if r, ok := p.Methods[method]; ok {
		return r, false, true
	}
	svc := method
	if i := strings.LastIndex(method, "/"); i >= 0 {
		svc = method[:i+1]
	}
	if r, ok := p.Methods[svc]; ok {
		return r, false, true
	}
	for _, o := range p.Open {
		if "/"+strings.Trim(o, "/")+"/" == svc {
			return "", true, true
		}
	}
	return "", false, false
}

// The reasons a gRPC call is refused, the label values of
// tcs_auth_refusals_total: a fixed set, so that callers cannot mint series.
const (
	refusedNoCredentials  = "no_credentials"  // no token and no client certificate
	refusedBadCredentials = "bad_credentials" // an unknown token or certificate, or a malformed header
	refusedRole           = "role"            // a known caller without the method's role
	refusedUnknownMethod  = "unknown_method"  // a method the policy does not know
)

var refusalReasons = []string{refusedNoCredentials, refusedBadCredentials, refusedRole, refusedUnknownMethod}

// refusals counts refused calls by reason.
type refusals struct {
	n [4]atomic.Uint64 // in refusalReasons' order
}

func (r *refusals) add(reason string) {
	for i, x := range refusalReasons {
		if x == reason {
			r.n[i].Add(1)
		}
	}
}

var refusalsDesc = prometheus.NewDesc("tcs_auth_refusals_total",
	"gRPC calls refused by authentication or authorization, by reason: no_credentials, bad_credentials (unknown token or certificate, malformed header), role (the caller lacks the method's role), unknown_method (not in the server's policy). A rise in bad_credentials is someone guessing.",
	[]string{"reason"}, nil)

// Describe implements prometheus.Collector: an Authenticator exports its
// refusal counts.
func (a *Authenticator) Describe(ch chan<- *prometheus.Desc) { ch <- refusalsDesc }

// Collect implements prometheus.Collector.
func (a *Authenticator) Collect(ch chan<- prometheus.Metric) {
	for i, reason := range refusalReasons {
		ch <- prometheus.MustNewConstMetric(refusalsDesc, prometheus.CounterValue, float64(a.refused.n[i].Load()), reason)
	}
}

// authorize establishes the caller of a gRPC call and checks its role,
// counting refusals.
func (a *Authenticator) authorize(ctx context.Context, p Policy, method string) (context.Context, error) {
	ctx, reason, err := a.check(ctx, p, method)
	if err != nil {
		a.refused.add(reason)
	}
	return ctx, err
}

// check is authorize without the counting: on refusal it returns the
// reason (one of refusalReasons) and the status error.
func (a *Authenticator) check(ctx context.Context, p Policy, method string) (context.Context, string, error) {
	need, open, known := p.need(method)
	if open {
		return ctx, "", nil
	}
	if !known {
		return nil, refusedUnknownMethod, status.Error(codes.PermissionDenied, "permission denied")
	}
	var token string
	// ValueFromIncomingContext copies one key's values, not the whole
	// metadata: this runs on every call.
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) > 1 {
		return nil, refusedBadCredentials, status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	if len(vals) == 1 {
		if token = BearerToken(vals[0]); token == "" {
			return nil, refusedBadCredentials, status.Error(codes.Unauthenticated, ErrNoCredentials.Error())
		}
	}
	var state *tls.ConnectionState
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
	}
	id, err := a.Authenticate(token, state)
	if errors.Is(err, ErrNoCredentials) && a.open[need] {
		return ctx, "", nil
	}
	if err != nil {
		reason := refusedBadCredentials
		if errors.Is(err, ErrNoCredentials) {
			reason = refusedNoCredentials
		}
		return nil, reason, status.Error(codes.Unauthenticated, err.Error())
	}
	if !id.Role.Allows(need) {
		return nil, refusedRole, status.Error(codes.PermissionDenied, "permission denied: this method needs role "+string(need))
	}
	return NewContext(ctx, id), "", nil
}

// UnaryInterceptor enforces p on unary calls and puts the caller's Identity
// in the handler's context.
func (a *Authenticator) UnaryInterceptor(p Policy) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, p, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor enforces p on streaming calls and puts the caller's
// Identity in the stream's context.
func (a *Authenticator) StreamInterceptor(p Policy) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), p, info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
	}
}

// ServerOptions returns the interceptors of p as server options.
func (a *Authenticator) ServerOptions(p Policy) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor(p)),
		grpc.ChainStreamInterceptor(a.StreamInterceptor(p)),
	}
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
