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
//
// config.go parses and checks the command line and environment; main.go
// only wires: the guards, the listeners, then each part in turn (catalog,
// publisher, each region's applier and lookup server, reconciler).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/catalog/propagation/nodeprobe"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/backend/catalogs"
	"github.com/tcs-dev/tcs/cmd/internal/backend/streams"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/httpserve"
	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/internal/telemetry"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/reconcile"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/work"
	"github.com/tcs-dev/tcs/tcs/work/workdynamo"
)

func main() { cmdutil.Main("tcs-dev", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

// endpoints are where a started system listens, for tests.
type endpoints struct {
	Catalog string
	Metrics string // "" without a metrics endpoint
	Regions map[string]string
}

// runWithReady is run; ready, if not nil, receives the endpoints once
// every part has started.
func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- endpoints) error {
	return runTraced(ctx, args, getenv, stdout, stderr, ready, nil)
}

// runTraced is runWithReady; tracing, if not nil, is the system's tracing
// instead of the one the OTEL_* variables ask for (tests pass an in-memory
// exporter's).
func runTraced(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- endpoints, tracing *telemetry.Tracing) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, buildinfo.Get().String("tcs-dev"))
		return nil
	}
	log, err := cfg.Obs.Logger(stderr)
	if err != nil {
		return err
	}
	if tracing == nil {
		var stopTracing func()
		if tracing, stopTracing, err = cmdutil.StartTracing(ctx, "tcs-dev", getenv, stdout, log); err != nil {
			return err
		}
		defer stopTracing()
	}
	guards, err := loadGuards(cfg, getenv, log)
	if err != nil {
		return err
	}
	// fresh: the data is new, and gets the sample tenants. The embedded
	// catalog's file is looked for before opening it creates it.
	be := cfg.Backend
	fresh := false
	if !be.IsAWS() {
		data, err := be.Data()
		if err != nil {
			return err
		}
		_, statErr := os.Stat(data.Catalog())
		fresh = errors.Is(statErr, os.ErrNotExist)
	}
	lns, err := listen(cfg)
	if err != nil {
		return err
	}
	defer lns.close()

	w, err := open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer w.close()
	w.tracing = tracing
	if be.IsAWS() {
		page, err := w.store.List(ctx, catalog.ListOptions{Limit: 1})
		if err != nil {
			return err
		}
		fresh = len(page.Tenants) == 0
	}
	w.startCatalog(lns.catalog, guards.catalog)
	cmdutil.ReloadOnHangup(w.ctx, log, func() error { return errors.Join(guards.catalog.Reload(), guards.lookup.Reload()) })
	w.startPublisher()
	scanners, err := w.startRegions(ctx, lns.regions, guards.lookup)
	if err != nil {
		return err
	}
	if cfg.ReconcileInterval > 0 {
		if err := w.startReconciler(ctx, scanners); err != nil {
			return err
		}
	}
	lns.handedOver()
	ep := endpoints{Catalog: lns.catalog.Addr().String(), Regions: map[string]string{}}
	for i, r := range cfg.Regions {
		ep.Regions[r.Region] = lns.regions[i].Addr().String()
	}
	if ep.Metrics, err = w.serveMetrics(); err != nil {
		return err
	}

	if fresh && cfg.Seed {
		n, err := seedTenants(ctx, w.store)
		if err != nil {
			return fmt.Errorf("seeding sample tenants: %w", err)
		}
		log.Info("seeded sample tenants", "count", n)
	}
	where := "the embedded backends (data in " + strings.TrimSuffix(be.DataDir, "/") + "/)"
	if be.IsAWS() {
		where = "the AWS backends (resource prefix " + be.Names.Prefix + ", home region " + be.HomeRegion + ")"
	}
	banner(stdout, where, ep, cfg.Regions, bannerOptions{tls: guards.catalog.TLS != nil,
		lookupAuth: guards.lookup.Auth != nil && !guards.lookup.Auth.IsOpen(auth.Lookup), reflection: cfg.Reflection})
	if ready != nil {
		ready <- ep
	}
	err = w.g.Wait()
	log.Info("tcs-dev stopped")
	return err
}

