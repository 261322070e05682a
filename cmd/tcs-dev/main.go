// Command tcs-dev runs the whole system in one process: the catalog's admin
// REST API, the streamer (publish and one applier per region) and a tcs
// lookup server per region. On the embedded backends (the default; `make
// run`) invalidation is in-process; with --backend aws every part uses the
// AWS backends (DynamoDB, Kinesis, SNS/SQS), which is how the AWS family is
// tested end to end against the emulators in one process.
//
// Each surface takes the credentials of its roles (admin and reader on the
// catalog, lookup and replica-scan on the lookup servers) from
// --tokens-file and the TCS_*_TOKEN variables; `make run` sets the
// development tokens, which are refused on non-loopback addresses. SIGHUP
// reloads credentials and certificates.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/backend/catalogs"
	"github.com/tcs-dev/tcs/cmd/internal/backend/streams"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/lookupflags"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/httpserve"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/reconcile"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

func main() { cmdutil.Main("tcs-dev", run) }

// DefaultRegions are the regions `make run` serves, with their gRPC ports.
const DefaultRegions = "us-east-1=127.0.0.1:9001,eu-west-1=127.0.0.1:9002,ap-southeast-2=127.0.0.1:9003"

type regionAddr struct{ region, addr string }

func parseRegions(s string) ([]regionAddr, error) {
	var out []regionAddr
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		region, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || region == "" || addr == "" {
			return nil, fmt.Errorf("--regions: %q is not REGION=HOST:PORT", part)
		}
		if seen[region] {
			return nil, fmt.Errorf("--regions: region %s listed twice", region)
		}
		seen[region] = true
		out = append(out, regionAddr{region, addr})
	}
	return out, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

