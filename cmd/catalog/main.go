// Command catalog serves the admin REST API over the source of truth: the
// embedded one (a bbolt file under --data) or DynamoDB (--backend aws).
// Each request's store calls run under --store-timeout; each caller's
// requests under --rate-limit, each client address's before
// authentication under --address-rate-limit. Callers
// authenticate with bearer tokens or client certificates (--tokens-file,
// reloaded with the TLS certificate on SIGHUP); a non-loopback --addr needs
// TLS (--tls-cert, --tls-key) and credentials, or --insecure-i-know.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/backend/catalogs"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/httpserve"
)

func main() { cmdutil.Main("catalog", run) }

// run is main with its dependencies passed in, so tests can call it.
// ready, if not nil, receives the listening address once the API serves.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("catalog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", cmdutil.EnvOr(getenv, "TCS_CATALOG_ADDR", "127.0.0.1:8080"), "listen address of the admin REST API (env TCS_CATALOG_ADDR)")
	be := backend.Register(fs, getenv)
	sec := cmdutil.RegisterSecurity(fs, getenv, auth.Admin, auth.Reader)
	obs := cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultCatalogMetricsAddr)
	var envErrs []error
	var storeTimeout time.Duration
	fs.DurationVar(&storeTimeout, "store-timeout", cmdutil.EnvDuration(getenv, "TCS_STORE_TIMEOUT", httpapi.DefaultStoreTimeout, &envErrs), "deadline of each request's source-of-truth calls; a store that does not answer in time gets the request a 503 with Retry-After, a write \"outcome unknown\" (env TCS_STORE_TIMEOUT)")
	rateLimit := fs.Int("rate-limit", cmdutil.EnvInt(getenv, "TCS_RATE_LIMIT", httpapi.DefaultPerCaller, "a whole number of requests a second", &envErrs), "requests a second one authenticated caller may send, in bursts of twice that; beyond it 429 with Retry-After; 0: no limit (env TCS_RATE_LIMIT)")
	addressRateLimit := fs.Int("address-rate-limit", cmdutil.EnvInt(getenv, "TCS_ADDRESS_RATE_LIMIT", httpapi.DefaultPerAddress, "a whole number of requests a second", &envErrs), "requests a second one client address may send before or without authentication (open routes, failed credentials, unknown routes), in bursts of twice that; 0: no limit (env TCS_ADDRESS_RATE_LIMIT)")
	migrate := fs.Bool("migrate-layout", false, "move the DynamoDB catalog table from the unsharded layout of TCS 0.x to the sharded one, then exit: once, with no catalog or publisher running, after the old publisher drained the old outbox (streamer publish --drain); running it again finishes an interrupted migration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if obs.PrintVersion("catalog", stdout) {
		return nil
	}
	if err := errors.Join(envErrs...); err != nil {
		return err
	}
	if storeTimeout <= 0 {
		return fmt.Errorf("--store-timeout %v: want a positive duration", storeTimeout)
	}
	if *rateLimit < 0 || *addressRateLimit < 0 {
		return fmt.Errorf("--rate-limit %d, --address-rate-limit %d: want 0 (no limit) or more", *rateLimit, *addressRateLimit)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := be.Validate(); err != nil {
		return err
	}
	log, err := obs.Logger(stderr)
	if err != nil {
		return err
	}
	if *migrate {
		table, n, err := catalogs.MigrateLayout(ctx, be)
		if err != nil {
			return fmt.Errorf("--migrate-layout: %w", err)
		}
		fmt.Fprintf(stdout, "catalog: table %s has the sharded layout (%d tenants moved)\n", table, n)
		return nil
	}
	guard, err := sec.Load(getenv, auth.Admin, auth.Reader)
	if err != nil {
		return err
	}
	if guard.Auth == nil || guard.Auth.Set().Len() == 0 {
		return errors.New("no credentials configured: set --tokens-file (or TCS_TOKENS_FILE) with admin or reader lines, or TCS_ADMIN_TOKEN (and TCS_READER_TOKEN)")
	}
	if err := guard.Check(sec.Insecure, log, guard.Bind("--addr", *addr)); err != nil {
		return err
	}
	store, err := catalogs.Open(ctx, be)
	if err != nil {
		return err
	}
	defer store.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	reg, registerer := cmdutil.Registry("catalog", "")
	if guard.TLS != nil {
		registerer.MustRegister(guard.TLS) // the serving certificate's expiry, for TCSCertificateExpiringSoon
	}
	api := httpapi.New(httpapi.Config{Store: store, Auth: guard.Auth, Logger: log, StoreTimeout: storeTimeout,
		Registry: reg, Registerer: registerer,
		RateLimits: &httpapi.RateLimits{PerCaller: float64(*rateLimit), PerAddress: float64(*addressRateLimit)}})
	// The metrics port serves what the API port's /metrics and /readyz
	// do, on a port that needs no TLS or credentials to scrape.
	serveMetrics, _, err := obs.ListenMetrics(cmdutil.ObsHandler(reg, nil, api.Ready, log), log)
	if err != nil {
		ln.Close()
		return err
	}
	cmdutil.ReloadOnHangup(ctx, log, guard.Reload)
	scheme := "http"
	if guard.TLS != nil {
		scheme = "https"
	}
	log.Info("catalog admin API listening", "addr", ln.Addr().String(), "backend", be.Backend, "tls", guard.TLS != nil)
	fmt.Fprintf(stdout, "catalog: admin REST API on %s://%s (OpenAPI at /openapi.json)\n", scheme, ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if guard.TLS != nil {
			return httpserve.ServeTLS(gctx, ln, api, guard.TLSConfig())
		}
		return httpserve.Serve(gctx, ln, api)
	})
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	err = g.Wait()
	log.Info("catalog stopped")
	return err
}