// guards protect tcs-dev's two kinds of surface: each accepts only its
// roles' credentials, the catalog admin and reader, the lookup servers
// lookup and replica-scan (a lookup server never accepts a catalog
// credential).
type guards struct{ catalog, lookup *cmdutil.Guard }

// loadGuards loads the credentials and TLS files, and refuses a listen
// address they cannot protect.
func loadGuards(cfg *config, getenv func(string) string, log *slog.Logger) (guards, error) {
	sec := cfg.Security
	catalogGuard, err := sec.Load(getenv, auth.Admin, auth.Reader)
	if err != nil {
		return guards{}, err
	}
	if catalogGuard.Auth == nil || catalogGuard.Auth.Set().Len() == 0 {
		return guards{}, errors.New("no catalog credentials configured: set --tokens-file (or TCS_TOKENS_FILE) with admin or reader lines, or TCS_ADMIN_TOKEN (and TCS_READER_TOKEN); make run sets the development tokens")
	}
	lookupGuard, err := sec.Load(getenv, auth.Lookup, auth.ReplicaScan)
	if err != nil {
		return guards{}, err
	}
	lookupGuard.OpenUnlessConfigured(auth.Lookup)
	binds := []auth.Bind{}
	for _, r := range cfg.Regions {
		binds = append(binds, lookupGuard.Bind("--regions "+r.Region, r.Addr))
	}
	if err := catalogGuard.Check(sec.Insecure, log, catalogGuard.Bind("--catalog-addr", cfg.CatalogAddr)); err != nil {
		return guards{}, err
	}
	if err := lookupGuard.Check(sec.Insecure, log, binds...); err != nil {
		return guards{}, err
	}
	return guards{catalog: catalogGuard, lookup: lookupGuard}, nil
}

// listeners are the system's listeners, all opened before anything starts
// so that a busy port fails the start, naming it.
type listeners struct {
	catalog net.Listener
	regions []net.Listener // cfg.Regions' lookup servers, in order
	owned   bool           // close closes them: no server owns them yet
}

func listen(cfg *config) (*listeners, error) {
	l := &listeners{owned: true}
	var err error
	if l.catalog, err = net.Listen("tcp", cfg.CatalogAddr); err != nil {
		return nil, fmt.Errorf("catalog: listen on %s: %w", cfg.CatalogAddr, err)
	}
	for _, r := range cfg.Regions {
		ln, err := net.Listen("tcp", r.Addr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("tcs %s: listen on %s: %w", r.Region, r.Addr, err)
		}
		l.regions = append(l.regions, ln)
	}
	return l, nil
}

// handedOver says the servers own the listeners now.
func (l *listeners) handedOver() { l.owned = false }

func (l *listeners) close() {
	if !l.owned {
		return
	}
	l.catalog.Close()
	for _, ln := range l.regions {
		ln.Close()
	}
}

// wiring is what tcs-dev's parts are wired into: the store, the stream and
// the metrics registry they share, the group they run in, the probes of the
// metrics port, and what to close once they have stopped.
type wiring struct {
	cfg     *config
	log     *slog.Logger
	tracing *telemetry.Tracing
	// One registry; each part's metrics carry its component (the
	// process-wide ones component="dev"), and the lookup servers' their
	// region (the appliers' and the invalidation metrics carry it
	// themselves).
	reg    *prometheus.Registry
	store  catalog.Store
	stream streamer.Stream // the publisher's; on the embedded backend every part's

	g      *errgroup.Group
	ctx    context.Context // the group's: the parts run until it ends
	cancel context.CancelFunc

	// The metrics port is ready when the catalog's store answers and every
	// lookup server is ready; alive unless a lookup server is wedged.
	live, ready map[string]cmdutil.Probe

	closers []io.Closer // closed in reverse once the parts have stopped

	// workLeases are every region's work pools' leases (--work), opened by
	// the first region: on AWS the home region's <prefix>-work-leases table,
	// as real tcs nodes share it; embedded, a table in this process.
	workLeases work.Leases

	// The lookup servers, registered for the catalog's propagation status
	// (GET /v1/tenants/{id}/propagation, tcsctl wait).
	nodes *propagation.Table
	local *nodeprobe.Local
}

