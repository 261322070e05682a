package client_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// startAuthRegion serves a region that needs the lookup role, over TLS
// issued by ca, accepting token and client certificates with common name
// "edge".
func startAuthRegion(tb testing.TB, ca *authtest.CA, token string) string {
	tb.Helper()
	rep, err := boltreplica.Open(filepath.Join(tb.TempDir(), "r.db"), boltreplica.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rep.Close() })
	if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		tb.Fatal(err)
	}
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.Lookup, token, "svc")+"\nlookup cert:cn:edge edge\n"), "creds")
	if err != nil {
		tb.Fatal(err)
	}
	srvCert := ca.Server(tb, "region")
	files, err := auth.NewServerTLS(auth.TLSFiles{Cert: srvCert.CertFile, Key: srvCert.KeyFile, ClientCA: ca.File})
	if err != nil {
		tb.Fatal(err)
	}
	hub := fanout.New(fanout.Options{})
	tb.Cleanup(func() { hub.Close() })
	srv := lookup.New(lookup.Config{Region: "auth-1", Replica: rep, Feed: hub})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, lis, lookup.ServeOptions{TLS: files.Config(), Auth: auth.Static(set), ShutdownTimeout: time.Second})
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	waitServing(tb, "auth-1", hub, lis.Addr().String(), credentials.NewTLS(ca.ClientTLS()))
	return lis.Addr().String()
}

// TestClientCredentials: WithToken over WithTLS, or a client certificate
// in WithTLS, authenticates the client's lookups; none, or a wrong token,
// does not; WithToken without TLS is refused for a region off loopback.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	ca := authtest.NewCA(t)
	token := authtest.Token("client")
	addr := startAuthRegion(t, ca, token)
	lookupWith := func(opts ...client.Option) error {
		c, err := client.New(testwait.Context(t), append([]client.Option{client.WithRegions(addr), client.WithCacheSize(0), client.WithLookupTimeout(2 * time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ten, err := c.Lookup(testwait.Context(t), "acme.example.com")
		if err == nil && ten.ID != "acme" {
			t.Errorf("looked up %+v", ten)
		}
		return err
	}
	if err := lookupWith(client.WithTLS(ca.ClientTLS()), client.WithToken(token)); err != nil {
		t.Errorf("token over TLS: %v", err)
	}
	if err := lookupWith(client.WithTLS(ca.ClientTLS(ca.Client(t, "edge")))); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if err := lookupWith(client.WithTLS(ca.ClientTLS())); err == nil {
		t.Error("no credentials: looked up")
	}
	if err := lookupWith(client.WithTLS(ca.ClientTLS()), client.WithToken(authtest.Token("wrong"))); err == nil {
		t.Error("wrong token: looked up")
	}
	_, err := client.New(testwait.Context(t), client.WithRegions("tcs.example.com:9001"), client.WithToken(token))
	if err == nil || !strings.Contains(err.Error(), "in the clear") {
		t.Errorf("token without TLS to a remote region: %v", err)
	}
}
