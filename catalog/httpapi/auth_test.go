package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/internal/auth"
)

// roleTokens are a token per role, each named after its role's owner.
var roleTokens = map[auth.Role]string{
	auth.Admin:       "test-admin-token",
	auth.Reader:      "test-reader-token",
	auth.Lookup:      "test-lookup-token",
	auth.ReplicaScan: "test-scan-token",
}

func allRolesHarness(t *testing.T) *harness {
	t.Helper()
	var lines strings.Builder
	for role, tok := range roleTokens {
		lines.WriteString(auth.Line(role, tok, "owner-of-"+string(role)) + "\n")
	}
	lines.WriteString("reader cert:dns:ci.example.com ci-runner\n")
	creds, err := auth.Parse(strings.NewReader(lines.String()), "test credentials")
	if err != nil {
		t.Fatal(err)
	}
	return newHarnessConfig(t, func(c *Config) { c.Auth = auth.Static(creds) })
}

// concretePath fills a spec path's parameters.
func concretePath(spec string) string {
	return strings.NewReplacer("{id}", "acme", "{hostname}", "acme.example.com", "{product}", "jira").Replace(spec)
}

// TestEveryRouteAuthenticated: a table generated from the registered
// routes (RouteRoles), so that a new route cannot be missed: no credentials
// and a wrong token get 401 on every protected route, a token of a role
// that does not allow the route 403 (with a message that names neither the
// token nor its owner), an allowed role gets past authentication; open
// routes answer without credentials.
func TestEveryRouteAuthenticated(t *testing.T) {
	t.Parallel()
	h := allRolesHarness(t)
	roles := RouteRoles()
	if len(roles) != len(routes) {
		t.Fatalf("RouteRoles has %d operations, routes %d", len(roles), len(routes))
	}
	for op, need := range roles {
		method, spec, _ := strings.Cut(op, " ")
		path := concretePath(spec)
		body := ""
		if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
			body = "{}"
		}
		if need == "" {
			if res := h.do(call{method: method, path: path}); res.status == http.StatusUnauthorized || res.status == http.StatusForbidden {
				t.Errorf("open route %s: status %d without credentials", op, res.status)
			}
			continue
		}
		res := h.do(call{method: method, path: path, body: body})
		if res.status != http.StatusUnauthorized {
			t.Errorf("%s without credentials: status %d, want 401", op, res.status)
		} else if res.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", op)
		}
		if res := h.do(call{method: method, path: path, body: body, token: "not-a-token-of-anybody-at-all-xyz"}); res.status != http.StatusUnauthorized {
			t.Errorf("%s with an unknown token: status %d, want 401", op, res.status)
		}
		for role, tok := range roleTokens {
			res := h.do(call{method: method, path: path, body: body, token: tok})
			switch {
			case role.Allows(need) && (res.status == http.StatusUnauthorized || res.status == http.StatusForbidden):
				t.Errorf("%s as %s: status %d, want past authentication", op, role, res.status)
			case !role.Allows(need) && res.status != http.StatusForbidden:
				t.Errorf("%s as %s: status %d, want 403", op, role, res.status)
			case !role.Allows(need):
				p := res.problem(t)
				if text := p.Title + p.Detail; strings.Contains(text, tok) || strings.Contains(text, "owner-of-") {
					t.Errorf("%s as %s: 403 names the credential: %q", op, role, text)
				}
			}
		}
	}
}

// TestClientCertificateIdentity: a verified client certificate on the
// allow-list authenticates (its name is the audit actor); one not on it is
// refused; a token wins over a certificate.
func TestClientCertificateIdentity(t *testing.T) {
	t.Parallel()
	h := allRolesHarness(t)
	withCert := func(dns string) *tls.ConnectionState {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: "someone"}, DNSNames: []string{dns}}
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	req := func(state *tls.ConnectionState, token string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "/v1/tenants", nil)
		r.TLS = state
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return r
	}
	id, err := h.api.authenticate(req(withCert("CI.example.com"), ""), auth.Reader)
	if err != nil || id != (auth.Identity{Name: "ci-runner", Role: auth.Reader}) {
		t.Errorf("allow-listed certificate: %+v, %v", id, err)
	}
	if _, err := h.api.authenticate(req(withCert("ci.example.com"), ""), auth.Admin); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("reader certificate on a write: %v", err)
	}
	if _, err := h.api.authenticate(req(withCert("evil.example.com"), ""), auth.Reader); err == nil || !strings.Contains(err.Error(), "invalid credentials") {
		t.Errorf("certificate not on the allow-list: %v", err)
	}
	if id, err := h.api.authenticate(req(withCert("ci.example.com"), roleTokens[auth.Admin]), auth.Admin); err != nil || id.Role != auth.Admin {
		t.Errorf("token with a certificate: %+v, %v", id, err)
	}
}