// open opens the catalog's store and the stream the parts share.
func open(ctx context.Context, cfg *config, log *slog.Logger) (*wiring, error) {
	w := &wiring{cfg: cfg, log: log, live: map[string]cmdutil.Probe{}, ready: map[string]cmdutil.Probe{}}
	w.reg, _ = cmdutil.Registry("dev", "")
	w.nodes = propagation.NewTable(0, nil)
	w.local = nodeprobe.NewLocal(w.nodes)
	var gctx context.Context
	gctx, w.cancel = context.WithCancel(ctx)
	w.g, w.ctx = errgroup.WithContext(gctx)
	var err error
	if w.store, err = catalogs.Open(ctx, cfg.Backend); err != nil {
		w.close()
		return nil, err
	}
	w.closers = append(w.closers, w.store)
	// The embedded stream is one bbolt file: publisher and appliers share
	// it. On Kinesis each applier has its own consumer (its region's lease
	// table), and the publisher one that only appends.
	if w.stream, err = streams.Open(ctx, cfg.Backend, streams.Options{Logger: log.With("component", "stream"), Registerer: w.component("publish")}); err != nil {
		w.close()
		return nil, err
	}
	w.closers = append(w.closers, w.stream)
	return w, nil
}

// close stops the parts, if they still run, waits for them and closes what
// was opened for them.
func (w *wiring) close() {
	w.cancel()
	_ = w.g.Wait()
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i].Close()
	}
}

// component is the registerer of one part's metrics.
func (w *wiring) component(c string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"component": c}, w.reg)
}

// startCatalog serves the admin REST API on ln.
func (w *wiring) startCatalog(ln net.Listener, guard *cmdutil.Guard) {
	var regions []string
	for _, r := range w.cfg.Regions {
		regions = append(regions, r.Region)
	}
	api := httpapi.New(httpapi.Config{Store: w.store, Auth: guard.Auth, Logger: w.log.With("component", "catalog"), Registry: w.reg, Registerer: w.component("catalog"),
		Propagation: &propagation.Checker{Regions: regions, Registry: w.nodes, Prober: w.local}, RateLimits: w.cfg.RateLimits.Limits()})
	w.ready["catalog"] = api.Ready
	h := w.tracing.HTTPHandler(api, "catalog")
	w.g.Go(func() error {
		if guard.TLS != nil {
			return httpserve.ServeTLS(w.ctx, ln, h, guard.TLSConfig())
		}
		return httpserve.Serve(w.ctx, ln, h)
	})
}

// startPublisher runs the publisher: outbox → stream.
func (w *wiring) startPublisher() {
	pub := streamer.NewPublisher(streamer.PublisherConfig{Outbox: w.store, Stream: w.stream, Logger: w.log.With("component", "publish"), Registerer: w.component("publish"),
		TracerProvider: w.tracing.Provider()})
	w.g.Go(func() error { return pub.Run(w.ctx) })
}

// startRegions runs every region's applier and lookup server, the latter
// on lns (in cfg.Regions' order), and returns the replicas the reconciler
// can scan.
func (w *wiring) startRegions(ctx context.Context, lns []net.Listener, guard *cmdutil.Guard) ([]reconcile.Region, error) {
	if guard.Auth != nil {
		w.component("tcs").MustRegister(guard.Auth) // tcs_auth_refusals_total, one for every region's lookup server
	}
	var scanners []reconcile.Region
	for i, r := range w.cfg.Regions {
		sc, err := w.startRegion(ctx, r, lns[i], guard)
		if err != nil {
			return nil, err
		}
		if sc != nil {
			scanners = append(scanners, reconcile.Region{Name: r.Region, Scanner: sc})
		}
	}
	return scanners, nil
}

