package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
	"github.com/tcs-dev/tcs/internal/testwait"
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

// TestWatchSurvivesReload: a Watch stream opened before SIGHUP keeps
// delivering invalidations after the credentials file changed (even though
// its token was removed: what is open stays open, the next call is
// checked), while the new token works and the removed one is refused.
func TestWatchSurvivesReload(t *testing.T) {
	oldTok, newTok := authtest.Token("old-watch"), authtest.Token("new-watch")
	file := authtest.WriteFile(t, "", auth.Line(auth.Lookup, oldTok, "watcher"))
	s := startWith(t, map[string]string{"TCS_TOKENS_FILE": file})
	addr := s.ep.Regions["eu-west-1"]
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := tcsv1.NewTenantContextServiceClient(conn)
	withTok := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	ctx, cancel := context.WithCancel(withTok(oldTok))
	defer cancel()
	stream, err := c.Watch(ctx, &tcsv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *tcsv1.WatchResponse, 100)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			msgs <- m
		}
	}()
	if _, err := c.Lookup(withTok(oldTok), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil && status.Code(err) != codes.NotFound {
		t.Fatalf("Lookup with the old token: %v", err)
	}

	authtest.WriteFile(t, file, auth.Line(auth.Lookup, newTok, "watcher"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the new token to be accepted", func() bool {
		_, err := c.Lookup(withTok(newTok), &tcsv1.LookupRequest{Hostname: "acme.example.com"})
		return err == nil || status.Code(err) == codes.NotFound
	})
	if _, err := c.Lookup(withTok(oldTok), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Lookup with the removed token: %v", err)
	}
	if _, err := s.api(t, adm).Create(context.Background(), json.RawMessage(`{"id":"reloaded","hostnames":["reloaded.example.com"]}`)); err != nil {
		t.Fatalf("create: %v", err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m.GetInvalidation().GetTenantId() == "reloaded" {
				return
			}
		case err := <-errc:
			t.Fatalf("the Watch stream opened before the reload ended: %v", err)
		case <-deadline:
			t.Fatal("no invalidation of the new tenant on the Watch stream opened before the reload")
		}
	}
}
