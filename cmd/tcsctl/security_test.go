package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/internal/auth"
)

// TestHelpPrintsNoSecret: -h of every command that connects shows no token
// from the environment.
func TestHelpPrintsNoSecret(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{"TCS_ADMIN_TOKEN": "secret-admin-0123456789", "TCS_READER_TOKEN": "secret-reader-0123456789",
		"TCS_LOOKUP_TOKEN": "secret-lookup-0123456789", "TCS_SCAN_TOKEN": "secret-scan-0123456789"}
	getenv := func(k string) string { return secrets[k] }
	for _, cmd := range []string{"lookup", "get", "resync", "verify", "repair", "transform", "backfill", "export"} {
		var out, errOut bytes.Buffer
		run(context.Background(), []string{cmd, "-h"}, getenv, nil, &out, &errOut)
		help := out.String() + errOut.String()
		if !strings.Contains(help, "-token") {
			t.Errorf("%s -h lists no --token:\n%s", cmd, help)
		}
		for k, v := range secrets {
			if strings.Contains(help, v) {
				t.Errorf("%s -h prints %s", cmd, k)
			}
		}
	}
}

// TestTLSByDefault: gRPC to a region that is not on loopback is TLS unless
// --insecure; a plaintext catalog URL that is not on loopback is refused
// (the token would cross the network in the clear); no token has a
// default.
func TestTLSByDefault(t *testing.T) {
	t.Parallel()
	e := &env{getenv: func(string) string { return "" }, stderr: &bytes.Buffer{}}
	c := connFlags{catalogURL: "http://127.0.0.1:8080", regions: "a=10.1.2.3:9001,b=127.0.0.1:9001,c=localhost:9001", getenv: e.getenv}
	cl, err := c.client(e)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for addr, want := range map[string]bool{"10.1.2.3:9001": true, "127.0.0.1:9001": false, "localhost:9001": false, "[::1]:9001": false, "tcs.example.com:443": true} {
		if got := cl.dialer.useTLS(addr); got != want {
			t.Errorf("TLS to %s: %v, want %v", addr, got, want)
		}
	}
	if c.token != "" || c.lookupToken != "" || c.scanToken != "" {
		t.Errorf("default tokens: %q %q %q", c.token, c.lookupToken, c.scanToken)
	}
	in := connFlags{catalogURL: "http://127.0.0.1:8080", regions: "a=10.1.2.3:9001", tls: tlsOptions{Insecure: true}}
	cl, err = in.client(e)
	if err != nil {
		t.Fatal(err)
	}
	if cl.dialer.useTLS("10.1.2.3:9001") || !strings.Contains(e.stderr.(*bytes.Buffer).String(), "in the clear") {
		t.Errorf("--insecure: TLS %v, warning %q", cl.dialer.useTLS("10.1.2.3:9001"), e.stderr.(*bytes.Buffer).String())
	}
	cl.Close()
	always := connFlags{catalogURL: "http://127.0.0.1:8080", regions: "a=127.0.0.1:9001", tls: tlsOptions{Always: true}}
	if cl, err = always.client(e); err != nil || !cl.dialer.useTLS("127.0.0.1:9001") {
		t.Errorf("--tls to loopback: %v", err)
	}
	remote := connFlags{catalogURL: "http://catalog.example.com:8080", regions: "a=127.0.0.1:9001"}
	if _, err := remote.client(e); err == nil || !strings.Contains(err.Error(), "use https://") {
		t.Errorf("plaintext catalog off loopback: %v", err)
	}
}

// TestTokenNewAndDigest: token new prints a token and the credentials line
// that accepts it (and only it), appends the line to a 0600 file on
// request, refusing a name already there; token digest prints the line of
// a token read from stdin.
func TestTokenNewAndDigest(t *testing.T) {
	t.Parallel()
	getenv := func(string) string { return "" }
	file := filepath.Join(t.TempDir(), "credentials")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"token", "new", "--role", "lookup", "--name", "svc-x", "--append", file}, getenv, nil, &out, &errOut); code != 0 {
		t.Fatalf("token new: exit %d: %s", code, errOut.String())
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || len(lines[0]) < auth.MinTokenBytes || lines[1] != auth.Line(auth.Lookup, lines[0], "svc-x") {
		t.Fatalf("token new printed:\n%s", out.String())
	}
	set, err := auth.Load(file, nil)
	if err != nil {
		t.Fatalf("appended file: %v", err)
	}
	if id, ok := set.Token(lines[0]); !ok || id != (auth.Identity{Name: "svc-x", Role: auth.Lookup}) {
		t.Errorf("the issued token is not accepted through the file: %+v", id)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v", fi.Mode())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"token", "new", "--role", "reader", "--name", "svc-x", "--append", file}, getenv, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `name "svc-x" is already used`) {
		t.Errorf("a second svc-x: exit %d: %s", code, errOut.String())
	}

	out.Reset()
	tok := strings.Repeat("k", 40)
	if code := run(context.Background(), []string{"token", "digest", "--role", "admin", "--name", "ops"}, getenv, strings.NewReader(tok+"\n"), &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != auth.Line(auth.Admin, tok, "ops") {
		t.Errorf("token digest: exit %d: %q", code, out.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"token", "digest", "--role", "admin", "--name", "ops"}, getenv, strings.NewReader("short\n"), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "at least 32 bytes") {
		t.Errorf("short token: exit %d: %s", code, errOut.String())
	}
	if code := run(context.Background(), []string{"token", "new", "--role", "owner", "--name", "x"}, getenv, nil, &out, &errOut); code != 2 {
		t.Errorf("unknown role: exit %d", code)
	}
}

// TestNoTokenHint: a catalog call without a token fails (there is no
// default) and says how to give one.
func TestNoTokenHint(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	var out, errOut bytes.Buffer
	getenv := s.env()
	code := run(context.Background(), []string{"get", "acme"}, func(k string) string {
		if k == "TCS_ADMIN_TOKEN" {
			return ""
		}
		return getenv(k)
	}, nil, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "401") || !strings.Contains(errOut.String(), "--token or TCS_ADMIN_TOKEN") {
		t.Errorf("get without a token: exit %d: %s", code, errOut.String())
	}
}