// startRegion opens region r's replica and runs its applier and its lookup
// server on ln; it returns the replica's scanner for the reconciler (nil if
// it cannot be scanned).
func (w *wiring) startRegion(ctx context.Context, r regionAddr, ln net.Listener, guard *cmdutil.Guard) (tcs.Scanner, error) {
	be := w.cfg.Backend
	applyReg, tcsReg := w.component("apply"), w.component("tcs")
	rep, err := be.OpenReplica(ctx, r.Region)
	if err != nil {
		return nil, err
	}
	w.closers = append(w.closers, rep)
	var (
		bc          tcs.Broadcaster
		feed        tcs.Feed
		applyStream = w.stream
	)
	if be.IsAWS() {
		// The SNS and Kinesis metrics carry their own region and stream
		// labels; streams share their collectors.
		inv := backend.Invalidation{Region: r.Region, NodeID: "tcs-dev-" + r.Region, Logger: w.log.With("component", "invalidation"), Registerer: applyReg}
		if bc, err = be.OpenBroadcaster(ctx, inv); err != nil {
			return nil, err
		}
		inv.Registerer = tcsReg
		if feed, err = be.OpenFeed(ctx, inv); err != nil {
			return nil, err
		}
		s, err := streams.Open(ctx, be, streams.Options{Region: r.Region, Owner: "tcs-dev-" + r.Region, Logger: w.log.With("component", "stream"), Registerer: applyReg})
		if err != nil {
			return nil, err
		}
		w.closers = append(w.closers, s)
		applyStream = s
	} else {
		hub := fanout.New(fanout.Options{})
		bc, feed = hub, hub
	}
	applier := streamer.NewApplier(streamer.ApplierConfig{Region: r.Region, Stream: applyStream, Replica: rep, Broadcaster: bc,
		Logger: w.log.With("component", "apply"), Registerer: applyReg, TracerProvider: w.tracing.Provider()})
	w.g.Go(func() error { return applier.Run(w.ctx) })
	var workNode *work.Node
	if w.cfg.Work {
		if w.workLeases == nil {
			if w.workLeases, err = openWorkLeases(ctx, be); err != nil {
				return nil, err
			}
		}
		workNode, err = work.NewNode(work.NodeConfig{Replica: rep, Leases: w.workLeases, LeaseDuration: w.cfg.WorkLeaseDuration, Logger: w.log.With("component", "work", "region", r.Region),
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"region": r.Region}, tcsReg)})
		if err != nil {
			return nil, err
		}
		feed = workNode.Feed(feed)
		w.g.Go(func() error { return workNode.Run(w.ctx) })
	}
	lc := lookup.Config{Region: r.Region, Replica: rep, Feed: feed, Logger: w.log.With("component", "tcs", "region", r.Region),
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"region": r.Region}, tcsReg), ReplicaAdmin: guard.Auth != nil,
		TracerProvider: w.tracing.Provider()}
	so := lookup.ServeOptions{TLS: guard.TLSConfig(), Auth: guard.Auth, Reflection: w.cfg.Reflection,
		ServerOptions: append(cmdutil.RequestIDs(w.log.With("component", "tcs", "region", r.Region)), w.tracing.GRPCLeafServerOptions()...)}
	if workNode != nil {
		so.Services = append(so.Services, workNode.Register)
	}
	w.cfg.Limits.Apply(&lc, &so)
	srv := lookup.New(lc)
	w.live["tcs "+r.Region], w.ready["tcs "+r.Region] = cmdutil.Check(srv.Live), cmdutil.Check(srv.Ready)
	w.g.Go(func() error { return srv.Serve(w.ctx, ln, so) })
	node := propagation.Node{Region: r.Region, ID: "tcs-dev-" + r.Region, Addr: ln.Addr().String()}
	w.g.Go(func() error {
		w.local.Serve(w.ctx, node, srv, 0)
		return nil
	})
	if be.IsAWS() {
		// Like a tcs node, it heartbeats into the home region's
		// <prefix>-nodes table, so that a catalog of another process
		// (catalog --backend aws) finds it; its own catalog asks in process.
		home, err := be.Clients(ctx, be.HomeRegion)
		if err != nil {
			return nil, err
		}
		nodes := dynamonodes.New(home.DynamoDB, dynamonodes.TableName(be.Names.Base()), 0, nil)
		nodes.Instrument(prometheus.WrapRegistererWith(prometheus.Labels{"region": r.Region}, tcsReg))
		limit := logevery.Limiter{Every: 30 * time.Second}
		w.g.Go(func() error {
			nodes.Run(w.ctx, node, 0, func(err error) {
				if held, ok := limit.Allow(time.Now()); ok {
					w.log.Warn("node registry: heartbeat failed", "component", "tcs", "region", r.Region, "err", err, "failures_not_logged", held)
				}
			})
			return nil
		})
	}
	sc, _ := rep.(tcs.Scanner)
	return sc, nil
}

