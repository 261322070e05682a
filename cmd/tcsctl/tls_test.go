package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// TestLookupTLS: --ca-file reaches a TLS lookup server with the lookup
// token; plaintext does not, nor a call without the token.
func TestLookupTLS(t *testing.T) {
	t.Parallel()
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	doc := &tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}, Status: tenant.StatusActive, Version: 1, UpdatedAt: time.Now().UTC()}
	if _, err := rep.Apply(context.Background(), &tenant.ChangeEvent{TenantID: "acme", Version: 1, Tenant: doc,
		Claims: []tenant.Claim{{Hostname: "acme.example.com", Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	testCA := authtest.NewCA(t)
	cert, ca := testCA.Server(t, "tcs test").TLS, testCA.File
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := lookup.New(lookup.Config{Region: "tls-1", Replica: rep})
	lookupToken := strings.Repeat("l", 32)
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.Lookup, lookupToken, "svc")), "creds")
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.Static(set)
	go func() {
		done <- srv.Serve(ctx, ln, lookup.ServeOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, Auth: authn})
	}()
	defer func() {
		cancel()
		<-done
	}()

	getenv := func(k string) string {
		if k == "TCS_LOOKUP_TOKEN" {
			return lookupToken
		}
		return ""
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"lookup", "acme.example.com", "--addr", ln.Addr().String(), "--ca-file", ca}, getenv, nil, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), `"region": "tls-1"`) {
		t.Errorf("lookup over TLS: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), []string{"lookup", "acme.example.com", "--addr", ln.Addr().String(), "--ca-file", ca}, func(string) string { return "" }, nil, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "Unauthenticated") {
		t.Errorf("lookup without the token: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), []string{"lookup", "acme.example.com", "--addr", ln.Addr().String(), "--timeout", "2s"}, getenv, nil, &out, &errOut)
	if code != 2 {
		t.Errorf("plaintext to a TLS server: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
}
