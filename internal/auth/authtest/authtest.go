// Package authtest makes what tests of authenticated servers need: a
// certificate authority issuing server and client certificates as PEM
// files, and credentials files.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate; File is where it is written.
	PEM  []byte
	File string
	dir  string
}

var serial atomic.Int64

// NewCA returns a new CA whose certificate is written under tb.TempDir().
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "tcs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), dir: tb.TempDir()}
	ca.File = filepath.Join(ca.dir, "ca.pem")
	if err := os.WriteFile(ca.File, ca.PEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	return ca
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// Pool returns a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Cert is an issued certificate: in memory and as PEM files.
type Cert struct {
	TLS      tls.Certificate
	CertFile string
	KeyFile  string
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost,
// with commonName cn (to tell certificates apart).
func (ca *CA) Server(tb testing.TB, cn string) Cert {
	tb.Helper()
	return ca.ServerUntil(tb, cn, time.Now().Add(24*time.Hour))
}

// ServerUntil is Server with a certificate that expires at notAfter.
func (ca *CA) ServerUntil(tb testing.TB, cn string, notAfter time.Time) Cert {
	tb.Helper()
	return ca.issue(tb, &x509.Certificate{Subject: pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotAfter: notAfter})
}

// Client issues a client certificate with common name cn and DNS SANs.
func (ca *CA) Client(tb testing.TB, cn string, dns ...string) Cert {
	tb.Helper()
	return ca.issue(tb, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotAfter: time.Now().Add(24 * time.Hour)})
}

func (ca *CA) issue(tb testing.TB, tmpl *x509.Certificate) Cert {
	key := newKey(tb)
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	name := strings.NewReplacer("/", "_", ":", "_", " ", "_").Replace(tmpl.Subject.CommonName) + "-" + big.NewInt(0).Set(tmpl.SerialNumber).String()
	c := Cert{TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		CertFile: filepath.Join(ca.dir, name+".crt"), KeyFile: filepath.Join(ca.dir, name+".key")}
	c.TLS.Leaf, _ = x509.ParseCertificate(der)
	if err := os.WriteFile(c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return c
}

// ClientTLS returns a client configuration trusting the CA, presenting
// certs (for mutual TLS) if given.
func (ca *CA) ClientTLS(certs ...Cert) *tls.Config {
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	for _, c := range certs {
		cfg.Certificates = append(cfg.Certificates, c.TLS)
	}
	return cfg
}

// WriteFile writes a credentials file of lines (auth.Line makes token
// lines) with mode 0600 and returns its path; an existing file is
// replaced.
func WriteFile(tb testing.TB, path string, lines ...string) string {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "credentials")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Token returns a distinct test token of at least 32 bytes.
func Token(name string) string {
	return "test-token-" + name + "-" + strings.Repeat("x", 32)
}