// openWorkLeases opens the work pools' leases: on AWS the home region's
// <prefix>-work-leases table (workdynamo), shared with every tcs node of
// the same prefix, as `tcs --backend aws` opens it; embedded, a lease table
// in this process, shared by its regions.
func openWorkLeases(ctx context.Context, be *backend.Config) (work.Leases, error) {
	if !be.IsAWS() {
		table := memlease.NewFromClock()
		return work.StoresOf(func(pool, owner string) lease.Store { return table.Store(work.Group(pool), owner, nil) }), nil
	}
	home, err := be.Clients(ctx, be.HomeRegion)
	if err != nil {
		return nil, err
	}
	return workdynamo.Open(ctx, home.DynamoDB, be.Names.WorkLeaseTable())
}

// startReconciler runs the reconciler over the catalog and the regions'
// replicas.
func (w *wiring) startReconciler(ctx context.Context, regions []reconcile.Region) error {
	be := w.cfg.Backend
	recStream := w.stream
	if be.IsAWS() {
		// Its consumer group's leases live in the first region's lease table.
		s, err := streams.Open(ctx, be, streams.Options{Region: w.cfg.Regions[0].Region, Owner: "tcs-dev-reconcile", Logger: w.log.With("component", "stream"), Registerer: w.component("reconcile")})
		if err != nil {
			return err
		}
		w.closers = append(w.closers, s)
		recStream = s
	}
	rec, err := reconcile.New(reconcile.Config{Source: w.store, Stream: recStream, Regions: regions, Interval: w.cfg.ReconcileInterval, Settle: w.cfg.ReconcileSettle,
		Logger: w.log.With("component", "reconcile"), Registerer: w.component("reconcile"), TracerProvider: w.tracing.Provider()})
	if err != nil {
		return err
	}
	w.g.Go(func() error { return rec.Run(w.ctx) })
	return nil
}

// serveMetrics serves /metrics, /healthz and /readyz of the whole system
// on --metrics-addr, and returns the address bound ("" without a metrics
// endpoint).
func (w *wiring) serveMetrics() (string, error) {
	serve, bound, err := w.cfg.Obs.ListenMetrics(cmdutil.ObsHandler(w.reg, cmdutil.AllOf(w.live), cmdutil.AllOf(w.ready), w.log), w.log)
	if err != nil || serve == nil {
		return "", err
	}
	w.g.Go(func() error { return serve(w.ctx) })
	return bound.String(), nil
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
		fmt.Fprintf(&b, "  tcs %-19s gRPC %s   (%s)\n", r.Region, ep.Regions[r.Region], services)
	}
	if ep.Metrics != "" {
		fmt.Fprintf(&b, "  metrics                 http://%s   (/metrics, /healthz, /readyz of the whole system)\n", ep.Metrics)
	}
	first := ep.Regions[regions[0].Region]
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
