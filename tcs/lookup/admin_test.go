package lookup_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/testwait"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// limitRecorder is a bolt replica that records the limits it is scanned
// with.
type limitRecorder struct {
	*boltreplica.Replica
	mu     sync.Mutex
	limits []int
}

func (l *limitRecorder) ScanDocs(ctx context.Context, cursor string, limit int) ([]*tenant.Tenant, string, error) {
	l.mu.Lock()
	l.limits = append(l.limits, limit)
	l.mu.Unlock()
	return l.Replica.ScanDocs(ctx, cursor, limit)
}

func boltReplica(t *testing.T) *boltreplica.Replica {
	t.Helper()
	r, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func bearer(ctx context.Context, auth string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", auth)
}

func TestReplicaAdmin(t *testing.T) {
	t.Parallel()
	rep := &limitRecorder{Replica: boltReplica(t)}
	ctx := testwait.Context(t)
	a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "old.example.com": 1}, nil)
	a2 := replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 1}, map[string]int64{"old.example.com": 2})
	b1 := replicatest.Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil)
	gone := replicatest.Tombstone("gone", 3, nil)
	for _, ev := range []*tenant.ChangeEvent{a1, a2, b1, gone} {
		if _, err := rep.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	e := start(t, lookup.Config{Replica: rep, Region: "eu-west-1", ReplicaAdmin: true}, lookup.ServeOptions{Auth: testAuth(t,
		auth.Line(auth.ReplicaScan, "adm-1", "verify-1"), auth.Line(auth.ReplicaScan, "adm-2", "verify-2"), auth.Line(auth.Lookup, "lkp", "svc"))})
	admin := adminv1.NewReplicaAdminClient(e.conn)

	// Without a token, with a wrong one, or with another scheme: refused;
	// a lookup token is not a replica-scan one.
	for _, cred := range []string{"", "Bearer nope", "Bearer adm-1x", "Basic adm-1", "adm-1", "Bearer ", "Bearer lkp"} {
		want := codes.Unauthenticated
		c := ctx
		if cred != "" {
			c = bearer(ctx, cred)
		}
		if cred == "Bearer lkp" {
			want = codes.PermissionDenied
		}
		if _, err := admin.ScanDocs(c, &adminv1.ScanRequest{}); status.Code(err) != want {
			t.Errorf("ScanDocs with authorization %q: %v, want %v", cred, err, want)
		}
		if _, err := admin.ScanHosts(c, &adminv1.ScanRequest{}); status.Code(err) != want {
			t.Errorf("ScanHosts with authorization %q: %v, want %v", cred, err, want)
		}
	}
	// Lookups need the lookup role.
	if _, err := e.client.Lookup(bearer(ctx, "Bearer lkp"), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil {
		t.Fatalf("Lookup with a lookup token: %v", err)
	}

	// Either token pages through the documents, tombstones included.
	var docs []*tcsv1.Tenant
	for cursor, token := "", "Bearer adm-1"; ; token = "bearer adm-2" {
		resp, err := admin.ScanDocs(bearer(ctx, token), &adminv1.ScanRequest{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatalf("ScanDocs(%q): %v", cursor, err)
		}
		if resp.GetRegion() != "eu-west-1" || len(resp.GetDocs()) > 2 {
			t.Fatalf("ScanDocs page: region %q, %d docs", resp.GetRegion(), len(resp.GetDocs()))
		}
		docs = append(docs, resp.GetDocs()...)
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
	}
	want := []*tcsv1.Tenant{tcsv1.TenantToProto(a2.Tenant), tcsv1.TenantToProto(b1.Tenant), tcsv1.TenantToProto(gone.Tenant)}
	if diff := cmp.Diff(want, docs, protocmp.Transform()); diff != "" {
		t.Errorf("scanned docs (-want +got):\n%s", diff)
	}

	resp, err := admin.ScanHosts(bearer(ctx, "Bearer adm-2"), &adminv1.ScanRequest{})
	if err != nil {
		t.Fatalf("ScanHosts: %v", err)
	}
	wantHosts := &adminv1.ScanHostsResponse{Region: "eu-west-1", Hosts: []*adminv1.HostEntry{
		{Hostname: "acme.example.com", TenantId: "acme", ClaimVersion: 1},
		{Hostname: "beta.example.com", TenantId: "beta", ClaimVersion: 1},
		{Hostname: "old.example.com", ClaimVersion: 2},
	}}
	if diff := cmp.Diff(wantHosts, resp, protocmp.Transform()); diff != "" {
		t.Errorf("ScanHosts (-want +got):\n%s", diff)
	}

	// Reads bypass the cache: a change applied to the replica behind the
	// server's back (no invalidation) shows in a scan at once, while the
	// lookup still answers from its cache.
	a3 := replicatest.Event("acme", 3, map[string]int64{"acme.example.com": 1}, nil)
	if _, err := rep.Apply(ctx, a3); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.Lookup(bearer(ctx, "Bearer lkp"), &tcsv1.LookupRequest{Hostname: "acme.example.com"})
	if err != nil || got.GetTenant().GetVersion() != 2 {
		t.Fatalf("cached Lookup = %v, %v; want version 2 from the cache", got.GetTenant().GetVersion(), err)
	}
	page, err := admin.ScanDocs(bearer(ctx, "Bearer adm-1"), &adminv1.ScanRequest{Limit: 1})
	if err != nil || len(page.GetDocs()) != 1 || page.GetDocs()[0].GetVersion() != 3 {
		t.Fatalf("ScanDocs after a change = %v, %v; want acme@3", page, err)
	}

	// The limit is capped; zero and negative mean the replica's default.
	rep.mu.Lock()
	rep.limits = nil
	rep.mu.Unlock()
	for _, limit := range []int32{0, -5, 100000} {
		if _, err := admin.ScanDocs(bearer(ctx, "Bearer adm-1"), &adminv1.ScanRequest{Limit: limit}); err != nil {
			t.Fatal(err)
		}
	}
	rep.mu.Lock()
	if diff := cmp.Diff([]int{0, -5, lookup.MaxScanLimit}, rep.limits); diff != "" {
		t.Errorf("limits passed to the replica (-want +got):\n%s", diff)
	}
	rep.mu.Unlock()

	hc, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "tcs.admin.v1.ReplicaAdmin"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of the admin service: %v, %v", hc, err)
	}
}

// TestReplicaAdminOff: without Config.ReplicaAdmin, or over a replica that
// cannot be scanned, the admin service is not served; served without
// authentication it refuses every call (it would hand every tenant to
// anyone).
func TestReplicaAdminOff(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]lookup.Config{
		"off":                 {Replica: boltReplica(t)},
		"replica not Scanner": {Replica: newFakeReplica(), ReplicaAdmin: true},
	} {
		e := start(t, cfg, lookup.ServeOptions{})
		if e.srv.Admin() != nil {
			t.Errorf("%s: Admin() is not nil", name)
		}
		_, err := adminv1.NewReplicaAdminClient(e.conn).ScanDocs(bearer(testwait.Context(t), "Bearer adm"), &adminv1.ScanRequest{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: ScanDocs = %v, want UNIMPLEMENTED", name, err)
		}
	}
	e := start(t, lookup.Config{Replica: boltReplica(t), ReplicaAdmin: true}, lookup.ServeOptions{})
	if _, err := adminv1.NewReplicaAdminClient(e.conn).ScanDocs(bearer(testwait.Context(t), "Bearer adm"), &adminv1.ScanRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ReplicaAdmin without authentication: %v, want UNAUTHENTICATED", err)
	}
}

var _ tcs.Scanner = (*limitRecorder)(nil)