// endpoints are where a started system listens, for tests.
type endpoints struct {
	Catalog string
	Metrics string // "" without a metrics endpoint
	Regions map[string]string
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- endpoints) error {
	fs := flag.NewFlagSet("tcs-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	be := backend.Register(fs, getenv)
	catalogAddr := fs.String("catalog-addr", cmdutil.EnvOr(getenv, "TCS_CATALOG_ADDR", "127.0.0.1:8080"), "admin REST API listen address (env TCS_CATALOG_ADDR)")
	regionsFlag := fs.String("regions", cmdutil.EnvOr(getenv, "TCS_REGIONS", DefaultRegions), "regions and their gRPC listen addresses (env TCS_REGIONS)")
	seed := fs.Bool("seed", true, "create sample tenants when the data directory is new (aws: when the catalog is empty)")
	obs := cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultDevMetricsAddr)
	sec := cmdutil.RegisterSecurity(fs, getenv, auth.Roles...)
	reflect := fs.Bool("reflection", false, "serve gRPC server reflection on the lookup servers (grpcurl without .proto files)")
	limits := lookupflags.Register(fs)
	var envErrs []error
	reconcileInterval := fs.Duration("reconcile-interval", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_INTERVAL", reconcile.DefaultInterval, &envErrs),
		"time between two comparisons of every region with the source of truth by the reconciler, which resyncs what drifted (as `streamer reconcile` does) (env TCS_RECONCILE_INTERVAL); 0: no reconciler")
	reconcileSettle := fs.Duration("reconcile-settle", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_SETTLE", reconcile.DefaultSettle, &envErrs),
		"how long a difference must last before the reconciler judges it drift (env TCS_RECONCILE_SETTLE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := errors.Join(envErrs...); err != nil {
		return err
	}
	if *reconcileInterval < 0 || *reconcileSettle <= 0 {
		return fmt.Errorf("--reconcile-interval %v, --reconcile-settle %v: want 0 (no reconciler) or more, and more than 0", *reconcileInterval, *reconcileSettle)
	}
	if obs.PrintVersion("tcs-dev", stdout) {
		return nil
	}
	if err := limits.Validate(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	regions, err := parseRegions(*regionsFlag)
	if err != nil {
		return err
	}
	log, err := obs.Logger(stderr)
	if err != nil {
		return err
	}
	// Each surface accepts only its roles' credentials: the catalog admin
	// and reader, the lookup servers lookup and replica-scan (a lookup
	// server never accepts a catalog credential).
	catalogGuard, err := sec.Load(getenv, auth.Admin, auth.Reader)
	if err != nil {
		return err
	}
	if catalogGuard.Auth == nil || catalogGuard.Auth.Set().Len() == 0 {
		return errors.New("no catalog credentials configured: set --tokens-file (or TCS_TOKENS_FILE) with admin or reader lines, or TCS_ADMIN_TOKEN (and TCS_READER_TOKEN); make run sets the development tokens")
	}
	lookupGuard, err := sec.Load(getenv, auth.Lookup, auth.ReplicaScan)
	if err != nil {
		return err
	}
	lookupGuard.OpenUnlessConfigured(auth.Lookup)
	binds := []auth.Bind{}
	for _, r := range regions {
		binds = append(binds, lookupGuard.Bind("--regions "+r.region, r.addr))
	}
	if err := catalogGuard.Check(sec.Insecure, log, catalogGuard.Bind("--catalog-addr", *catalogAddr)); err != nil {
		return err
	}
	if err := lookupGuard.Check(sec.Insecure, log, binds...); err != nil {
		return err
	}
	if err := be.Validate(); err != nil {
		return err
	}
	fresh := false
	if !be.IsAWS() {
		data, err := be.Data()
		if err != nil {
			return err
		}
		_, statErr := os.Stat(data.Catalog())
		fresh = errors.Is(statErr, os.ErrNotExist)
	}

	// Open every listener first: a busy port fails the start, naming it.
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	listen := func(what, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
		}
		listeners = append(listeners, ln)
		return ln, nil
	}
	catalogLn, err := listen("catalog", *catalogAddr)
	if err != nil {
		return err
	}
	regionLns := make([]net.Listener, len(regions))
	for i, r := range regions {
		if regionLns[i], err = listen("tcs "+r.region, r.addr); err != nil {
			return err
		}
	}

	store, err := catalogs.Open(ctx, be)
	if err != nil {
		return err
	}
	defer store.Close()
	if be.IsAWS() {
		page, err := store.List(ctx, catalog.ListOptions{Limit: 1})
		if err != nil {
			return err
		}
		fresh = len(page.Tenants) == 0
	}
	// One registry; each part's metrics carry its component (the
	// process-wide ones component="dev"), and the lookup servers' their
	// region (the appliers' and the invalidation metrics carry it
	// themselves).
	reg, _ := cmdutil.Registry("dev", "")
	component := func(c string) prometheus.Registerer {
		return prometheus.WrapRegistererWith(prometheus.Labels{"component": c}, reg)
	}
	publishReg, applyReg, tcsReg := component("publish"), component("apply"), component("tcs")
	if lookupGuard.Auth != nil {
		tcsReg.MustRegister(lookupGuard.Auth) // tcs_auth_refusals_total, one for every region's lookup server
	}
	// The embedded stream is one bbolt file: publisher and appliers share
	// it. On Kinesis each applier has its own consumer (its region's lease
	// table), and the publisher one that only appends.
	stream, err := streams.Open(ctx, be, streams.Options{Logger: log.With("component", "stream"), Registerer: publishReg})
	if err != nil {
		return err
	}
	defer stream.Close()

	g, gctx := errgroup.WithContext(ctx)
	api := httpapi.New(httpapi.Config{Store: store, Auth: catalogGuard.Auth, Logger: log.With("component", "catalog"), Registry: reg, Registerer: component("catalog")})
	g.Go(func() error {
		if catalogGuard.TLS != nil {
			return httpserve.ServeTLS(gctx, catalogLn, api, catalogGuard.TLSConfig())
		}
		return httpserve.Serve(gctx, catalogLn, api)
	})
	cmdutil.ReloadOnHangup(gctx, log, func() error { return errors.Join(catalogGuard.Reload(), lookupGuard.Reload()) })
	pub := streamer.NewPublisher(streamer.PublisherConfig{Outbox: store, Stream: stream, Logger: log.With("component", "publish"), Registerer: publishReg})
	g.Go(func() error { return pub.Run(gctx) })

	ep := endpoints{Catalog: catalogLn.Addr().String(), Regions: map[string]string{}}
	// The metrics port is ready when the catalog's store answers and every
	// lookup server is ready; alive unless a lookup server is wedged.
	liveProbes, readyProbes := map[string]cmdutil.Probe{}, map[string]cmdutil.Probe{"catalog": api.Ready}
	var scanners []reconcile.Region
	for i, r := range regions {
		rep, err := be.OpenReplica(ctx, r.region)
		if err != nil {
			return err
		}
		defer rep.Close()
		var (
			bc          tcs.Broadcaster
			feed        tcs.Feed
			applyStream = stream
		)
		regionReg := prometheus.WrapRegistererWith(prometheus.Labels{"region": r.region}, tcsReg)
		if be.IsAWS() {
			// The SNS and Kinesis metrics carry their own region and stream
			// labels; streams share their collectors.
			inv := backend.Invalidation{Region: r.region, NodeID: "tcs-dev-" + r.region, Logger: log.With("component", "invalidation"), Registerer: applyReg}
			if bc, err = be.OpenBroadcaster(ctx, inv); err != nil {
				return err
			}
			inv.Registerer = tcsReg
			if feed, err = be.OpenFeed(ctx, inv); err != nil {
				return err
			}
			s, err := streams.Open(ctx, be, streams.Options{Region: r.region, Owner: "tcs-dev-" + r.region, Logger: log.With("component", "stream"), Registerer: applyReg})
			if err != nil {
				return err
			}
			defer s.Close()
			applyStream = s
		} else {
			hub := fanout.New(fanout.Options{})
			bc, feed = hub, hub
		}
		applier := streamer.NewApplier(streamer.ApplierConfig{Region: r.region, Stream: applyStream, Replica: rep, Broadcaster: bc,
			Logger: log.With("component", "apply"), Registerer: applyReg})
		g.Go(func() error { return applier.Run(gctx) })
		lc := lookup.Config{Region: r.region, Replica: rep, Feed: feed, Logger: log.With("component", "tcs", "region", r.region),
			Registerer: regionReg, ReplicaAdmin: lookupGuard.Auth != nil}
		so := lookup.ServeOptions{TLS: lookupGuard.TLSConfig(), Auth: lookupGuard.Auth, Reflection: *reflect,
			ServerOptions: cmdutil.RequestIDs(log.With("component", "tcs", "region", r.region))}
		limits.Apply(&lc, &so)
		srv := lookup.New(lc)
		liveProbes["tcs "+r.region], readyProbes["tcs "+r.region] = cmdutil.Check(srv.Live), cmdutil.Check(srv.Ready)
		ln := regionLns[i]
		g.Go(func() error { return srv.Serve(gctx, ln, so) })
		ep.Regions[r.region] = ln.Addr().String()
		if sc, ok := rep.(tcs.Scanner); ok {
			scanners = append(scanners, reconcile.Region{Name: r.region, Scanner: sc})
		}
	}
	if *reconcileInterval > 0 {
		recStream := stream
		if be.IsAWS() {
			// Its consumer group's leases live in the first region's lease table.
			s, err := streams.Open(ctx, be, streams.Options{Region: regions[0].region, Owner: "tcs-dev-reconcile", Logger: log.With("component", "stream"), Registerer: component("reconcile")})
			if err != nil {
				return err
			}
			defer s.Close()
			recStream = s
		}
		rec, err := reconcile.New(reconcile.Config{Source: store, Stream: recStream, Regions: scanners, Interval: *reconcileInterval, Settle: *reconcileSettle,
			Logger: log.With("component", "reconcile"), Registerer: component("reconcile")})
		if err != nil {
			return err
		}
		g.Go(func() error { return rec.Run(gctx) })
	}
	listeners = nil // the servers own them now
	serveMetrics, metricsBound, err := obs.ListenMetrics(cmdutil.ObsHandler(reg, cmdutil.AllOf(liveProbes), cmdutil.AllOf(readyProbes), log), log)
	if err != nil {
		return err
	}
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
		ep.Metrics = metricsBound.String()
	}

	if fresh && *seed {
		n, err := seedTenants(ctx, store)
		if err != nil {
			return fmt.Errorf("seeding sample tenants: %w", err)
		}
		log.Info("seeded sample tenants", "count", n)
	}
	where := "the embedded backends (data in " + strings.TrimSuffix(be.DataDir, "/") + "/)"
	if be.IsAWS() {
		where = "the AWS backends (resource prefix " + be.Names.Prefix + ", home region " + be.HomeRegion + ")"
	}
	banner(stdout, where, ep, regions, bannerOptions{tls: catalogGuard.TLS != nil, lookupAuth: lookupGuard.Auth != nil && !lookupGuard.Auth.IsOpen(auth.Lookup), reflection: *reflect})
	if ready != nil {
		ready <- ep
	}
	err = g.Wait()
	log.Info("tcs-dev stopped")
	return err
}

