package cmdutil

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/testio"
)

// Every call gets x-request-id in its response header: the caller's if
// sane, else a fresh one; a failed call's log line names it.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	var logs testio.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	opts := append(RequestIDs(log), grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Internal, "replica unreadable")
	}))
	gs := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hc := healthpb.NewHealthClient(conn)

	check := func(inbound string) string {
		t.Helper()
		ctx := context.Background()
		if inbound != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", inbound)
		}
		var hdr metadata.MD
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr)); err != nil {
			t.Fatal(err)
		}
		ids := hdr.Get("x-request-id")
		if len(ids) != 1 {
			t.Fatalf("response header x-request-id %q, want one", ids)
		}
		return ids[0]
	}
	if got := check("req-42"); got != "req-42" {
		t.Errorf("sane inbound id: got %q back, want it echoed", got)
	}
	a, b := check(""), check("")
	if len(a) != 32 || a == b {
		t.Errorf("generated ids %q and %q: want two different 32-character ids", a, b)
	}
	// grpc-go clients refuse to send control characters; these it sends.
	for _, hostile := range []string{strings.Repeat("x", 200), "a b", `"quoted"; level=ERROR`} {
		if got := check(hostile); got == hostile || len(got) != 32 {
			t.Errorf("hostile inbound id %q: got %q back, want a fresh one", hostile, got)
		}
	}
	if strings.Contains(logs.String(), "level=") {
		t.Errorf("successful calls logged at info:\n%s", logs.String())
	}

	var hdr metadata.MD
	err = conn.Invoke(context.Background(), "/x.Missing/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}, grpc.Header(&hdr))
	if status.Code(err) != codes.Internal {
		t.Fatalf("failing call: %v, want Internal", err)
	}
	id := hdr.Get("x-request-id")
	if len(id) != 1 {
		t.Fatalf("failing call's header x-request-id %q, want one", id)
	}
	want := `level=WARN msg="call failed" request_id=` + id[0] + ` method=/x.Missing/Call code=Internal`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("no line %q in:\n%s", want, logs.String())
	}
}

// BenchmarkRequestIDs: what the request-id interceptors add to a unary
// call over loopback (a health Check), against the same server without
// them.
func BenchmarkRequestIDs(b *testing.B) {
	for _, withIDs := range []bool{false, true} {
		name := "without"
		if withIDs {
			name = "with"
		}
		b.Run(name, func(b *testing.B) {
			var opts []grpc.ServerOption
			if withIDs {
				opts = RequestIDs(slog.New(slog.DiscardHandler))
			}
			gs := grpc.NewServer(opts...)
			healthpb.RegisterHealthServer(gs, health.NewServer())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go gs.Serve(ln)
			defer gs.Stop()
			conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			hc := healthpb.NewHealthClient(conn)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
