package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// TestServesReplica: tcs serves what an applier left in the region's
// replica file, and stops cleanly.
func TestServesReplica(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rep, err := boltreplica.Open(cmdutil.Data(dir).Replica("eu-west-1"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 3, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatal(err)
	}
	rep.Close()

	tcs := startTCS(t, []string{"--region", "eu-west-1", "--addr", "127.0.0.1:0", "--data", dir}, nil)
	addr := tcs.addr
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := tcsv1.NewTenantContextServiceClient(conn)
	res, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: "ACME.example.com"})
	if err != nil || res.GetTenant().GetId() != "acme" || res.GetTenant().GetVersion() != 3 || res.GetRegion() != "eu-west-1" {
		t.Fatalf("Lookup = %v, %v", res, err)
	}
	if _, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: "nobody.example.com"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown hostname: %v, want NOT_FOUND", err)
	}
	if err := tcs.stop(); err != nil {
		t.Fatalf("tcs: %v", err)
	}
}

// TestHotKeysFile: tcs started with --hot-keys-file warms its cache from
// it, reports SERVING through gRPC health once warmed (no feed on the
// embedded backend), and on a clean stop leaves the hostnames it answered
// in the file for the next start; a corrupt file is logged, naming it, and
// the node starts cold.
func TestHotKeysFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rep, err := boltreplica.Open(cmdutil.Data(dir).Replica("eu-west-1"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme", "globex"} {
		if _, err := rep.Apply(context.Background(), replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	rep.Close()
	hotKeys := filepath.Join(dir, "hot-keys")
	if err := os.WriteFile(hotKeys, []byte("not a hot-keys file\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	serve := func(lookups ...string) string {
		t.Helper()
		tcs := startTCS(t, []string{"--region", "eu-west-1", "--addr", "127.0.0.1:0", "--metrics-addr", "", "--data", dir, "--hot-keys-file", hotKeys}, nil)
		addr := tcs.addr
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		testwait.Until(t, 10*time.Second, 5*time.Millisecond, "tcs to report SERVING", func() (bool, string) {
			hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil {
				return false, err.Error()
			}
			return hc.GetStatus() == healthpb.HealthCheckResponse_SERVING, hc.GetStatus().String()
		})
		c := tcsv1.NewTenantContextServiceClient(conn)
		for _, h := range lookups {
			if _, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: h}); err != nil {
				t.Fatalf("Lookup %s: %v", h, err)
			}
		}
		if err := tcs.stop(); err != nil {
			t.Fatalf("tcs: %v", err)
		}
		return tcs.stderr.String()
	}

	logs := serve("acme.example.com")
	if !strings.Contains(logs, "hot-keys file unusable: starting with a cold cache") || !strings.Contains(logs, hotKeys) {
		t.Fatalf("a corrupt hot-keys file is not logged naming %s:\n%s", hotKeys, logs)
	}
	if got, err := cache.ReadHotKeys(hotKeys, 0); err != nil || !slices.Equal(got, []string{"acme.example.com"}) {
		t.Fatalf("hot-keys file after a clean stop: %q, %v; want acme.example.com", got, err)
	}
	logs = serve()
	if !strings.Contains(logs, "cache warm-up done") || !strings.Contains(logs, "loaded=1") {
		t.Fatalf("the second start did not warm acme.example.com:\n%s", logs)
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "127.0.0.1:0"}, "--region is required"},
		{[]string{"--region", "x", "--tls-cert", "a.pem"}, "go together"},
		{[]string{"--region", "x", "--tls-client-ca", "ca.pem"}, "needs --tls-cert"},
		{[]string{"--region", "x", "--tls-cert", "/nonexistent/a.pem", "--tls-key", "/nonexistent/a.key"}, "TLS key pair"},
		{[]string{"--region", "x", "stray"}, "unexpected arguments"},
		{[]string{"--region", "x", "--fallback-region", "y"}, "--fallback-region needs --backend aws"},
		{[]string{"--region", "x", "--backend", "aws", "--aws-home-region", "us-east-1", "--fallback-region", "x"}, "is --region itself"},
		{[]string{"--region", "x", "--feed-down-ttl", "0s"}, "--feed-down-ttl 0s: must be positive"},
		{[]string{"--region", "x", "--feed-timeout", "soon"}, "invalid value \"soon\" for flag -feed-timeout"},
		{[]string{"--region", "x", "--max-concurrent-streams", "0"}, "--max-concurrent-streams 0"},
		{[]string{"--region", "x", "--negative-cache-size", "0"}, "--negative-cache-size 0: must be positive"},
		{[]string{"--region", "x", "--hot-keys", "0"}, "--hot-keys 0: must be positive"},
	} {
		err := run(context.Background(), c.args, noEnv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("tcs %v = %v, want error containing %q", c.args, err, c.want)
		}
	}
}
