package auth_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
)

// TestCredentialsFileValidation: every way a credentials file can be
// wrong stops the start with an error naming the file and line (or mode),
// and never echoes what may be a token.
func TestCredentialsFileValidation(t *testing.T) {
	t.Parallel()
	tok := authtest.Token("a")
	cases := []struct {
		name  string
		lines []string
		want  string
	}{
		{"plaintext token instead of digest", []string{"admin " + tok + " ops"}, "credentials:1: the second field must be sha256:"},
		{"bad digest", []string{"admin sha256:abc ops"}, "credentials:1: digest"},
		{"digest not hex", []string{"admin sha256:" + strings.Repeat("z", 64) + " ops"}, "want sha256: and 64 hex digits"},
		{"unknown role", []string{"owner " + auth.Digest(tok) + " ops"}, `credentials:1: unknown role "owner"`},
		{"no name", []string{"admin " + auth.Digest(tok)}, "credentials:1: want `ROLE sha256:<hex> NAME`"},
		{"duplicate name", []string{"# c", "admin " + auth.Digest(tok) + " ops", "reader " + auth.Digest(authtest.Token("b")) + " ops"}, `credentials:3: name "ops" is already used by`},
		{"same token under two roles", []string{"admin " + auth.Digest(tok) + " ops", "", "reader " + auth.Digest(tok) + " other"}, "credentials:3: the same token is already listed by"},
		{"same certificate twice", []string{"lookup cert:dns:a.example.com x", "lookup cert:dns:A.example.com y"}, "credentials:2: certificate dns:a.example.com is already listed"},
		{"bad certificate kind", []string{"lookup cert:ip:10.0.0.1 x"}, `kind "ip"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := authtest.WriteFile(t, filepath.Join(dir, "credentials"), c.lines...)
			_, err := auth.Load(path, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load = %v, want error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error echoes the token: %v", err)
			}
		})
	}
	t.Run("readable by others", func(t *testing.T) {
		t.Parallel()
		path := authtest.WriteFile(t, "", auth.Line(auth.Admin, tok, "ops"))
		for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := auth.Load(path, nil)
			if !errors.Is(err, auth.ErrFileMode) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("mode %04o", mode)) {
				t.Errorf("mode %o: %v", mode, err)
			}
		}
		os.Chmod(path, 0o600)
		if _, err := auth.Load(path, nil); err != nil {
			t.Errorf("mode 0600: %v", err)
		}
	})
	t.Run("short plaintext token", func(t *testing.T) {
		t.Parallel()
		_, err := auth.Load("", []auth.PlainToken{{Role: auth.Admin, Name: "TCS_ADMIN_TOKEN", Token: "short"}})
		if err == nil || !strings.Contains(err.Error(), "TCS_ADMIN_TOKEN: 5 bytes; tokens must be at least 32 bytes") {
			t.Errorf("short token: %v", err)
		}
		set, err := auth.Load("", []auth.PlainToken{{Role: auth.Admin, Name: "TCS_ADMIN_TOKEN", Token: auth.DevAdminToken}})
		if err != nil || !set.HasDevToken() {
			t.Errorf("dev token: %v, dev %v", err, set.HasDevToken())
		}
	})
	t.Run("plaintext token also in the file", func(t *testing.T) {
		t.Parallel()
		path := authtest.WriteFile(t, "", auth.Line(auth.Reader, tok, "ops"))
		_, err := auth.Load(path, []auth.PlainToken{{Role: auth.Admin, Name: "TCS_ADMIN_TOKEN", Token: tok}})
		if err == nil || !strings.Contains(err.Error(), "token TCS_ADMIN_TOKEN: the same token is already listed by") {
			t.Errorf("%v", err)
		}
	})
}

func TestSetAuthenticates(t *testing.T) {
	t.Parallel()
	a, b := authtest.Token("a"), authtest.Token("b")
	path := authtest.WriteFile(t, "",
		"# ops", auth.Line(auth.Admin, a, "ops"), auth.Line(auth.Lookup, b, "svc-b"),
		"replica-scan cert:uri:spiffe://tcs/verify verifier", "lookup cert:cn:edge-7 edge-7", "reader "+auth.Digest(auth.DevReaderToken)+" dev")
	set, err := auth.Load(path, nil, auth.Admin, auth.Reader, auth.ReplicaScan)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := set.Token(a); !ok || id != (auth.Identity{Name: "ops", Role: auth.Admin}) {
		t.Errorf("admin token: %+v %v", id, ok)
	}
	if _, ok := set.Token(b); ok {
		t.Error("a lookup token was accepted by a set that serves no lookup role")
	}
	if _, ok := set.Token(a[:len(a)-1]); ok {
		t.Error("a prefix of a token was accepted")
	}
	if !set.HasDevToken() {
		t.Error("a dev token's digest is not flagged")
	}
	u, _ := url.Parse("spiffe://tcs/verify")
	if id, ok := set.Cert(&x509.Certificate{URIs: []*url.URL{u}}); !ok || id.Name != "verifier" || id.Role != auth.ReplicaScan {
		t.Errorf("URI SAN: %+v %v", id, ok)
	}
	if _, ok := set.Cert(&x509.Certificate{Subject: pkix.Name{CommonName: "edge-7"}}); ok {
		t.Error("a lookup certificate was accepted by a set that serves no lookup role")
	}
	if got := set.Roles(); len(got) != 3 {
		t.Errorf("roles %v", got)
	}
}

func TestCheckBinds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		bind auth.Bind
		dev  bool
		want string // "" accepted
	}{
		{"loopback plaintext open", auth.Bind{Flag: "--addr", Addr: "127.0.0.1:8080"}, false, ""},
		{"localhost with dev token", auth.Bind{Flag: "--addr", Addr: "localhost:8080", Auth: true}, true, ""},
		{"ipv6 loopback", auth.Bind{Flag: "--addr", Addr: "[::1]:8080"}, false, ""},
		{"all interfaces", auth.Bind{Flag: "--addr", Addr: ":8080"}, false, "refusing to serve --addr :8080 without TLS and authentication: set --tls-cert and --tls-key, and --tokens-file"},
		{"no TLS", auth.Bind{Flag: "--catalog-addr", Addr: "10.0.0.5:8080", Auth: true}, false, "--catalog-addr 10.0.0.5:8080 without TLS"},
		{"no auth", auth.Bind{Flag: "--addr", Addr: "0.0.0.0:9001", TLS: true}, false, "without authentication: set --tokens-file"},
		{"dev token", auth.Bind{Flag: "--addr", Addr: "0.0.0.0:9001", TLS: true, Auth: true}, true, "with a development token"},
		{"protected", auth.Bind{Flag: "--addr", Addr: "0.0.0.0:9001", TLS: true, Auth: true}, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			err := auth.CheckBinds([]auth.Bind{c.bind}, c.dev, false, log)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--insecure-i-know") {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if err := auth.CheckBinds([]auth.Bind{c.bind}, c.dev, true, log); err != nil {
				t.Fatalf("with the override: %v", err)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "INSECURE") {
				t.Errorf("override not logged loudly: %q", logs.String())
			}
		})
	}
}

// TestReloadSwapsAtomically: after Reload a new token is accepted and the
// removed one refused; a reload that fails keeps the set loaded before.
func TestReloadSwapsAtomically(t *testing.T) {
	t.Parallel()
	oldTok, newTok := authtest.Token("old"), authtest.Token("new")
	path := authtest.WriteFile(t, "", auth.Line(auth.Lookup, oldTok, "svc"))
	a, err := auth.NewAuthenticator(func() (*auth.Set, error) { return auth.Load(path, nil) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(oldTok, nil); err != nil {
		t.Fatalf("old token before reload: %v", err)
	}
	authtest.WriteFile(t, path, auth.Line(auth.Lookup, newTok, "svc"))
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(oldTok, nil); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("old token after reload: %v", err)
	}
	if id, err := a.Authenticate(newTok, nil); err != nil || id.Name != "svc" {
		t.Errorf("new token after reload: %+v %v", id, err)
	}
	authtest.WriteFile(t, path, "lookup not-a-digest svc")
	if err := a.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if _, err := a.Authenticate(newTok, nil); err != nil {
		t.Errorf("a failed reload dropped the working set: %v", err)
	}
	if _, err := a.Authenticate("", nil); !errors.Is(err, auth.ErrNoCredentials) {
		t.Errorf("no credentials: %v", err)
	}
}

func TestNewTokenAndLine(t *testing.T) {
	t.Parallel()
	a, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := auth.NewToken()
	if len(a) < auth.MinTokenBytes || a == b {
		t.Errorf("tokens %q %q", a, b)
	}
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.Lookup, a, "svc-x")), "line")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := set.Token(a); !ok || id.Name != "svc-x" {
		t.Errorf("issued token not accepted through its line: %+v", id)
	}
}

// TestOpenRole: a role opened for lack of credentials lets calls without
// credentials through (no identity), still refuses wrong credentials, and
// still establishes the identity of right ones.
func TestOpenRole(t *testing.T) {
	t.Parallel()
	scan := authtest.Token("scan")
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.ReplicaScan, scan, "verify")), "creds")
	if err != nil {
		t.Fatal(err)
	}
	a := auth.Static(set)
	a.Open(auth.Lookup)
	p := auth.Policy{Methods: map[string]auth.Role{"/s.L/": auth.Lookup, "/s.A/": auth.ReplicaScan}}
	call := func(method, token string) (auth.Identity, bool, error) {
		ctx := context.Background()
		if token != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
		}
		var id auth.Identity
		var has bool
		_, err := a.UnaryInterceptor(p)(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
			id, has = auth.FromContext(ctx)
			return nil, nil
		})
		return id, has, err
	}
	if _, has, err := call("/s.L/Lookup", ""); err != nil || has {
		t.Errorf("open role without credentials: identity %v, %v", has, err)
	}
	if _, _, err := call("/s.L/Lookup", "wrong-token"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("open role with a wrong token: %v", err)
	}
	if _, _, err := call("/s.A/Scan", ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a role not opened, without credentials: %v", err)
	}
	if id, _, err := call("/s.A/Scan", scan); err != nil || id.Name != "verify" {
		t.Errorf("replica-scan token: %+v %v", id, err)
	}
	if _, _, err := call("/s.X/Other", scan); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a method the policy does not know: %v", err)
	}
}

// TestRefusalsCounted: every refused call counts under its reason in
// tcs_auth_refusals_total; calls let through count nowhere.
func TestRefusalsCounted(t *testing.T) {
	t.Parallel()
	scan, lkp := authtest.Token("scan"), authtest.Token("lookup")
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.ReplicaScan, scan, "verify")+"\n"+auth.Line(auth.Lookup, lkp, "svc")), "creds")
	if err != nil {
		t.Fatal(err)
	}
	a := auth.Static(set)
	reg := prometheus.NewRegistry()
	reg.MustRegister(a)
	intercept := a.UnaryInterceptor(auth.Policy{Methods: map[string]auth.Role{"/s.L/": auth.Lookup, "/s.A/": auth.ReplicaScan}})
	call := func(method, authorization string) {
		ctx := context.Background()
		if authorization != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", authorization))
		}
		_, _ = intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return nil, nil })
	}
	call("/s.L/Lookup", "Bearer "+lkp)  // let through
	call("/s.L/Lookup", "")             // no_credentials
	call("/s.L/Lookup", "Bearer guess") // bad_credentials
	call("/s.L/Lookup", "Basic x")      // bad_credentials (malformed)
	call("/s.A/Scan", "Bearer "+lkp)    // role
	call("/s.X/Other", "Bearer "+scan)  // unknown_method
	want := map[string]float64{"no_credentials": 1, "bad_credentials": 2, "role": 1, "unknown_method": 1}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tcs_auth_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tcs_auth_refusals_total by reason (-want +got):\n%s", diff)
	}
}

// BenchmarkAuthorize is the cost authentication adds to one gRPC call:
// a token among 1,000 credentials, and an allow-listed certificate.
func BenchmarkAuthorize(b *testing.B) {
	lines := []string{"lookup cert:cn:edge-1 edge-1"}
	for i := range 1000 {
		lines = append(lines, auth.Line(auth.Lookup, authtest.Token(fmt.Sprint(i)), fmt.Sprint("svc-", i)))
	}
	set, err := auth.Parse(strings.NewReader(strings.Join(lines, "\n")), "bench")
	if err != nil {
		b.Fatal(err)
	}
	a := auth.Static(set)
	intercept := a.UnaryInterceptor(auth.Policy{Methods: map[string]auth.Role{"/s.L/": auth.Lookup}})
	info := &grpc.UnaryServerInfo{FullMethod: "/s.L/Lookup"}
	handler := func(ctx context.Context, _ any) (any, error) { return nil, nil }
	b.Run("token", func(b *testing.B) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+authtest.Token("500"), "user-agent", "grpc-go"))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := intercept(ctx, nil, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mtls", func(b *testing.B) {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: "edge-1"}}
		state := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
		ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := intercept(ctx, nil, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
}
