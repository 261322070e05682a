package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/auth"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// TestLookupsNeedLookupToken: with a lookup credential configured (make
// run sets TCS_LOOKUP_TOKEN), every region refuses lookups without it or
// with a catalog token, and answers with it.
func TestLookupsNeedLookupToken(t *testing.T) {
	t.Parallel()
	s := start(t)
	req := &tcsv1.LookupRequest{Hostname: "acme.example.com"}
	for region, addr := range s.ep.Regions {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := tcsv1.NewTenantContextServiceClient(conn)
		if _, err := c.Lookup(context.Background(), req); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: Lookup without a token: %v", region, err)
		}
		if _, err := c.Lookup(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adm), req); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: Lookup with the catalog admin token: %v", region, err)
		}
		with := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+auth.DevLookupToken)
		if _, err := c.Lookup(with, req); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("%s: Lookup with the lookup token: %v", region, err)
		}
	}
}

// TestRefusesNonLoopbackDev: tcs-dev's development tokens never serve a
// non-loopback address, and no server binds one without TLS.
func TestRefusesNonLoopbackDev(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TCS_ADMIN_TOKEN": adm}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--catalog-addr", "0.0.0.0:0", "--regions", "us-east-1=127.0.0.1:0"}, "refusing to serve --catalog-addr 0.0.0.0:0 without TLS"},
		{[]string{"--catalog-addr", "127.0.0.1:0", "--regions", "us-east-1=:0"}, "refusing to serve --regions us-east-1 :0 without TLS and authentication"},
	} {
		err := run(context.Background(), append([]string{"--data", t.TempDir()}, c.args...), func(k string) string { return env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
