package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tcs-dev/tcs/cmd/internal/regionlist"
	"github.com/tcs-dev/tcs/internal/auth"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/lookup/adminclient"
)

// defaultRegions are the regions `make run` serves (cmd/tcs-dev).
const defaultRegions = regionlist.Default

// region is one region's name and the address of its tcs gRPC server.
type region = regionlist.Region

func parseRegions(s string) ([]region, error) { return regionlist.Parse(s) }

// selectRegions returns the regions named by want (all if want is empty),
// in the order of --regions.
func selectRegions(all []region, want []string) ([]region, error) {
	if len(want) == 0 {
		return all, nil
	}
	var out []region
	for _, w := range want {
		found := false
		for _, r := range all {
			if r.Name == w {
				out = append(out, r)
				found = true
				break
			}
		}
		if !found {
			names := make([]string, len(all))
			for i, r := range all {
				names[i] = r.Name
			}
			return nil, fmt.Errorf("--region %s: not one of --regions (%s)", w, strings.Join(names, ", "))
		}
	}
	return out, nil
}

func regionNames(rs []region) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// tlsOptions say how tcsctl reaches the regions' gRPC servers (and the
// catalog, if its URL is https).
type tlsOptions struct {
	Insecure   bool   // plaintext gRPC to every region
	Always     bool   // TLS to loopback regions too
	CAFile     string // PEM roots to trust instead of the system's
	CertFile   string // client certificate, for mutual TLS
	KeyFile    string
	ServerName string // overrides the name checked in server certificates
}

// config builds the TLS configuration, or nil for plaintext.
func (o tlsOptions) config() (*tls.Config, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("--cert and --key go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificates", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// dialer opens gRPC connections to regions, sharing one per address: TLS
// to a non-loopback address unless --insecure, to a loopback one with --tls
// or --ca-file. Each call carries the token of its service: the lookup
// token to tcs.v1, the replica-scan token to tcs.admin.v1.
type dialer struct {
	opts        tlsOptions
	tls         *tls.Config
	lookupToken string
	scanToken   string
	conns       map[string]*grpc.ClientConn
}

func newDialer(opts tlsOptions, lookupToken, scanToken string) (*dialer, error) {
	d := &dialer{opts: opts, lookupToken: lookupToken, scanToken: scanToken, conns: map[string]*grpc.ClientConn{}}
	if !opts.Insecure {
		cfg, err := opts.config()
		if err != nil {
			return nil, err
		}
		d.tls = cfg
	}
	return d, nil
}

// useTLS reports whether the connection to addr is TLS.
func (d *dialer) useTLS(addr string) bool {
	return d.tls != nil && (d.opts.Always || !isLoopback(addr))
}

func (d *dialer) conn(addr string) (*grpc.ClientConn, error) {
	if c, ok := d.conns[addr]; ok {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if d.useTLS(addr) {
		creds = credentials.NewTLS(d.tls)
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
		grpc.WithChainUnaryInterceptor(d.withToken))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	d.conns[addr] = c
	return c, nil
}

// withToken adds the bearer token of the called service, if tcsctl has one.
func (d *dialer) withToken(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	token := ""
	switch {
	case strings.HasPrefix(method, "/tcs.admin.v1."):
		token = d.scanToken
	case strings.HasPrefix(method, "/tcs.v1."):
		token = d.lookupToken
	}
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Close closes every connection.
func (d *dialer) Close() {
	for _, c := range d.conns {
		c.Close()
	}
}

func (d *dialer) lookupClient(addr string) (tcsv1.TenantContextServiceClient, error) {
	c, err := d.conn(addr)
	if err != nil {
		return nil, err
	}
	return tcsv1.NewTenantContextServiceClient(c), nil
}

// scanner returns a region's replica reader over the ReplicaAdmin API.
func (d *dialer) scanner(r region) (tcs.Scanner, error) {
	c, err := d.conn(r.Addr)
	if err != nil {
		return nil, err
	}
	return adminclient.New(c, r.Name, adminclient.WithTokenHint("--scan-token / TCS_SCAN_TOKEN")), nil
}

// isLoopback reports whether addr's host is a loopback name or address:
// plaintext is the default only there.
func isLoopback(addr string) bool { return auth.IsLoopback(addr) }
