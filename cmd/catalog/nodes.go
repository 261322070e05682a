package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/catalog/propagation/nodeprobe"
	"github.com/tcs-dev/tcs/internal/auth"
)

// openPropagation makes the propagation status of the AWS family: a
// Checker over the home region's <prefix>-nodes table, asking each node
// over ReplicaAdmin.TenantStatus with the replica-scan token. It returns a
// nil Checker (the route answers 501 not_configured) on the embedded
// backend, whose lookup nodes are not in a shared registry, and without
// TCS_SCAN_TOKEN, saying so in the log. close releases the connections.
func openPropagation(ctx context.Context, cfg *config, log *slog.Logger) (c *propagation.Checker, close func(), err error) {
	if !cfg.Backend.IsAWS() {
		return nil, func() {}, nil
	}
	if cfg.ScanToken == "" {
		log.Warn("GET /v1/tenants/{id}/propagation is off (501 not_configured): set TCS_SCAN_TOKEN to a replica-scan token the tcs nodes accept")
		return nil, func() {}, nil
	}
	opts, err := nodeDialOptions(cfg.Nodes, cfg.ScanToken)
	if err != nil {
		return nil, nil, err
	}
	home, err := cfg.Backend.Clients(ctx, cfg.Backend.HomeRegion)
	if err != nil {
		return nil, nil, err
	}
	remote := nodeprobe.NewRemoteFunc(opts)
	reg := dynamonodes.New(home.DynamoDB, dynamonodes.TableName(cfg.Backend.Names.Base()), 0, nil)
	// Each wait polls every 5–50 ms: read the table at most once a second.
	return &propagation.Checker{Regions: cfg.PropagationRegions, Registry: propagation.Cached(reg, 0, nil), Prober: remote}, func() { remote.Close() }, nil
}

// nodeDialOptions are how the catalog dials a tcs node at addr: TLS when
// --nodes-ca-file is set or addr is off loopback (unless --nodes-plaintext),
// every call carrying the replica-scan token. With --nodes-server-name the
// certificates are checked for that name rather than the address's host.
func nodeDialOptions(n NodeTLS, token string) (func(addr string) []grpc.DialOption, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: n.ServerName}
	if n.CAFile != "" {
		pem, err := os.ReadFile(n.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--nodes-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--nodes-ca-file %s: no PEM certificates", n.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	withToken := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), method, req, reply, cc, opts...)
	}
	return func(addr string) []grpc.DialOption {
		creds := insecure.NewCredentials()
		if !n.Plaintext && (n.CAFile != "" || !auth.IsLoopback(addr)) {
			creds = credentials.NewTLS(tlsCfg)
		}
		return []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithUnaryInterceptor(withToken)}
	}, nil
}
