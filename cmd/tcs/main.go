// Command tcs serves one region's tenant lookups over gRPC
// (tcs.v1.TenantContextService, grpc.health.v1, reflection with
// --reflection) from the region's replica table, through an LRU cache.
// With credentials (--tokens-file, TCS_LOOKUP_TOKEN, TCS_SCAN_TOKEN)
// every call but health needs the lookup role, and the replica admin API
// (tcsctl verify, repair) the replica-scan role; credentials and the TLS
// certificate reload on SIGHUP. A non-loopback --addr needs TLS and
// credentials, or --insecure-i-know.
//
// With the embedded backend the replica file is owned by one process at a
// time, so `tcs` serves it while that region's applier is stopped; caches
// then rely on their TTL (there is no feed, so no feed liveness either).
// cmd/tcs-dev runs applier and server together, with in-process
// invalidation. With --backend aws any number of tcs nodes serve a region's
// DynamoDB replica table, each invalidated through its own SQS queue
// subscribed to the region's SNS topic; a node whose feed falls silent for
// --feed-timeout limits its cache TTL to --feed-down-ttl and refuses Watch
// streams until the feed delivers again, and --fallback-region gives its
// misses a second region's replica to read when its own fails.
//
// Health. gRPC health (and /readyz on the metrics port) is NOT_SERVING
// until the invalidation feed has delivered (a heartbeat comes within
// seconds) or counts as down, and the cache is warmed from
// --hot-keys-file (bounded by --warm-timeout), and while the replica has
// been unreadable for longer than --max-stale; /healthz fails only when
// the process is wedged (lookup.Server's Ready and Live).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/lookupflags"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

