package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/testwait"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
)

// TestAdminSurface drives what tcsctl uses against the running system: the
// catalog's export and resync, and each region's replica admin API, opened
// by the admin token.
func TestAdminSurface(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.eventually(t, "acme.example.com", atVersion("acme", 1))

	// Export: every tenant with its claims.
	ctx := context.Background()
	page, err := s.api(t, rdr).Export(ctx, "", 2)
	if err != nil || len(page.Items) != 2 || page.NextPageToken == "" {
		t.Fatalf("export: %+v (%v)", page, err)
	}
	if page.Items[0].Tenant.ID != "acme" || len(page.Items[0].Claims) != 2 {
		t.Errorf("first exported item: %+v", page.Items[0])
	}

	// Resync for one region only: applied there, skipped elsewhere.
	if _, err := s.api(t, rdr).Resync(ctx, []catalog.ResyncRequest{{ID: "acme"}}, nil); httpclient.Status(err) != http.StatusForbidden {
		t.Errorf("resync with the reader token: %v, want 403", err)
	}
	res, err := s.api(t, adm).Resync(ctx, []catalog.ResyncRequest{{ID: "acme"}, {ID: "ghost"}}, []string{"eu-west-1"})
	if want := (catalog.ResyncResult{Resynced: []catalog.ResyncedTenant{{ID: "acme", Version: 1}}, NotFound: []string{"ghost"}}); err != nil || !cmp.Equal(res, want) {
		t.Fatalf("resync: %+v, %v; want %+v", res, err, want)
	}
	// The stream orders events per tenant only: the resync can reach a
	// region before another tenant's seed does, so wait for the seeds too
	// (the replica scans below count them).
	testwait.Until(t, 15*time.Second, 20*time.Millisecond, "the seeds everywhere and the resync in eu-west-1 only", func() (bool, string) {
		_, _, metrics := s.rest(t, "GET", "/metrics", rdr, "")
		return strings.Contains(metrics, `tcs_apply_events_total{component="apply",outcome="other_region",region="us-east-1"} 1`) &&
				strings.Contains(metrics, `tcs_apply_events_total{component="apply",outcome="other_region",region="ap-southeast-2"} 1`) &&
				strings.Contains(metrics, `tcs_apply_events_total{component="apply",outcome="applied",region="us-east-1"} 3`) &&
				strings.Contains(metrics, `tcs_apply_events_total{component="apply",outcome="applied",region="ap-southeast-2"} 3`) &&
				strings.Contains(metrics, `tcs_apply_events_total{component="apply",outcome="applied",region="eu-west-1"} 4`),
			"apply metrics:\n" + grepLines(metrics, "tcs_apply_events_total")
	})

	// Each region's replica admin API: the replica-scan token opens it; the
	// catalog's tokens, admin included, are unknown to a lookup server.
	for region, addr := range s.ep.Regions {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		admin := adminv1.NewReplicaAdminClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, tok := range []string{rdr, adm} {
			if _, err := admin.ScanDocs(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), &adminv1.ScanRequest{}); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s: ScanDocs with the catalog token %s: %v, want UNAUTHENTICATED", region, tok, err)
			}
		}
		authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+scan)
		docs, err := admin.ScanDocs(authed, &adminv1.ScanRequest{})
		if err != nil || len(docs.GetDocs()) != 3 || docs.GetRegion() != region || docs.GetNextCursor() != "" {
			t.Errorf("%s: ScanDocs = %d docs in %q, next %q, %v; want the 3 seeded tenants", region, len(docs.GetDocs()), docs.GetRegion(), docs.GetNextCursor(), err)
		}
		hosts, err := admin.ScanHosts(authed, &adminv1.ScanRequest{Limit: 2})
		if err != nil || len(hosts.GetHosts()) != 2 || hosts.GetNextCursor() == "" {
			t.Errorf("%s: ScanHosts(limit 2) = %v, %v", region, hosts, err)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
