package auth

import (
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
)

// Errors of Authenticate. Their text is what callers see: it never names a
// token or a credential.
var (
	// ErrNoCredentials: the request carried neither a bearer token nor an
	// allow-listed client certificate.
	ErrNoCredentials = errors.New("missing credentials: send Authorization: Bearer <token> or a client certificate")
	// ErrBadCredentials: the token or certificate is not in the
	// credentials set.
	ErrBadCredentials = errors.New("invalid credentials")
)

// Authenticator establishes identities against a credential set that
// Reload swaps atomically: requests in flight finish with the set they
// started with, connections stay open.
type Authenticator struct {
	load func() (*Set, error)
	cur  atomic.Pointer[Set]
	open map[Role]bool
	// refused counts the gRPC calls the interceptors refused, by reason
	// (see refusalReasons).
	refused refusals
}

// Open lets calls that need one of roles through without credentials
// (calls that present credentials are still checked): for a role no
// credential was configured for, on a loopback address. Call it before
// serving; a reload does not change it, so removing a role's last
// credential never opens the role.
func (a *Authenticator) Open(roles ...Role) {
	if a.open == nil {
		a.open = map[Role]bool{}
	}
	for _, r := range roles {
		a.open[r] = true
	}
}

// IsOpen reports whether r was opened with Open.
func (a *Authenticator) IsOpen(r Role) bool { return a.open[r] }

// NewAuthenticator loads the set with load and returns an Authenticator
// that calls it again on every Reload.
func NewAuthenticator(load func() (*Set, error)) (*Authenticator, error) {
	a := &Authenticator{load: load}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Static returns an Authenticator of a fixed set (Reload keeps it).
func Static(s *Set) *Authenticator {
	a := &Authenticator{load: func() (*Set, error) { return s, nil }}
	a.cur.Store(s)
	return a
}

// Reload loads the set again and swaps it in. On an error the current set
// stays and the error says why.
func (a *Authenticator) Reload() error {
	s, err := a.load()
	if err != nil {
		return err
	}
	if s == nil {
		s = &Set{}
	}
	a.cur.Store(s)
	return nil
}

// Set returns the current credential set.
func (a *Authenticator) Set() *Set { return a.cur.Load() }

// Authenticate returns the identity of a bearer token (token, without the
// "Bearer " prefix; "" if none) or, without one, of the verified client
// certificate of state (nil without TLS).
func (a *Authenticator) Authenticate(token string, state *tls.ConnectionState) (Identity, error) {
	s := a.cur.Load()
	if token != "" {
		if id, ok := s.Token(token); ok {
			return id, nil
		}
		return Identity{}, ErrBadCredentials
	}
	if state != nil && len(state.VerifiedChains) > 0 && len(state.VerifiedChains[0]) > 0 {
		if id, ok := s.Cert(state.VerifiedChains[0][0]); ok {
			return id, nil
		}
		return Identity{}, ErrBadCredentials
	}
	return Identity{}, ErrNoCredentials
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// value (the scheme is case-insensitive), or "" if v is not one.
func BearerToken(v string) string {
	const prefix = "bearer "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return ""
	}
	return v[len(prefix):]
}

// HTTP authenticates an HTTP request.
func (a *Authenticator) HTTP(r *http.Request) (Identity, error) {
	h := r.Header.Get("Authorization")
	tok := BearerToken(h)
	if h != "" && tok == "" {
		return Identity{}, ErrNoCredentials
	}
	return a.Authenticate(tok, r.TLS)
}
