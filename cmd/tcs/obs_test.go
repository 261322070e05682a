package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/testio"
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
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr testio.SyncBuffer
	go func() {
		done <- runWithReady(ctx, []string{"--region", "eu-west-1", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--data", t.TempDir()},
			func(string) string { return "" }, io.Discard, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("tcs exited: %v\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("tcs did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tcs: %v", err)
		}
	}()
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
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := obstest.Get(t, maddr, "/readyz"); code != http.StatusOK; code, _ = obstest.Get(t, maddr, "/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after 10s", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	obstest.CheckSurface(t, maddr, map[string]string{"component": "tcs", "region": "eu-west-1"}, http.StatusOK,
		"tcs_lookup_lookups_total", "tcs_lookup_request_duration_seconds")
	if strings.Contains(stderr.String(), "metrics port request") {
		t.Errorf("scrapes logged at the default level (info):\n%s", stderr.String())
	}
}
