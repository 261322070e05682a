package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// TLSFiles are a server's certificate, key and optional client CA bundle.
type TLSFiles struct {
	Cert, Key, ClientCA string
}

// Enabled reports whether TLS is configured.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" }

// ServerTLS serves the certificate and client CA of its files, and reads
// them again on Reload: new handshakes get the new ones, connections
// already open keep theirs.
type ServerTLS struct {
	files TLSFiles
	cur   atomic.Pointer[tls.Config]
}

// NewServerTLS loads files. With a client CA, clients may present a
// certificate signed by it (verified, then matched against the credentials'
// allow-list); they are not required to, since a bearer token works too.
func NewServerTLS(files TLSFiles) (*ServerTLS, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	s := &ServerTLS{files: files}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on an error the current configuration
// stays.
func (s *ServerTLS) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("TLS key pair (--tls-cert %s, --tls-key %s): %w", s.files.Cert, s.files.Key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.files.ClientCA != "" {
		pem, err := os.ReadFile(s.files.ClientCA)
		if err != nil {
			return fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-client-ca %s: no PEM certificates", s.files.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	s.cur.Store(cfg)
	return nil
}

// Config returns the configuration to serve with: each handshake takes the
// configuration current at that moment.
func (s *ServerTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}
