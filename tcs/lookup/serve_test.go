package lookup_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

const serviceName = "tcs.v1.TenantContextService"

func TestHealth(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{ShutdownTimeout: 100 * time.Millisecond})
	// Ready once subscribed and warmed (nothing to warm): health_test.go
	// tests the way there.
	testwait.For(t, "the server to be ready", func() bool { return e.srv.Ready() == nil })
	hc := healthpb.NewHealthClient(e.conn)
	ctx := testwait.Context(t)
	for _, svc := range []string{"", serviceName} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, %v; want SERVING", svc, resp, err)
		}
	}

	// A health watcher sees NOT_SERVING when the server shuts down.
	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch = %v, %v; want SERVING", resp, err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	resp, err := watch.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health Watch during shutdown = %v, %v; want NOT_SERVING", resp, err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestReflection(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{Reflection: true})
	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(testwait.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{serviceName, "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tcs test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Config
	}{
		{
			name:   "TLS",
			server: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			client: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
		{
			name: "mutual TLS",
			server: &tls.Config{
				Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
			},
			client: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 1, host))},
				lookup.ServeOptions{TLS: tt.server},
				grpc.WithTransportCredentials(credentials.NewTLS(tt.client)))
			got, err := e.client.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: host})
			if err != nil || got.GetTenant().GetId() != "acme" {
				t.Fatalf("Lookup over %s = %v, %v", tt.name, got, err)
			}

			// A plaintext client gets nowhere.
			conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = tcsv1.NewTenantContextServiceClient(conn).Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: host})
			if status.Code(err) != codes.Unavailable {
				t.Errorf("plaintext client: %v, want UNAVAILABLE", err)
			}
		})
	}
}
