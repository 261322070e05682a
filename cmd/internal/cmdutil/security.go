package cmdutil

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/tcs-dev/tcs/internal/auth"
)

// Security are the flags every server shares: credentials, TLS and the
// override of the refusal to serve a non-loopback address unprotected.
type Security struct {
	TokensFile string
	TLS        auth.TLSFiles
	Insecure   bool
}

// RegisterSecurity declares the security flags on fs; roles are the roles
// the binary serves, for the help text.
func RegisterSecurity(fs *flag.FlagSet, getenv func(string) string, roles ...auth.Role) *Security {
	s := &Security{}
	var envs string
	for _, r := range roles {
		if envs != "" {
			envs += ", "
		}
		envs += auth.EnvTokenVars[r]
	}
	fs.StringVar(&s.TokensFile, "tokens-file", getenv("TCS_TOKENS_FILE"), "credentials file, mode 0600: lines `ROLE sha256:<hex> NAME` (a token's digest: tcsctl token new) or `ROLE cert:<dns|uri|cn>:<value> NAME` (a client certificate, with --tls-client-ca); reloaded on SIGHUP (env TCS_TOKENS_FILE). Plaintext tokens of at least 32 bytes may also come from "+envs)
	fs.StringVar(&s.TLS.Cert, "tls-cert", getenv("TCS_TLS_CERT"), "PEM certificate file: serve TLS (with --tls-key); reloaded on SIGHUP (env TCS_TLS_CERT)")
	fs.StringVar(&s.TLS.Key, "tls-key", getenv("TCS_TLS_KEY"), "PEM private key file of --tls-cert (env TCS_TLS_KEY)")
	fs.StringVar(&s.TLS.ClientCA, "tls-client-ca", getenv("TCS_TLS_CLIENT_CA"), "PEM CA bundle: verify client certificates signed by it, and authenticate those the credentials file lists (mTLS) (env TCS_TLS_CLIENT_CA)")
	fs.BoolVar(&s.Insecure, "insecure-i-know", false, "serve a non-loopback address without TLS or authentication, or with a development token (logged as a warning); never in production")
	return s
}

// Guard is what a server is protected with: its credentials (Auth nil:
// none configured) and its TLS (nil: plaintext).
type Guard struct {
	Auth *auth.Authenticator
	TLS  *auth.ServerTLS

	noDev atomic.Bool // set by Check: a reload may not bring in a development token
	open  []auth.Role
}

// OpenUnlessConfigured lets calls that need role through without
// credentials when the guard has credentials but none of role (a lookup
// server given only replica-scan tokens keeps its lookups open), which
// Check allows on loopback addresses only. It returns whether it did.
func (g *Guard) OpenUnlessConfigured(role auth.Role) bool {
	if g.Auth == nil {
		return false
	}
	for _, r := range g.Auth.Set().Roles() {
		if r == role {
			return false
		}
	}
	g.Auth.Open(role)
	g.open = append(g.open, role)
	return true
}

// Check reports TLS flags that cannot go together, naming them. It reads
// no file: a binary's parseConfig calls it, and Load again.
func (s *Security) Check() error {
	if s.TLS.ClientCA != "" && !s.TLS.Enabled() {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if s.TLS.Enabled() && (s.TLS.Cert == "" || s.TLS.Key == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	return nil
}

// Load builds the guard: the credentials of the file and of the roles'
// environment tokens (only lines of those roles count), and the TLS files.
func (s *Security) Load(getenv func(string) string, roles ...auth.Role) (*Guard, error) {
	g := &Guard{}
	if err := s.Check(); err != nil {
		return nil, err
	}
	if s.TLS.Enabled() {
		t, err := auth.NewServerTLS(s.TLS)
		if err != nil {
			return nil, err
		}
		g.TLS = t
	}
	load := func() (*auth.Set, error) {
		set, err := auth.Load(s.TokensFile, auth.EnvTokens(getenv, roles...), roles...)
		if err == nil && set.HasDevToken() && g.noDev.Load() {
			return nil, errors.New("a development token (dev-…-token) is not accepted on a non-loopback address")
		}
		return set, err
	}
	set, err := load()
	if err != nil {
		return nil, err
	}
	if set.Len() > 0 || s.TokensFile != "" {
		g.Auth, err = auth.NewAuthenticator(load)
		if err != nil {
			return nil, err
		}
	}
	return g, nil
}

// TLSConfig is the configuration to serve with, nil for plaintext.
func (g *Guard) TLSConfig() *tls.Config {
	if g.TLS == nil {
		return nil
	}
	return g.TLS.Config()
}

// Bind describes a listener of this guard for auth.CheckBinds.
func (g *Guard) Bind(flagName, addr string) auth.Bind {
	return auth.Bind{Flag: flagName, Addr: addr, TLS: g.TLS != nil, Auth: g.Auth != nil && g.Auth.Set().Len() > 0 && len(g.open) == 0}
}

// Check refuses what auth.CheckBinds refuses for the guard's listeners
// (flag name → address) unless insecure, and from then on refuses reloads
// that would bring a development token to a non-loopback listener.
func (g *Guard) Check(insecure bool, log *slog.Logger, binds ...auth.Bind) error {
	dev := g.Auth != nil && g.Auth.Set().HasDevToken()
	if err := auth.CheckBinds(binds, dev, insecure, log); err != nil {
		return err
	}
	for _, b := range binds {
		if !auth.IsLoopback(b.Addr) && !insecure {
			g.noDev.Store(true)
		}
	}
	return nil
}

// Reload reads the credentials and certificates again; what fails to load
// keeps its current version.
func (g *Guard) Reload() error {
	var errs []error
	if g.Auth != nil {
		if err := g.Auth.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if g.TLS != nil {
		if err := g.TLS.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ReloadOnHangup calls reload on every SIGHUP until ctx ends, logging the
// outcome; a failed reload keeps what was loaded before. A credential set
// that turned insecure for a bind (a development token on a non-loopback
// address) is not a reason to stop: the binds were checked at start.
func ReloadOnHangup(ctx context.Context, log *slog.Logger, reload func() error) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	go func() {
		defer signal.Stop(c)
		for {
			select {
			case <-ctx.Done():
				return
			case <-c:
				if err := reload(); err != nil {
					log.Error("SIGHUP: reload failed; keeping the credentials and certificates loaded before", "err", fmt.Sprint(err))
					continue
				}
				log.Info("SIGHUP: reloaded credentials and certificates")
			}
		}
	}()
}
