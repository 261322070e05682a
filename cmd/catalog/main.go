// Command catalog serves the admin REST API over the source of truth: the
// embedded one (a bbolt file under --data) or DynamoDB (--backend aws).
// Each request's store calls run under --store-timeout; each caller's
// requests under --rate-limit, each client address's before
// authentication under --address-rate-limit. Callers
// authenticate with bearer tokens or client certificates (--tokens-file,
// reloaded with the TLS certificate on SIGHUP); a non-loopback --addr needs
// TLS (--tls-cert, --tls-key) and credentials, or --insecure-i-know.
//
// With --backend aws and a replica-scan token (TCS_SCAN_TOKEN) it answers
// GET /v1/tenants/{id}/propagation (tcsctl wait): the live tcs nodes are
// those heartbeating into the home region's <prefix>-nodes table, asked
// over ReplicaAdmin.TenantStatus (TLS off loopback, --nodes-ca-file,
// --nodes-plaintext), and a change must reach --propagation-regions (empty:
// the regions in the table). Without the token, and on the embedded
// backend, that route answers 501 not_configured.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/backend/catalogs"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/httpserve"
)

func main() { cmdutil.Main("catalog", run) }

// run is main with its dependencies passed in, so tests can call it.
// ready, if not nil, receives the listening address once the API serves.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, buildinfo.Get().String("catalog"))
		return nil
	}
	log, err := cfg.Obs.Logger(stderr)
	if err != nil {
		return err
	}
	tracing, stopTracing, err := cmdutil.StartTracing(ctx, "catalog", getenv, stdout, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	if cfg.MigrateLayout {
		table, n, err := catalogs.MigrateLayout(ctx, cfg.Backend)
		if err != nil {
			return fmt.Errorf("--migrate-layout: %w", err)
		}
		fmt.Fprintf(stdout, "catalog: table %s has the sharded layout (%d tenants moved)\n", table, n)
		return nil
	}
	guard, err := cfg.Security.Load(getenv, auth.Admin, auth.Reader)
	if err != nil {
		return err
	}
	if guard.Auth == nil || guard.Auth.Set().Len() == 0 {
		return errors.New("no credentials configured: set --tokens-file (or TCS_TOKENS_FILE) with admin or reader lines, or TCS_ADMIN_TOKEN (and TCS_READER_TOKEN)")
	}
	if err := guard.Check(cfg.Security.Insecure, log, guard.Bind("--addr", cfg.Addr)); err != nil {
		return err
	}
	store, err := catalogs.Open(ctx, cfg.Backend)
	if err != nil {
		return err
	}
	defer store.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	reg, registerer := cmdutil.Registry("catalog", "")
	if guard.TLS != nil {
		registerer.MustRegister(guard.TLS) // the serving certificate's expiry, for TCSCertificateExpiringSoon
	}
	checker, closeNodes, err := openPropagation(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer closeNodes()
	var prop httpapi.Propagation
	if checker != nil { // a nil *Checker in the interface would not read as "not configured"
		prop = checker
	}
	api := httpapi.New(httpapi.Config{Store: store, Propagation: prop, Auth: guard.Auth, Logger: log, StoreTimeout: cfg.StoreTimeout,
		Registry: reg, Registerer: registerer,
		RateLimits: cfg.RateLimits.Limits()})
	// The metrics port serves what the API port's /metrics and /readyz
	// do, on a port that needs no TLS or credentials to scrape.
	serveMetrics, _, err := cfg.Obs.ListenMetrics(cmdutil.ObsHandler(reg, nil, api.Ready, log), log)
	if err != nil {
		ln.Close()
		return err
	}
	cmdutil.ReloadOnHangup(ctx, log, guard.Reload)
	scheme := "http"
	if guard.TLS != nil {
		scheme = "https"
	}
	log.Info("catalog admin API listening", "addr", ln.Addr().String(), "backend", cfg.Backend.Backend, "tls", guard.TLS != nil)
	fmt.Fprintf(stdout, "catalog: admin REST API on %s://%s (OpenAPI at /openapi.json)\n", scheme, ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	g, gctx := errgroup.WithContext(ctx)
	h := tracing.HTTPHandler(api, "catalog") // the write's span, whose context the outbox entry carries
	g.Go(func() error {
		if guard.TLS != nil {
			return httpserve.ServeTLS(gctx, ln, h, guard.TLSConfig())
		}
		return httpserve.Serve(gctx, ln, h)
	})
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	err = g.Wait()
	log.Info("catalog stopped")
	return err
}
