package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/sidecar"
)

// serveGRPC serves s's gRPC API on a loopback port and returns a
// connection to it.
func serveGRPC(t *testing.T, s *sidecar.Server) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	s.RegisterGRPC(gs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGRPCLookup(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	f.errs["bad..host"] = fmt.Errorf("%w %q: %s", client.ErrInvalidHostname, "bad..host", "empty label")
	f.errs["down.example.com"] = fmt.Errorf("%w: lookup down.example.com: refused", client.ErrUnavailable)
	f.errs["behind.example.com"] = &client.TooOldError{Hostname: "behind.example.com", MinVersion: 9, Best: 8, Region: "eu-west-1"}
	f.errs["boom.example.com"] = errors.New("secret internal detail")
	api := tcsv1.NewTenantContextServiceClient(serveGRPC(t, sidecar.New(sidecar.Config{Client: f})))
	ctx := context.Background()
	res, err := api.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "acme.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	want := &tcsv1.LookupResponse{Tenant: tcsv1.TenantToProto(acme()), Region: "eu-west-1"}
	if d := cmp.Diff(want, res, protocmp.Transform(), protocmp.IgnoreFields(&tcsv1.LookupResponse{}, "age")); d != "" {
		t.Errorf("Lookup (-want +got):\n%s", d)
	}
	if res.GetAge().AsDuration() != 2500*time.Millisecond {
		t.Errorf("age %v, want 2.5s", res.GetAge().AsDuration())
	}
	if _, err := api.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "acme.example.com", MinVersion: 7, TenantId: "acme"}); err != nil {
		t.Errorf("Lookup min_version: %v", err)
	}
	if d := cmp.Diff([]string{"LookupTenantAtLeast acme.example.com acme 7"}, f.takeCalls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	for _, tc := range []struct {
		req  *tcsv1.LookupRequest
		code codes.Code
		msg  string
	}{
		{&tcsv1.LookupRequest{Hostname: "nobody.example.com"}, codes.NotFound, `no live tenant owns hostname "nobody.example.com"`},
		{&tcsv1.LookupRequest{Hostname: "bad..host"}, codes.InvalidArgument, `invalid hostname "bad..host": has an empty label ("..")`},
		{&tcsv1.LookupRequest{Hostname: "down.example.com"}, codes.Unavailable, "no TCS region answered"},
		{&tcsv1.LookupRequest{Hostname: "behind.example.com", MinVersion: 9}, codes.Unavailable, "was 8 (eu-west-1)"},
		{&tcsv1.LookupRequest{Hostname: "boom.example.com"}, codes.Internal, "internal error"},
		{&tcsv1.LookupRequest{Hostname: "acme.example.com", MinVersion: -1}, codes.InvalidArgument, "min_version -1"},
		{&tcsv1.LookupRequest{Hostname: "acme.example.com", MinVersion: 1, TenantId: "Bad Id"}, codes.InvalidArgument, `tenant_id "Bad Id"`},
	} {
		_, err := api.Lookup(ctx, tc.req)
		st := status.Convert(err)
		if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) || strings.Contains(st.Message(), "secret") {
			t.Errorf("Lookup(%v) = %v, want %v with %q", tc.req, err, tc.code, tc.msg)
		}
	}
}

func TestGRPCBatchLookup(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	api := tcsv1.NewTenantContextServiceClient(serveGRPC(t, sidecar.New(sidecar.Config{Client: f})))
	ctx := context.Background()
	res, err := api.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: []string{"acme.example.com", "nobody.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	want := &tcsv1.BatchLookupResponse{Region: "eu-west-1", Results: []*tcsv1.BatchLookupResult{
		{Hostname: "acme.example.com", Tenant: tcsv1.TenantToProto(acme())},
		{Hostname: "nobody.example.com", Code: int32(codes.NotFound), Message: `no live tenant owns hostname "nobody.example.com"`},
	}}
	if d := cmp.Diff(want, res, protocmp.Transform(), protocmp.IgnoreFields(&tcsv1.BatchLookupResult{}, "age")); d != "" {
		t.Errorf("BatchLookup (-want +got):\n%s", d)
	}
	_, err = api.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: make([]string, sidecar.MaxBatch+1)})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "at most 100") {
		t.Errorf("101 hostnames: %v", err)
	}
	f.batchErr = client.ErrClosed
	if _, err := api.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: []string{"a.example.com"}}); status.Code(err) != codes.Unavailable {
		t.Errorf("closed client: %v, want Unavailable", err)
	}
	stream, err := api.Watch(ctx, &tcsv1.WatchRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "the sidecar") && !strings.Contains(st.Message(), "tcs-sidecar") {
		t.Errorf("Watch: %v, want Unimplemented saying why", err)
	}
}

// TestReadyAndDrain: unready until the client has watched; ready from then
// on, a lost stream included; unready after Drain; gRPC health follows.
func TestReadyAndDrain(t *testing.T) {
	t.Parallel()
	f := newFake()
	s := sidecar.New(sidecar.Config{Client: f, PollInterval: time.Millisecond})
	health := healthpb.NewHealthClient(serveGRPC(t, s))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	checkHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, svc := range []string{"", "tcs.v1.TenantContextService"} {
			deadline := time.Now().Add(10 * time.Second)
			for {
				res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
				if err == nil && res.GetStatus() == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("health %q: %v %v, want %v", svc, res, err, want)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	if err := s.Ready(); err == nil || !strings.Contains(err.Error(), "not up yet") {
		t.Errorf("Ready before watching = %v", err)
	}
	checkHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	f.watching.Store(true)
	checkHealth(healthpb.HealthCheckResponse_SERVING)
	if err := s.Ready(); err != nil {
		t.Errorf("Ready while watching = %v", err)
	}
	f.watching.Store(false)
	// Let Run poll a few times: nothing may change.
	for n := f.polls.Load() + 3; f.polls.Load() < n; {
		time.Sleep(time.Millisecond)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after the stream was lost = %v, want still ready", err)
	}
	s.Drain()
	if err := s.Ready(); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Errorf("Ready after Drain = %v", err)
	}
	checkHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
