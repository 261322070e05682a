package nodeprobe_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/nodeprobe"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// TestRemote: a node in another process is asked over ReplicaAdmin with a
// replica-scan credential; without one it refuses.
func TestRemote(t *testing.T) {
	t.Parallel()
	ctx := testwait.Context(t)
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	if _, err := rep.Apply(ctx, replicatest.Event("acme", 3, map[string]int64{"acme.example.com": 3}, nil)); err != nil {
		t.Fatal(err)
	}
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.ReplicaScan, "scan-token-0123456789", "catalog")), "test")
	if err != nil {
		t.Fatal(err)
	}
	srv := lookup.New(lookup.Config{Region: "eu-west-1", Replica: rep, ReplicaAdmin: true})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(sctx, lis, lookup.ServeOptions{Auth: auth.Static(set), ShutdownTimeout: time.Second})
	}()
	t.Cleanup(func() { cancel(); <-done })
	n := propagation.Node{Region: "eu-west-1", ID: "node-1", Addr: lis.Addr().String()}

	r := nodeprobe.NewRemote(grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer("scan-token-0123456789")))
	st, err := r.Probe(ctx, n, "acme", 3)
	if err != nil || !st.Served || st.ReplicaVersion != 3 || !st.FeedUp {
		t.Errorf("Probe: %+v, %v; want served at version 3", st, err)
	}
	if st, err := r.Probe(ctx, n, "acme", 4); err != nil || st.Served {
		t.Errorf("Probe of version 4: %+v, %v; want not served", st, err)
	}
	if _, err := r.Probe(ctx, n, "acme", 0); status.Code(err) != codes.InvalidArgument {
		t.Errorf("version 0: %v, want InvalidArgument", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Probe(ctx, n, "acme", 3); err == nil {
		t.Error("Probe after Close succeeded")
	}

	anon := nodeprobe.NewRemote(grpc.WithTransportCredentials(insecure.NewCredentials()))
	t.Cleanup(func() { anon.Close() })
	if _, err := anon.Probe(ctx, n, "acme", 3); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a credential: %v, want Unauthenticated", err)
	}
}
