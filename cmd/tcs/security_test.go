package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// TestRefusesUnprotectedStart: a non-loopback --addr without TLS, without
// credentials, or with a development token stops the start, naming the
// flag to set.
func TestRefusesUnprotectedStart(t *testing.T) {
	t.Parallel()
	ca := authtest.NewCA(t)
	srv := ca.Server(t, "tcs")
	strong := authtest.Token("lookup")
	env := func(k, v string) func(string) string {
		return func(key string) string {
			if key == k {
				return v
			}
			return ""
		}
	}
	tlsArgs := []string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile}
	for _, c := range []struct {
		name string
		args []string
		env  func(string) string
		want string
	}{
		{"all interfaces, nothing", []string{"--addr", ":0"}, env("", ""), "refusing to serve --addr :0 without TLS and authentication: set --tls-cert and --tls-key, and --tokens-file"},
		{"credentials without TLS", []string{"--addr", "0.0.0.0:0"}, env("TCS_LOOKUP_TOKEN", strong), "without TLS"},
		{"TLS without credentials", append([]string{"--addr", "0.0.0.0:0"}, tlsArgs...), env("", ""), "without authentication: set --tokens-file"},
		{"lookups open (only replica-scan credentials)", append([]string{"--addr", "0.0.0.0:0"}, tlsArgs...), env("TCS_SCAN_TOKEN", strong), "without authentication"},
		{"dev token", append([]string{"--addr", "0.0.0.0:0"}, tlsArgs...), env("TCS_LOOKUP_TOKEN", auth.DevLookupToken), "development token"},
		{"short token", []string{"--addr", "127.0.0.1:0"}, env("TCS_SCAN_TOKEN", "scan"), "TCS_SCAN_TOKEN: 4 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := run(context.Background(), append([]string{"--region", "eu-west-1", "--data", t.TempDir()}, c.args...), c.env, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("run = %v, want error containing %q", err, c.want)
			}
		})
	}
}

// TestMutualTLSAndReload: tcs over TLS with a client CA authenticates an
// allow-listed client certificate or a token and refuses the rest; after
// the credentials and the certificate change and SIGHUP arrives, the new
// token works and the old one does not, on a connection opened before the
// reload that is never dialled again, and new connections get the new
// certificate.
func TestMutualTLSAndReload(t *testing.T) {
	dir := t.TempDir()
	rep, err := boltreplica.Open(cmdutil.Data(dir).Replica("eu-west-1"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 3, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatal(err)
	}
	rep.Close()

	ca := authtest.NewCA(t)
	srv1 := ca.Server(t, "tcs-1")
	edge := ca.Client(t, "edge-1")
	stranger := ca.Client(t, "stranger")
	oldTok, newTok, scanTok := authtest.Token("old"), authtest.Token("new"), authtest.Token("scan")
	creds := authtest.WriteFile(t, "", auth.Line(auth.Lookup, oldTok, "svc"), "lookup cert:cn:edge-1 edge-1", auth.Line(auth.ReplicaScan, scanTok, "verify"))
	certFile, keyFile := dir+"/tls.crt", dir+"/tls.key"
	testio.ReplaceFile(t, srv1.CertFile, certFile)
	testio.ReplaceFile(t, srv1.KeyFile, keyFile)

	tcs := startTCS(t, []string{"--region", "eu-west-1", "--addr", "127.0.0.1:0", "--data", dir, "--tokens-file", creds,
		"--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", ca.File}, nil)
	addr := tcs.addr

	var dials atomic.Int32
	dial := func(cfg *tls.Config) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, "tcp", a)
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	lookup := func(conn *grpc.ClientConn, token string) (string, error) {
		c := context.Background()
		if token != "" {
			c = metadata.AppendToOutgoingContext(c, "authorization", "Bearer "+token)
		}
		var p peer.Peer
		_, err := tcsv1.NewTenantContextServiceClient(conn).Lookup(c, &tcsv1.LookupRequest{Hostname: "acme.example.com"}, grpc.Peer(&p))
		cn := ""
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			cn = ti.State.PeerCertificates[0].Subject.CommonName
		}
		return cn, err
	}

	held := dial(ca.ClientTLS())
	if cn, err := lookup(held, oldTok); err != nil || cn != "tcs-1" {
		t.Fatalf("token over TLS: %q %v", cn, err)
	}
	if _, err := lookup(held, ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no credentials: %v", err)
	}
	if _, err := lookup(held, scanTok); status.Code(err) != codes.PermissionDenied {
		t.Errorf("replica-scan token on Lookup: %v", err)
	}
	if _, err := lookup(dial(ca.ClientTLS(edge)), ""); err != nil {
		t.Errorf("allow-listed client certificate: %v", err)
	}
	if _, err := lookup(dial(ca.ClientTLS(stranger)), ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("client certificate not on the allow-list: %v", err)
	}
	scan := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+scanTok)
	if _, err := adminv1.NewReplicaAdminClient(held).ScanDocs(scan, &adminv1.ScanRequest{}); err != nil {
		t.Errorf("ScanDocs with a replica-scan token: %v", err)
	}

	srv2 := ca.Server(t, "tcs-2")
	testio.ReplaceFile(t, srv2.CertFile, certFile)
	testio.ReplaceFile(t, srv2.KeyFile, keyFile)
	authtest.WriteFile(t, creds, auth.Line(auth.Lookup, newTok, "svc"), "lookup cert:cn:edge-1 edge-1")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The credentials and the certificate reload one after the other: wait
	// for both before asserting what each connection sees.
	testwait.For(t, "the new token and certificate to be served", func() bool {
		_, err := lookup(held, newTok)
		if err != nil {
			return false
		}
		cn, err := lookup(dial(ca.ClientTLS()), newTok)
		return err == nil && cn == "tcs-2"
	})
	heldDials := dials.Load() // the wait's own connections counted
	if _, err := lookup(held, oldTok); status.Code(err) != codes.Unauthenticated {
		t.Errorf("removed token after reload: %v", err)
	}
	if _, err := adminv1.NewReplicaAdminClient(held).ScanDocs(scan, &adminv1.ScanRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("removed replica-scan token after reload: %v", err)
	}
	if cn, _ := lookup(held, newTok); cn != "tcs-1" || dials.Load() != heldDials {
		t.Errorf("the connection opened before the reload: certificate %q, %d dials (was %d): want it kept", cn, dials.Load(), heldDials)
	}
	if cn, err := lookup(dial(ca.ClientTLS()), newTok); err != nil || cn != "tcs-2" {
		t.Errorf("a new connection after the reload: %q %v, want certificate tcs-2", cn, err)
	}
}