func main() { cmdutil.Main("tcs", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("tcs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	region := fs.String("region", getenv("TCS_REGION"), "region to serve, e.g. us-east-1 (env TCS_REGION); required")
	addr := fs.String("addr", cmdutil.EnvOr(getenv, "TCS_ADDR", "127.0.0.1:9001"), "gRPC listen address (env TCS_ADDR)")
	be := backend.Register(fs, getenv)
	sec := cmdutil.RegisterSecurity(fs, getenv, auth.Lookup, auth.ReplicaScan)
	reflect := fs.Bool("reflection", false, "serve gRPC server reflection (grpcurl without .proto files); off: it tells anyone who connects what the server offers")
	nodeID := fs.String("node-id", getenv("TCS_NODE_ID"), "aws: this node's name in its invalidation queue's name (env TCS_NODE_ID; default host name and pid)")
	obs := cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultTCSMetricsAddr)
	var co cache.Options
	fs.IntVar(&co.Size, "cache-size", cache.DefaultSize, "cache entries")
	fs.DurationVar(&co.TTL, "cache-ttl", cache.DefaultTTL, "how long a cached answer is served without reading the replica")
	fs.DurationVar(&co.NegativeTTL, "negative-ttl", cache.DefaultNegativeTTL, "how long an unknown hostname is remembered (negative: never)")
	fs.DurationVar(&co.MaxStale, "max-stale", cache.DefaultMaxStale, "oldest answer served when the replica fails (negative: never serve stale)")
	fs.DurationVar(&co.ReadTimeout, "read-timeout", cache.DefaultReadTimeout, "bound on one replica read")
	fs.IntVar(&co.FailingAfter, "failing-after", cache.DefaultFailingAfter, "replica reads failed in a row after which stale answers are served at once, one probe read at a time (negative: never)")
	fallbackRegion := fs.String("fallback-region", getenv("TCS_FALLBACK_REGION"), "aws: read this region's replica when a miss's read of --region's fails (answers served stale, never cached) (env TCS_FALLBACK_REGION); empty: none")
	fs.DurationVar(&co.FallbackTimeout, "fallback-timeout", cache.DefaultFallbackTimeout, "bound on one read of the --fallback-region replica")
	fs.BoolVar(&co.Refresh, "refresh-invalidated", true, "read the hostnames an invalidation names that this node has cached (looked up before) again at once, in the background (a changed tenant's next lookup is a hit, and its new answer is what a replica failure finds kept); false: read on the next lookup")
	var lc lookup.Config
	fs.DurationVar(&lc.FeedTimeout, "feed-timeout", lookup.DefaultFeedTimeout, "the invalidation feed is down after this long without a message (appliers send a heartbeat every 5s): cache TTL limited to --feed-down-ttl, Watch streams refused (negative: never)")
	fs.DurationVar(&lc.FeedDownTTL, "feed-down-ttl", lookup.DefaultFeedDownTTL, "cache TTL (and negative TTL) while the invalidation feed is down")
	fs.StringVar(&lc.HotKeysFile, "hot-keys-file", getenv("TCS_HOT_KEYS_FILE"), "file on local disk where this node keeps the hostnames it answered most (written every minute and on a clean stop), read back at start to warm the cache from the replica before reporting ready (env TCS_HOT_KEYS_FILE); empty: start cold")
	fs.IntVar(&lc.HotKeys, "hot-keys", lookup.DefaultHotKeys, "how many hostnames --hot-keys-file keeps (and the warm-up reads)")
	fs.DurationVar(&lc.WarmTimeout, "warm-timeout", lookup.DefaultWarmTimeout, "bound on the start-up warm-up from --hot-keys-file: past it the node reports ready with what it loaded (negative: no warm-up)")
	limits := lookupflags.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if obs.PrintVersion("tcs", stdout) {
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *region == "" {
		return errors.New("--region is required (or TCS_REGION)")
	}
	if err := be.Validate(); err != nil {
		return err
	}
	if *fallbackRegion != "" {
		switch {
		case !be.IsAWS():
			return errors.New("--fallback-region needs --backend aws (an embedded replica file is locked by the process that serves it)")
		case *fallbackRegion == *region:
			return fmt.Errorf("--fallback-region %s is --region itself; name another region", *fallbackRegion)
		}
	}
	if err := limits.Validate(); err != nil {
		return err
	}
	if lc.FeedDownTTL <= 0 {
		return fmt.Errorf("--feed-down-ttl %v: must be positive", lc.FeedDownTTL)
	}
	if lc.HotKeys <= 0 {
		return fmt.Errorf("--hot-keys %d: must be positive", lc.HotKeys)
	}
	guard, err := sec.Load(getenv, auth.Lookup, auth.ReplicaScan)
	if err != nil {
		return err
	}
	log, err := obs.Logger(stderr)
	if err != nil {
		return err
	}
	lookupOpen := guard.OpenUnlessConfigured(auth.Lookup)
	if err := guard.Check(sec.Insecure, log, guard.Bind("--addr", *addr)); err != nil {
		return err
	}
	rep, err := be.OpenReplica(ctx, *region)
	if err != nil {
		return err
	}
	defer rep.Close()
	if *fallbackRegion != "" {
		fb, err := be.OpenReplica(ctx, *fallbackRegion)
		if err != nil {
			return fmt.Errorf("--fallback-region: %w", err)
		}
		defer fb.Close()
		co.Fallback = fb
	}
	// Every metric carries component="tcs"; region is added to those that
	// do not carry it themselves (the feed's do).
	reg, registerer := cmdutil.Registry("tcs", *region)
	regionRegisterer := prometheus.WrapRegistererWith(prometheus.Labels{"region": *region}, registerer)
	if guard.TLS != nil {
		regionRegisterer.MustRegister(guard.TLS) // the serving certificate's expiry, for TCSCertificateExpiringSoon
	}
	if guard.Auth != nil {
		regionRegisterer.MustRegister(guard.Auth) // tcs_auth_refusals_total
	}
	// Embedded: no feed across processes (caches rely on their TTL). AWS:
	// this node's own SQS queue on the region's SNS topic.
	feed, err := be.OpenFeed(ctx, backend.Invalidation{Region: *region, NodeID: *nodeID, Logger: log, Registerer: registerer})
	if err != nil {
		return err
	}

	lc.Region, lc.Replica, lc.Feed, lc.Cache = *region, rep, feed, co
	so := lookup.ServeOptions{TLS: guard.TLSConfig(), Auth: guard.Auth, Reflection: *reflect, ServerOptions: cmdutil.RequestIDs(log.With("region", *region))}
	limits.Apply(&lc, &so)
	// The replica admin API is served whenever callers authenticate: only
	// replica-scan credentials open it, and a reload may add some.
	lc.Logger, lc.Registerer, lc.ReplicaAdmin = log.With("region", *region), regionRegisterer, guard.Auth != nil
	srv := lookup.New(lc)
	// /healthz and /readyz say what gRPC health does: see lookup.Server's
	// Live and Ready.
	serveMetrics, _, err := obs.ListenMetrics(cmdutil.ObsHandler(reg, cmdutil.Check(srv.Live), cmdutil.Check(srv.Ready), log), log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	cmdutil.ReloadOnHangup(gctx, log, guard.Reload)
	g.Go(func() error {
		return srv.Serve(gctx, ln, so)
	})
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	switch {
	case guard.Auth == nil:
		log.Warn("no credentials configured: Lookup, BatchLookup and Watch are open to anyone who reaches the port, ReplicaAdmin is off (set --tokens-file)")
	case lookupOpen:
		log.Warn("no lookup credentials configured: Lookup, BatchLookup and Watch are open to anyone who reaches the port (set --tokens-file or TCS_LOOKUP_TOKEN)")
	}
	log.Info("tcs lookup server listening", "region", *region, "addr", ln.Addr().String(), "tls", guard.TLS != nil, "auth", guard.Auth != nil)
	fmt.Fprintf(stdout, "tcs %s: gRPC on %s\n", *region, ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	err = g.Wait()
	log.Info("tcs stopped", "region", *region)
	return err
}
