package adminclient_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/lookup/adminclient"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

const (
	scanToken   = "scan-secret"
	lookupToken = "lookup-secret"
)

// serve runs a tcs node (tcs/lookup) over rep on 127.0.0.1, with the replica
// admin API if admin, and returns a plaintext connection to it.
func serve(t *testing.T, rep tcs.Replica, admin bool) *grpc.ClientConn {
	t.Helper()
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.ReplicaScan, scanToken, "verify")+"\n"+auth.Line(auth.Lookup, lookupToken, "svc")), "test")
	if err != nil {
		t.Fatal(err)
	}
	srv := lookup.New(lookup.Config{Region: "eu-west-1", Replica: rep, Feed: fanout.New(fanout.Options{}), FeedTimeout: -1, ReplicaAdmin: admin})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis, lookup.ServeOptions{Auth: auth.Static(set)}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func replica(t *testing.T) *boltreplica.Replica {
	t.Helper()
	r, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx := context.Background()
	for _, ev := range []*tenant.ChangeEvent{
		replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "old.example.com": 1}, nil),
		replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 1}, map[string]int64{"old.example.com": 2}),
		replicatest.Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil),
		replicatest.Tombstone("gone", 3, nil),
	} {
		if _, err := r.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func withToken(t *testing.T, token string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// scanAll pages through both scans of s, limit records a page.
func scanAll(t *testing.T, ctx context.Context, s tcs.Scanner, limit int) ([]*tenant.Tenant, []tcs.HostEntry) {
	t.Helper()
	var docs []*tenant.Tenant
	var hosts []tcs.HostEntry
	for cursor := ""; ; {
		page, next, err := s.ScanDocs(ctx, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("ScanDocs returned %d docs, limit %d", len(page), limit)
		}
		docs = append(docs, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	for cursor := ""; ; {
		page, next, err := s.ScanHosts(ctx, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	return docs, hosts
}

// TestScanMatchesReplica: paging through a region remotely returns what the
// replica holds (tombstones and released hostnames included), as domain
// values.
func TestScanMatchesReplica(t *testing.T) {
	t.Parallel()
	rep := replica(t)
	s := adminclient.New(serve(t, rep, true), "eu-west-1")
	wantDocs, wantHosts := scanAll(t, context.Background(), rep, 1000)
	if len(wantDocs) != 3 || len(wantHosts) != 3 {
		t.Fatalf("the replica holds %d docs and %d hostnames, want 3 and 3", len(wantDocs), len(wantHosts))
	}
	for _, limit := range []int{1, 2, 1000} {
		docs, hosts := scanAll(t, withToken(t, scanToken), s, limit)
		if diff := cmp.Diff(wantDocs, docs); diff != "" {
			t.Errorf("limit %d: docs (-replica +remote):\n%s", limit, diff)
		}
		if diff := cmp.Diff(wantHosts, hosts); diff != "" {
			t.Errorf("limit %d: hosts (-replica +remote):\n%s", limit, diff)
		}
	}
}

// TestScanErrorsExplained: the usual refusals keep their gRPC code and say
// what to do.
func TestScanErrorsExplained(t *testing.T) {
	t.Parallel()
	rep := replica(t)
	withAdmin, without := serve(t, rep, true), serve(t, rep, false)
	for _, tc := range []struct {
		name  string
		s     *adminclient.Scanner
		ctx   context.Context
		code  codes.Code
		hints string
	}{
		{"no token", adminclient.New(withAdmin, "r"), context.Background(), codes.Unauthenticated, "(check the token: a token of role replica-scan)"},
		{"no token, named", adminclient.New(withAdmin, "r", adminclient.WithTokenHint("--scan-token")), context.Background(), codes.Unauthenticated, "(check --scan-token: a token of role replica-scan)"},
		{"lookup token", adminclient.New(withAdmin, "r"), withToken(t, lookupToken), codes.PermissionDenied, "(the token is not of role replica-scan)"},
		{"no admin API", adminclient.New(without, "r"), withToken(t, scanToken), codes.Unimplemented, "does not serve tcs.admin.v1.ReplicaAdmin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, derr := tc.s.ScanDocs(tc.ctx, "", 10)
			_, _, herr := tc.s.ScanHosts(tc.ctx, "", 10)
			for method, err := range map[string]error{"ScanDocs": derr, "ScanHosts": herr} {
				if status.Code(err) != tc.code {
					t.Errorf("%s: code %v (%v), want %v", method, status.Code(err), err, tc.code)
				}
				if err == nil || !strings.HasPrefix(err.Error(), method+": ") || !strings.Contains(err.Error(), tc.hints) {
					t.Errorf("%s: %v; want it to start with the method and hint %q", method, err, tc.hints)
				}
				var st interface{ GRPCStatus() *status.Status }
				if !errors.As(err, &st) {
					t.Errorf("%s: the gRPC status is not reachable through errors.As", method)
				}
			}
		})
	}
}
