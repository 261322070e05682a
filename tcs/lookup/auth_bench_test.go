package lookup_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/auth/authtest"
	"github.com/tcs-dev/tcs/internal/benchsize"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// BenchmarkLookupAuth measures cached Lookup throughput over TLS with
// authentication off, with a bearer token and with an mTLS client
// certificate, against the same server build in one run (each mode its own
// server, the credentials file holding 100 entries), and reports each
// mode's throughput relative to "off" (target ≥ 0.95). The modes are
// measured in turns, six rounds each starting with another mode, so that
// machine noise spreads evenly. -short: one round of at least 100 lookups
// per mode, a smoke run: its figures mean nothing.
func BenchmarkLookupAuth(b *testing.B) {
	ca := authtest.NewCA(b)
	token := authtest.Token("bench")
	lines := []string{auth.Line(auth.Lookup, token, "bench"), "lookup cert:cn:bench-client bench-client"}
	for i := range 98 {
		lines = append(lines, auth.Line(auth.Lookup, authtest.Token(fmt.Sprint(i)), fmt.Sprintf("svc-%d", i)))
	}
	set, err := auth.Parse(strings.NewReader(strings.Join(lines, "\n")), "bench")
	if err != nil {
		b.Fatal(err)
	}
	srvCert := ca.Server(b, "bench")
	serverTLS, err := auth.NewServerTLS(auth.TLSFiles{Cert: srvCert.CertFile, Key: srvCert.KeyFile, ClientCA: ca.File})
	if err != nil {
		b.Fatal(err)
	}
	clientCert := ca.Client(b, "bench-client")

	type mode struct {
		name string
		auth *auth.Authenticator
		tls  *tls.Config
		dial []grpc.DialOption
	}
	modes := []mode{
		{name: "off", tls: ca.ClientTLS()},
		{name: "token", auth: auth.Static(set), tls: ca.ClientTLS(), dial: []grpc.DialOption{grpc.WithPerRPCCredentials(benchToken(token))}},
		{name: "mtls", auth: auth.Static(set), tls: ca.ClientTLS(clientCert)},
	}
	clients := map[string]tcsv1.TenantContextServiceClient{}
	for _, m := range modes {
		rep, err := boltreplica.Open(filepath.Join(b.TempDir(), "replica.db"), boltreplica.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rep.Close() })
		if _, err := rep.Apply(context.Background(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
			b.Fatal(err)
		}
		srv := lookup.New(lookup.Config{Region: "bench", Replica: rep, FeedTimeout: -1, LookupRate: -1, MissRate: -1, MissRatePerCaller: -1})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, lis, lookup.ServeOptions{TLS: serverTLS.Config(), Auth: m.auth}) }()
		b.Cleanup(func() {
			cancel()
			<-done
		})
		conn, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(m.tls))}, m.dial...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		c := tcsv1.NewTenantContextServiceClient(conn)
		if _, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil {
			b.Fatalf("%s: %v", m.name, err)
		}
		clients[m.name] = c
	}

	// measure runs n lookups on 16 goroutines and returns lookups/s.
	measure := func(c tcsv1.TenantContextServiceClient, n int) float64 {
		const workers = 16
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if _, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds()
	}
	rounds := benchsize.Pick(6, 1)
	per := max(b.N/rounds, benchsize.Pick(1000, 100))
	total := map[string]float64{}
	b.ResetTimer()
	for round := range rounds {
		// Each round starts with another mode, so that none is always
		// measured first (or right after the same one).
		for i := range modes {
			m := modes[(round+i)%len(modes)]
			total[m.name] += measure(clients[m.name], per)
		}
	}
	b.StopTimer()
	for _, m := range modes {
		b.ReportMetric(total[m.name]/float64(rounds), m.name+"_lookups/s")
	}
	b.ReportMetric(total["token"]/total["off"], "token/off")
	b.ReportMetric(total["mtls"]/total["off"], "mtls/off")
}

type benchToken string

func (t benchToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (benchToken) RequireTransportSecurity() bool { return true }
