package auth_test

import (
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
)

// TestServerTLSExportsCertificateExpiry: the serving certificate's expiry
// is exported at load, follows a renewed certificate once reloaded, and
// stays the old one when the reload fails.
func TestServerTLSExportsCertificateExpiry(t *testing.T) {
	t.Parallel()
	ca := authtest.NewCA(t)
	soon := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	old := ca.ServerUntil(t, "old", soon)
	s, err := auth.NewServerTLS(auth.TLSFiles{Cert: old.CertFile, Key: old.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	expiry := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != 1 || mfs[0].GetName() != "tcs_tls_certificate_expiry_timestamp_seconds" || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("gathered %v, want one series of tcs_tls_certificate_expiry_timestamp_seconds", mfs)
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	if got, want := expiry(), float64(soon.Unix()); got != want {
		t.Fatalf("expiry after load = %v, want %v (the certificate's NotAfter)", got, want)
	}

	later := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	renewed := ca.ServerUntil(t, "renewed", later)
	replace(t, renewed.CertFile, old.CertFile)
	replace(t, renewed.KeyFile, old.KeyFile)
	if got := expiry(); got != float64(soon.Unix()) {
		t.Fatalf("expiry before reload = %v, want the loaded certificate's %v", got, soon.Unix())
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, want := expiry(), float64(later.Unix()); got != want {
		t.Fatalf("expiry after reload = %v, want the renewed certificate's %v", got, want)
	}

	if err := os.WriteFile(old.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("reload of a broken certificate file succeeded")
	}
	if got, want := expiry(), float64(later.Unix()); got != want {
		t.Fatalf("expiry after a failed reload = %v, want the current certificate's %v", got, want)
	}
}

// replace copies the file src over dst.
func replace(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
