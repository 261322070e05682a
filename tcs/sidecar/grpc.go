package sidecar

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/client"
)

// RegisterGRPC registers on gs the lookup API (tcs.v1.TenantContextService:
// Lookup, with min_version and tenant_id, and BatchLookup, answered from the
// client; Watch is UNIMPLEMENTED: the sidecar is the cache, callers look up
// through it on every request and cache nothing) and gRPC health, SERVING
// while Ready.
func (s *Server) RegisterGRPC(gs *grpc.Server) {
	tcsv1.RegisterTenantContextServiceServer(gs, &grpcService{s: s})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	s.onHealth(func(serving bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if serving {
			st = healthpb.HealthCheckResponse_SERVING
		}
		hs.SetServingStatus("", st)
		hs.SetServingStatus(tcsv1.TenantContextService_ServiceDesc.ServiceName, st)
	})
}

type grpcService struct {
	tcsv1.UnimplementedTenantContextServiceServer
	s *Server
}

func (g *grpcService) Lookup(ctx context.Context, req *tcsv1.LookupRequest) (*tcsv1.LookupResponse, error) {
	start := time.Now()
	s := g.s
	var (
		t    *tenant.Tenant
		meta client.Meta
		err  error
	)
	switch {
	case req.GetMinVersion() < 0:
		s.m.grpc[opLookup][outcomeInvalid].observe(start)
		return nil, status.Errorf(codes.InvalidArgument, "min_version %d: must not be negative", req.GetMinVersion())
	case req.GetMinVersion() == 0:
		t, meta, err = s.lk.LookupMeta(ctx, req.GetHostname())
	case req.GetTenantId() == "":
		t, err = s.lk.LookupAtLeast(ctx, req.GetHostname(), req.GetMinVersion())
	default:
		if verr := tenant.ValidateID(req.GetTenantId()); verr != nil {
			s.m.grpc[opLookup][outcomeInvalid].observe(start)
			return nil, status.Errorf(codes.InvalidArgument, "tenant_id %q: %s", req.GetTenantId(), tenant.ErrorMessage(verr))
		}
		t, err = s.lk.LookupTenantAtLeast(ctx, req.GetHostname(), req.GetTenantId(), req.GetMinVersion())
	}
	o := classify(err)
	if err == nil {
		var e *encoded
		if e, err = s.enc.of(t); err == nil {
			s.m.grpc[opLookup][o].observe(start)
			return &tcsv1.LookupResponse{Tenant: e.pb, Stale: meta.Stale, Region: meta.Region, Age: durationpb.New(meta.Age)}, nil
		}
		o = outcomeError
	}
	s.m.grpc[opLookup][o].observe(start)
	return nil, s.grpcError(req.GetHostname(), err)
}

func (g *grpcService) BatchLookup(ctx context.Context, req *tcsv1.BatchLookupRequest) (*tcsv1.BatchLookupResponse, error) {
	start := time.Now()
	s := g.s
	if n := len(req.GetHostnames()); n > MaxBatch {
		s.m.grpc[opBatch][outcomeInvalid].observe(start)
		return nil, status.Errorf(codes.InvalidArgument, "%d hostnames: at most %d in one BatchLookup", n, MaxBatch)
	}
	results, err := s.lk.BatchLookup(ctx, req.GetHostnames())
	if err != nil {
		s.m.grpc[opBatch][classify(err)].observe(start)
		return nil, s.grpcError("", err)
	}
	out := &tcsv1.BatchLookupResponse{Results: make([]*tcsv1.BatchLookupResult, len(results))}
	for i, res := range results {
		r := &tcsv1.BatchLookupResult{Hostname: res.Hostname, Stale: res.Meta.Stale}
		out.Results[i] = r
		err := res.Err
		if err == nil {
			var e *encoded
			if e, err = s.enc.of(res.Tenant); err == nil {
				r.Tenant, r.Age = e.pb, durationpb.New(res.Meta.Age)
				if out.Region == "" {
					out.Region = res.Meta.Region
				}
				continue
			}
		}
		st := status.Convert(s.grpcError(res.Hostname, err))
		r.Code, r.Message = int32(st.Code()), st.Message()
		if res.Meta.Stale {
			r.Age = durationpb.New(res.Meta.Age)
		}
	}
	s.m.grpc[opBatch][outcomeOK].observe(start)
	return out, nil
}

func (g *grpcService) Watch(*tcsv1.WatchRequest, grpc.ServerStreamingServer[tcsv1.WatchResponse]) error {
	return status.Error(codes.Unimplemented, "tcs-sidecar does not serve Watch: it is the cache; look up through it on every request and cache nothing")
}

// grpcError maps a lookup's error to a gRPC status: the codes a tcs lookup
// server answers with.
func (s *Server) grpcError(hostname string, err error) error {
	switch classify(err) {
	case outcomeNotFound:
		return status.Errorf(codes.NotFound, "no live tenant owns hostname %q", hostname)
	case outcomeInvalid:
		return status.Errorf(codes.InvalidArgument, "invalid hostname %q: %s", hostname, invalidReason(hostname))
	case outcomeUnavailable:
		s.log.Warn("lookup unavailable", "hostname", hostname, "err", err)
		return status.Error(codes.Unavailable, "no TCS region answered and no cached answer was left to serve; retry later")
	case outcomeNotReached:
		return status.Error(codes.Unavailable, err.Error())
	case outcomeCanceled:
		return status.FromContextError(err).Err()
	}
	s.log.Error("lookup failed", "hostname", hostname, "err", err)
	return status.Error(codes.Internal, fmt.Sprintf("internal error looking up %q", hostname))
}