// bannerOptions say what the banner describes.
type bannerOptions struct {
	tls        bool // the servers serve TLS
	lookupAuth bool // lookups need a lookup credential
	reflection bool
}

func banner(w io.Writer, where string, ep endpoints, regions []regionAddr, o bannerOptions) {
	scheme, grpcurlTLS := "http", "-plaintext"
	if o.tls {
		scheme, grpcurlTLS = "https", "-cacert CA.pem"
	}
	services := "tcs.v1.TenantContextService, tcs.admin.v1.ReplicaAdmin, health"
	if o.reflection {
		services += ", reflection"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nTCS is running on %s. Ctrl-C stops it; SIGHUP reloads credentials and certificates.\n\n", where)
	fmt.Fprintf(&b, "  catalog admin REST API  %s://%s   (OpenAPI: /openapi.json, metrics: /metrics)\n", scheme, ep.Catalog)
	for _, r := range regions {
		fmt.Fprintf(&b, "  tcs %-19s gRPC %s   (%s)\n", r.region, ep.Regions[r.region], services)
	}
	if ep.Metrics != "" {
		fmt.Fprintf(&b, "  metrics                 http://%s   (/metrics, /healthz, /readyz of the whole system)\n", ep.Metrics)
	}
	first := ep.Regions[regions[0].region]
	lookupAuth := ""
	if o.lookupAuth {
		lookupAuth = "-H 'authorization: Bearer dev-lookup-token' "
	}
	protoFlags := ""
	if !o.reflection {
		protoFlags = "-import-path proto -proto tcs/v1/tcs.proto "
	}
	fmt.Fprintf(&b, `
Try it (make run's development tokens, unless you set your own: dev-admin-token may write,
dev-reader-token may read, dev-lookup-token may look up, dev-scan-token may scan replicas;
development tokens work on loopback addresses only):
  curl -s %[1]s://%[2]s/v1/tenants -H 'Authorization: Bearer dev-reader-token'
  curl -s %[1]s://%[2]s/v1/hostnames/acme.example.com -H 'Authorization: Bearer dev-reader-token'
  go run github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 %[3]s %[4]s%[5]s\
    -d '{"hostname":"acme.example.com"}' %[6]s tcs.v1.TenantContextService/Lookup

`, scheme, ep.Catalog, grpcurlTLS, lookupAuth, protoFlags, first)
	_, _ = io.WriteString(w, b.String())
}
