package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// TestRefusesUnprotectedStart: a non-loopback address without TLS or
// credentials, a development token on one, a short token, a credentials
// file others may read: each stops the start with an error naming what to
// set.
func TestRefusesUnprotectedStart(t *testing.T) {
	t.Parallel()
	ca := authtest.NewCA(t)
	srv := ca.Server(t, "catalog")
	strong := authtest.Token("admin")
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	readable := authtest.WriteFile(t, "", auth.Line(auth.Admin, strong, "ops"))
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	lookupOnly := authtest.WriteFile(t, "", auth.Line(auth.Lookup, strong, "svc"))
	tlsArgs := []string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile}
	cases := []struct {
		name string
		args []string
		env  func(string) string
		want string
	}{
		{"all interfaces, plaintext", []string{"--addr", "0.0.0.0:0"}, env("TCS_ADMIN_TOKEN", strong), "refusing to serve --addr 0.0.0.0:0 without TLS"},
		{"non-loopback, dev token", append([]string{"--addr", ":0"}, tlsArgs...), env("TCS_ADMIN_TOKEN", auth.DevAdminToken), "with a development token"},
		{"short token", []string{"--addr", "127.0.0.1:0"}, env("TCS_ADMIN_TOKEN", "adm"), "TCS_ADMIN_TOKEN: 3 bytes; tokens must be at least 32 bytes"},
		{"readable credentials file", []string{"--tokens-file", readable}, env(), "has mode 0644"},
		{"file without catalog credentials", []string{"--tokens-file", lookupOnly}, env(), "no credentials configured"},
		{"client CA without certificate", []string{"--tls-client-ca", ca.File}, env("TCS_ADMIN_TOKEN", strong), "--tls-client-ca needs --tls-cert"},
		{"key without certificate", []string{"--tls-key", srv.KeyFile}, env("TCS_ADMIN_TOKEN", strong), "--tls-cert and --tls-key go together"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := run(context.Background(), append(c.args, "--data", t.TempDir()), c.env, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("run = %v, want error containing %q", err, c.want)
			}
		})
	}
}

// TestHTTPSReloadOnSIGHUP: the catalog serves HTTPS; a client certificate
// on the allow-list authenticates; after the credentials file and the
// certificate change and SIGHUP arrives, the new token is accepted, the
// removed one refused, new connections get the new certificate, and a
// connection opened before keeps working.
func TestHTTPSReloadOnSIGHUP(t *testing.T) {
	ca := authtest.NewCA(t)
	srv1 := ca.Server(t, "catalog-1")
	client := ca.Client(t, "ci", "ci.example.com")
	oldTok, newTok := authtest.Token("old"), authtest.Token("new")
	creds := authtest.WriteFile(t, "", auth.Line(auth.Admin, oldTok, "alice"), "reader cert:dns:ci.example.com ci")
	certFile, keyFile := srv1.CertFile+".live", srv1.KeyFile+".live"
	testio.ReplaceFile(t, srv1.CertFile, certFile)
	testio.ReplaceFile(t, srv1.KeyFile, keyFile)

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr testio.SyncBuffer
	go func() {
		done <- runWithReady(ctx, []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--tokens-file", creds,
			"--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", ca.File}, func(string) string { return "" }, io.Discard, &stderr, ready)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("catalog exited: %v\n%s", err, stderr.String())
	}
	base := "https://" + addr

	held := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}}
	type answer struct {
		status int
		cn     string
		reused bool
	}
	get := func(c *http.Client, token string) answer {
		t.Helper()
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, base+"/v1/tenants", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return answer{res.StatusCode, res.TLS.PeerCertificates[0].Subject.CommonName, reused}
	}
	if a := get(held, oldTok); a.status != http.StatusOK || a.cn != "catalog-1" {
		t.Fatalf("old token before reload: %+v", a)
	}
	if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode < 400 {
			t.Errorf("plaintext HTTP answered %d", res.StatusCode)
		}
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS(client)}}
	if a := get(withCert, ""); a.status != http.StatusOK {
		t.Errorf("allow-listed client certificate: %+v", a)
	}

	srv2 := ca.Server(t, "catalog-2")
	testio.ReplaceFile(t, srv2.CertFile, certFile)
	testio.ReplaceFile(t, srv2.KeyFile, keyFile)
	authtest.WriteFile(t, creds, auth.Line(auth.Admin, newTok, "alice"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the new token to be accepted", func() bool { return get(held, newTok).status == http.StatusOK })
	if a := get(held, oldTok); a.status != http.StatusUnauthorized {
		t.Errorf("removed token after reload: %+v", a)
	}
	if a := get(held, newTok); !a.reused || a.cn != "catalog-1" {
		t.Errorf("the connection opened before the reload: %+v, want it reused with its certificate", a)
	}
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}}
	if a := get(fresh, newTok); a.cn != "catalog-2" || a.reused {
		t.Errorf("a new connection after the reload: %+v, want certificate catalog-2", a)
	}
	if a := get(withCert, ""); a.status != http.StatusUnauthorized {
		t.Errorf("a certificate removed from the allow-list: %+v", a)
	}
	if !strings.Contains(stderr.String(), "SIGHUP: reloaded") {
		t.Errorf("reload not logged:\n%s", stderr.String())
	}
}

// TestCertificateExpiryMetric: with TLS on, the metrics port exports the
// serving certificate's expiry (TCSCertificateExpiringSoon reads it).
func TestCertificateExpiryMetric(t *testing.T) {
	ca := authtest.NewCA(t)
	notAfter := time.Now().Add(40 * 24 * time.Hour).Truncate(time.Second)
	srv := ca.ServerUntil(t, "catalog-1", notAfter)
	creds := authtest.WriteFile(t, "", auth.Line(auth.Admin, authtest.Token("adm"), "alice"))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr testio.SyncBuffer
	go func() {
		done <- runWithReady(ctx, []string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--data", t.TempDir(),
			"--tokens-file", creds, "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile}, func(string) string { return "" }, io.Discard, &stderr, ready)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("catalog exited: %v\n%s", err, stderr.String())
	}
	code, body := obstest.Get(t, obstest.MetricsAddr(t, stderr.String()), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	var got float64
	found := false
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "tcs_tls_certificate_expiry_timestamp_seconds") {
			fields := strings.Fields(line)
			if _, err := fmt.Sscan(fields[len(fields)-1], &got); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no tcs_tls_certificate_expiry_timestamp_seconds on the metrics port:\n%s", body)
	}
	if int64(got) != notAfter.Unix() {
		t.Errorf("certificate expiry %v, want %v (%v)", int64(got), notAfter.Unix(), notAfter)
	}
}
