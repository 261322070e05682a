package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSFiles are a server's certificate, key and optional client CA bundle.
type TLSFiles struct {
	Cert, Key, ClientCA string
}

// Enabled reports whether TLS is configured.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" }

// ServerTLS serves the certificate and client CA of its files, and reads
// them again on Reload: new handshakes get the new ones, connections
// already open keep theirs. It is a prometheus.Collector of the serving
// certificate's expiry (tcs_tls_certificate_expiry_timestamp_seconds), which
// the TCSCertificateExpiringSoon alert reads: a certificate renewed on disk
// but never reloaded keeps showing the old expiry.
type ServerTLS struct {
	files TLSFiles
	cur   atomic.Pointer[tls.Config]
	// notAfter is the serving certificate's expiry (Unix seconds).
	notAfter atomic.Int64
}

var _ prometheus.Collector = (*ServerTLS)(nil)

var descCertExpiry = prometheus.NewDesc("tcs_tls_certificate_expiry_timestamp_seconds",
	"When the serving TLS certificate (--tls-cert, as last loaded: at start and on SIGHUP) expires (Unix seconds).", nil, nil)

// Describe implements prometheus.Collector.
func (s *ServerTLS) Describe(ch chan<- *prometheus.Desc) { ch <- descCertExpiry }

// Collect implements prometheus.Collector.
func (s *ServerTLS) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(s.notAfter.Load()))
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
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("--tls-cert %s: %w", s.files.Cert, err)
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
	s.notAfter.Store(leaf.NotAfter.Unix())
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
