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
// misses a second region's replica to read when its own fails. Each AWS
// node heartbeats into the home region's <prefix>-nodes table as
// --node-id at --advertise-addr (--register=false: not), and removes
// itself on a clean stop, so that the catalog's propagation status asks it.
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
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/work"
	"github.com/tcs-dev/tcs/tcs/work/workdynamo"
)

func main() { cmdutil.Main("tcs", run) }

// openWork makes the node's part of the work pools: on AWS over the home
// region's work lease table, shared by every node; on the embedded family
// over a lease table in this process (the pools span this node only).
func openWork(ctx context.Context, cfg *config, rep tcs.Replica, log *slog.Logger, reg prometheus.Registerer) (*work.Node, error) {
	var leases work.Leases
	if cfg.Backend.IsAWS() {
		home, err := cfg.Backend.Clients(ctx, cfg.Backend.HomeRegion)
		if err != nil {
			return nil, err
		}
		if leases, err = workdynamo.Open(ctx, home.DynamoDB, cfg.Backend.Names.WorkLeaseTable()); err != nil {
			return nil, err
		}
	} else {
		table := memlease.NewFromClock()
		leases = work.StoresOf(func(pool, owner string) lease.Store { return table.Store(work.Group(pool), owner, nil) })
	}
	return work.NewNode(work.NodeConfig{Replica: rep, Leases: leases, LeaseDuration: cfg.WorkLeaseDuration,
		Logger: log.With("component", "work"), Registerer: reg})
}

// openNodes opens the node registry this node heartbeats into (the home
// region's <prefix>-nodes table), or returns nil: embedded, or
// --register=false.
func openNodes(ctx context.Context, cfg *config) (*dynamonodes.Registry, error) {
	if !cfg.Backend.IsAWS() || !cfg.Register {
		return nil, nil
	}
	home, err := cfg.Backend.Clients(ctx, cfg.Backend.HomeRegion)
	if err != nil {
		return nil, err
	}
	return dynamonodes.New(home.DynamoDB, dynamonodes.TableName(cfg.Backend.Names.Base()), 0, nil), nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, buildinfo.Get().String("tcs"))
		return nil
	}
	region := cfg.Region
	guard, err := cfg.Security.Load(getenv, auth.Lookup, auth.ReplicaScan)
	if err != nil {
		return err
	}
	log, err := cfg.Obs.Logger(stderr)
	if err != nil {
		return err
	}
	tracing, stopTracing, err := cmdutil.StartTracing(ctx, "tcs", getenv, stdout, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	lookupOpen := guard.OpenUnlessConfigured(auth.Lookup)
	if err := guard.Check(cfg.Security.Insecure, log, guard.Bind("--addr", cfg.Addr)); err != nil {
		return err
	}
	rep, err := cfg.Backend.OpenReplica(ctx, region)
	if err != nil {
		return err
	}
	defer rep.Close()
	co := cfg.Cache
	if cfg.FallbackRegion != "" {
		fb, err := cfg.Backend.OpenReplica(ctx, cfg.FallbackRegion)
		if err != nil {
			return fmt.Errorf("--fallback-region: %w", err)
		}
		defer fb.Close()
		co.Fallback = fb
	}
	// Every metric carries component="tcs"; region is added to those that
	// do not carry it themselves (the feed's do).
	reg, registerer := cmdutil.Registry("tcs", region)
	regionRegisterer := prometheus.WrapRegistererWith(prometheus.Labels{"region": region}, registerer)
	if guard.TLS != nil {
		regionRegisterer.MustRegister(guard.TLS) // the serving certificate's expiry, for TCSCertificateExpiringSoon
	}
	if guard.Auth != nil {
		regionRegisterer.MustRegister(guard.Auth) // tcs_auth_refusals_total
	}
	if cfg.NodeID == "" {
		host, _ := os.Hostname()
		cfg.NodeID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	// Embedded: no feed across processes (caches rely on their TTL). AWS:
	// this node's own SQS queue on the region's SNS topic.
	feed, err := cfg.Backend.OpenFeed(ctx, backend.Invalidation{Region: region, NodeID: cfg.NodeID, Logger: log, Registerer: registerer})
	if err != nil {
		return err
	}

	var workNode *work.Node
	if cfg.Work {
		if workNode, err = openWork(ctx, cfg, rep, log, regionRegisterer); err != nil {
			return err
		}
		feed = workNode.Feed(feed)
	}

	nodes, err := openNodes(ctx, cfg)
	if err != nil {
		return err
	}

	lc := cfg.Lookup
	lc.Region, lc.Replica, lc.Feed, lc.Cache = region, rep, feed, co
	so := lookup.ServeOptions{TLS: guard.TLSConfig(), Auth: guard.Auth, Reflection: cfg.Reflection,
		ServerOptions: append(cmdutil.RequestIDs(log.With("region", region)), tracing.GRPCLeafServerOptions()...)}
	if workNode != nil {
		so.Services = append(so.Services, workNode.Register)
	}
	cfg.Limits.Apply(&lc, &so)
	// The replica admin API is served whenever callers authenticate: only
	// replica-scan credentials open it, and a reload may add some.
	lc.Logger, lc.Registerer, lc.ReplicaAdmin = log.With("region", region), regionRegisterer, guard.Auth != nil
	lc.TracerProvider = tracing.Provider()
	srv := lookup.New(lc)
	// /healthz and /readyz say what gRPC health does: see lookup.Server's
	// Live and Ready.
	serveMetrics, _, err := cfg.Obs.ListenMetrics(cmdutil.ObsHandler(reg, cmdutil.Check(srv.Live), cmdutil.Check(srv.Ready), log), log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	cmdutil.ReloadOnHangup(gctx, log, guard.Reload)
	g.Go(func() error {
		return srv.Serve(gctx, ln, so)
	})
	if workNode != nil {
		g.Go(func() error { return workNode.Run(gctx) })
	}
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	if nodes != nil {
		node := propagation.Node{Region: region, ID: cfg.NodeID, Addr: cfg.AdvertiseAddr}
		nodes.Instrument(regionRegisterer) // tcs_node_registry_*, for TCSNodeHeartbeatFailing
		g.Go(func() error {
			// A failing heartbeat is retried every 2 s: log it at most twice a minute.
			limit := logevery.Limiter{Every: 30 * time.Second}
			nodes.Run(gctx, node, 0, func(err error) {
				if held, ok := limit.Allow(time.Now()); ok {
					log.Warn("node registry: heartbeat failed; past 6 s without one the catalog's propagation status drops this node", "table", dynamonodes.TableName(cfg.Backend.Names.Base()), "err", err, "failures_not_logged", held)
				}
			})
			return nil
		})
	}
	switch {
	case guard.Auth == nil:
		log.Warn("no credentials configured: Lookup, BatchLookup and Watch are open to anyone who reaches the port, ReplicaAdmin is off (set --tokens-file)")
	case lookupOpen:
		log.Warn("no lookup credentials configured: Lookup, BatchLookup and Watch are open to anyone who reaches the port (set --tokens-file or TCS_LOOKUP_TOKEN)")
	}
	log.Info("tcs lookup server listening", "region", region, "addr", ln.Addr().String(), "tls", guard.TLS != nil, "auth", guard.Auth != nil)
	fmt.Fprintf(stdout, "tcs %s: gRPC on %s\n", region, ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	err = g.Wait()
	log.Info("tcs stopped", "region", region)
	return err
}
