package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	// --version needs nothing else: not even --region.
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	obstest.CheckVersion(t, "tcs", stdout.String())
}

// The metrics port serves /metrics (every series labelled component=tcs
// and region, tcs_build_info among them), /healthz, /readyz and 404
// elsewhere; a lookup's response header carries x-request-id.
func TestMetricsPortAndRequestID(t *testing.T) {
	t.Parallel()
	tcs := startTCS(t, []string{"--region", "eu-west-1", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--data", t.TempDir()}, nil)
	addr, stderr := tcs.addr, tcs.stderr
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var hdr metadata.MD
	octx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "lookup-7")
	_, _ = tcsv1.NewTenantContextServiceClient(conn).Lookup(octx, &tcsv1.LookupRequest{Hostname: "nobody.example.com"}, grpc.Header(&hdr))
	if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "lookup-7" {
		t.Errorf("response header x-request-id %q, want the caller's lookup-7", got)
	}

	maddr := obstest.MetricsAddr(t, stderr.String())
	// Start-up (warm-up, feed) may hold readiness back a moment.
	testwait.Until(t, 10*time.Second, 20*time.Millisecond, "/readyz to answer 200", func() (bool, string) {
		code, _ := obstest.Get(t, maddr, "/readyz")
		return code == http.StatusOK, fmt.Sprintf("it answers %d", code)
	})
	obstest.CheckSurface(t, maddr, map[string]string{"component": "tcs", "region": "eu-west-1"}, http.StatusOK,
		"tcs_lookup_lookups_total", "tcs_lookup_request_duration_seconds")
	if strings.Contains(stderr.String(), "metrics port request") {
		t.Errorf("scrapes logged at the default level (info):\n%s", stderr.String())
	}
}

// A call that authentication refuses still carries its request id: the
// request-id interceptor runs around authentication.
func TestRequestIDOnRefusedCall(t *testing.T) {
	t.Parallel()
	token := authtest.Token("lookup")
	tcs := startTCS(t, []string{"--region", "eu-west-1", "--addr", "127.0.0.1:0", "--metrics-addr", "", "--data", t.TempDir()},
		func(k string) string {
			if k == "TCS_LOOKUP_TOKEN" {
				return token
			}
			return ""
		})
	addr := tcs.addr
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var hdr, trl metadata.MD
	octx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "refused-1")
	_, err = tcsv1.NewTenantContextServiceClient(conn).Lookup(octx, &tcsv1.LookupRequest{Hostname: "acme.example.com"}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Lookup without the lookup token: %v, want UNAUTHENTICATED", err)
	}
	got := append(hdr.Get("x-request-id"), trl.Get("x-request-id")...)
	if len(got) == 0 || got[0] != "refused-1" {
		t.Errorf("x-request-id of a refused call: header %q trailer %q, want refused-1", hdr.Get("x-request-id"), trl.Get("x-request-id"))
	}
}
