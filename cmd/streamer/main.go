// Command streamer carries committed changes from the catalog to the
// regions:
//
//	streamer publish                 outbox → stream
//	streamer apply --region REGION   stream → REGION's replica table
//
// With the embedded backends every data file is owned by one process at a
// time (bbolt locks it), so publish needs the catalog stopped, and apply
// needs publish and that region's tcs stopped; cmd/tcs-dev runs them all in
// one process. The AWS backends (--backend aws) have no such limit: several
// appliers of one region share the stream's shards through leases, and any
// number of publishers share the outbox's shards through leases
// (streamer/publease).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/backend/catalogs"
	"github.com/tcs-dev/tcs/cmd/internal/backend/streams"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/leasetable"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/publease"
)

func main() { cmdutil.Main("streamer", run) }

const usage = `usage: streamer publish [flags]          outbox → stream
       streamer apply --region R [flags]  stream → region R's replica
       streamer reconcile --regions R,… [flags]  compare the regions with the catalog, resync drift
Run "streamer publish -h", "streamer apply -h" or "streamer reconcile -h" for flags.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

// openPublishLeases opens the publishers' lease table in the home region.
func openPublishLeases(ctx context.Context, be *backend.Config, owner string, shards int, d time.Duration, log *slog.Logger, reg prometheus.Registerer) (*publease.Leases, error) {
	home, err := be.Clients(ctx, be.HomeRegion)
	if err != nil {
		return nil, err
	}
	if owner == "" {
		owner = leasetable.DefaultOwner()
	}
	return publease.Open(ctx, home.DynamoDB, be.Names.PublishLeaseTable(), owner, publease.Config{
		Shards: shards, LeaseDuration: d, Logger: log.With("worker", owner), Registerer: reg,
	})
}

// runWithReady is run; ready, if not nil, receives the metrics server's
// address once it listens (nothing without a metrics endpoint).
func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("missing command")
	}
	cmd, args := args[0], args[1:]
	if cmd == "--version" || cmd == "-version" || cmd == "version" {
		fmt.Fprintln(stdout, buildinfo.Get().String("streamer"))
		return nil
	}
	if cmd == "reconcile" {
		return runReconcile(ctx, args, getenv, stdout, stderr, ready)
	}
	fs := flag.NewFlagSet("streamer "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	be := backend.Register(fs, getenv)
	metricsDefault := cmdutil.DefaultPublishMetricsAddr
	if cmd == "apply" {
		metricsDefault = cmdutil.DefaultApplyMetricsAddr
	}
	obs := cmdutil.RegisterFlags(fs, getenv, metricsDefault)
	drain := fs.Bool("drain", false, "exit once everything available has been processed (publish: the outbox is empty; apply, embedded backend only: the region has caught up with the stream)")
	var (
		region, worker *string
		concurrency    int
		feed           streamer.FeedConfig
		envErrs        []error
		noPack         bool
		leaseDuration  time.Duration
	)
	readyMaxAge := fs.Duration("ready-max-age", cmdutil.EnvDuration(getenv, "TCS_READY_MAX_AGE", defaultReadyMaxAge, &envErrs),
		"/readyz answers 503 unless this process holds work (apply on Kinesis: a shard lease) and its last successful cycle (publish: an outbox read, empty or not; apply: a read of a held shard, its batch applied) is at most this old (env TCS_READY_MAX_AGE)")
	liveMaxAge := fs.Duration("live-max-age", cmdutil.EnvDuration(getenv, "TCS_LIVE_MAX_AGE", defaultLiveMaxAge, &envErrs),
		"/healthz answers 503 when work held has made no successful cycle for this long (env TCS_LIVE_MAX_AGE); 0: always 200")
	switch cmd {
	case "publish":
		worker = fs.String("worker-id", getenv("TCS_WORKER_ID"), "aws: this publisher's name among the publishers, which share the outbox's shards through leases; it must differ between running publishers, and a publisher restarted under the same name adopts its leases at once rather than after --lease-duration (env TCS_WORKER_ID; default host name, pid and a random suffix)")
		fs.DurationVar(&leaseDuration, "lease-duration", cmdutil.EnvDuration(getenv, "TCS_PUBLISH_LEASE_DURATION", publease.DefaultLeaseDuration, &envErrs),
			"aws: how long an outbox shard lease lives without renewal before another publisher takes it over (env TCS_PUBLISH_LEASE_DURATION): a killed publisher's shards move after about this long; every publisher must use the same")
		fs.BoolVar(&noPack, "kinesis-no-pack", false,
			"aws: store every event as a Kinesis record of its own, readable by appliers older than 0.2.0 (by default a tenant's consecutive events are packed into one record; upgrade the appliers first, or set this until they are)")
	case "apply":
		region = fs.String("region", getenv("TCS_REGION"), "region whose replica to apply to, e.g. us-east-1 (env TCS_REGION)")
		worker = fs.String("worker-id", getenv("TCS_WORKER_ID"), "aws: this applier's name among the appliers of its region, which share the stream's shards (env TCS_WORKER_ID; default host name, pid and a random suffix)")
		fs.IntVar(&concurrency, "concurrency", cmdutil.EnvInt(getenv, "TCS_APPLY_CONCURRENCY", streamer.DefaultApplyConcurrency, "a whole number of tenants, such as 16", &envErrs),
			"aws: how many tenants of a stream batch are applied at once (env TCS_APPLY_CONCURRENCY); each tenant's events stay in order. The embedded replica applies a batch in one transaction and ignores it")
		// Invalidations go to the region's SNS topic; with the embedded
		// backend this process has no broadcast to send to.
		fs.DurationVar(&feed.HeartbeatInterval, "feed-heartbeat", cmdutil.EnvDuration(getenv, "TCS_FEED_HEARTBEAT", streamer.DefaultHeartbeatInterval, &envErrs),
			"aws: how often to broadcast a heartbeat to the region's lookup servers, so that they can tell a quiet invalidation feed from a broken one (env TCS_FEED_HEARTBEAT); 0 sends none, for lookup servers too old to decode them")
		fs.DurationVar(&feed.Timeout, "feed-send-timeout", cmdutil.EnvDuration(getenv, "TCS_FEED_SEND_TIMEOUT", streamer.DefaultFeedTimeout, &envErrs),
			"aws: deadline of each invalidation broadcast (env TCS_FEED_SEND_TIMEOUT); a failed one goes back into the queue and is retried, with backoff up to 1 s, until --feed-max-age. Applying never waits for broadcasts")
		fs.DurationVar(&feed.MaxAge, "feed-max-age", cmdutil.EnvDuration(getenv, "TCS_FEED_MAX_AGE", streamer.DefaultFeedMaxAge, &envErrs),
			"aws: how long an invalidation that cannot be broadcast is retried before it is given up (env TCS_FEED_MAX_AGE); by then the lookup servers' caches have expired what it would drop, so keep it at least their --cache-ttl")
		fs.IntVar(&feed.MaxPending, "feed-max-pending", cmdutil.EnvInt(getenv, "TCS_FEED_MAX_PENDING", streamer.DefaultFeedMaxPending, "a whole number of tenants, such as 100000", &envErrs),
			"aws: most invalidations waiting to be broadcast, one per tenant (a tenant's newer change merges into its pending one) (env TCS_FEED_MAX_PENDING); when full, the oldest is dropped")
		fs.IntVar(&feed.Senders, "feed-senders", cmdutil.EnvInt(getenv, "TCS_FEED_SENDERS", streamer.DefaultFeedSenders, "a whole number, such as 4", &envErrs),
			"aws: how many invalidation broadcasts run at once (env TCS_FEED_SENDERS)")
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if obs.PrintVersion("streamer", stdout) {
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *readyMaxAge <= 0 || *liveMaxAge < 0 {
		return fmt.Errorf("--ready-max-age %v, --live-max-age %v: want a positive duration, and 0 (off) or more", *readyMaxAge, *liveMaxAge)
	}
	if cmd == "publish" && leaseDuration <= 0 {
		return fmt.Errorf("--lease-duration %v: want more than 0", leaseDuration)
	}
	if region != nil && *region == "" {
		return errors.New("apply needs --region (or TCS_REGION)")
	}
	if err := errors.Join(envErrs...); err != nil {
		return err
	}
	if region != nil {
		switch {
		case concurrency < 1:
			return fmt.Errorf("--concurrency %d: want at least 1", concurrency)
		case feed.HeartbeatInterval < 0:
			return fmt.Errorf("--feed-heartbeat %v: want 0 (none) or more", feed.HeartbeatInterval)
		case feed.Timeout <= 0:
			return fmt.Errorf("--feed-send-timeout %v: want more than 0", feed.Timeout)
		case feed.MaxAge <= 0:
			return fmt.Errorf("--feed-max-age %v: want more than 0", feed.MaxAge)
		case feed.MaxPending < 1:
			return fmt.Errorf("--feed-max-pending %d: want at least 1", feed.MaxPending)
		case feed.Senders < 1:
			return fmt.Errorf("--feed-senders %d: want at least 1", feed.Senders)
		}
		if feed.HeartbeatInterval == 0 {
			feed.HeartbeatInterval = -1 // FeedConfig's "none"
		}
	}
	if err := be.Validate(); err != nil {
		return err
	}
	log, err := obs.Logger(stderr)
	if err != nil {
		return err
	}
	// component is publish or apply; an applier's metrics carry its region
	// themselves, and the process-wide ones get it here.
	var regionLabel string
	if region != nil {
		regionLabel = *region
	}
	gather, reg := cmdutil.Registry(cmd, regionLabel)
	so := streams.Options{Logger: log, Registerer: reg, DisablePacking: noPack}
	if region != nil {
		so.Region, so.Owner = *region, *worker
	}
	stream, err := streams.Open(ctx, be, so)
	if err != nil {
		return err
	}
	defer stream.Close()

	var (
		work func(context.Context) error
		idle func(context.Context) (bool, error) // for --drain
	)
	hc := &health{gather: gather, cmd: cmd, readyMaxAge: *readyMaxAge, liveMaxAge: *liveMaxAge, started: time.Now(), now: time.Now}
	if cmd == "publish" {
		store, err := catalogs.Open(ctx, be)
		if err != nil {
			return err
		}
		defer store.Close()
		pc := streamer.PublisherConfig{Outbox: store, Stream: stream, Logger: log, Registerer: reg}
		if be.IsAWS() {
			// Any number of publishers share the outbox's shards; the
			// embedded catalog is this process's alone (bbolt locks it).
			leases, err := openPublishLeases(ctx, be, *worker, store.OutboxShards(), leaseDuration, log, reg)
			if err != nil {
				return err
			}
			pc.Leases = leases
			hc.leases = true
		}
		work = streamer.NewPublisher(pc).Run
		idle = func(ctx context.Context) (bool, error) {
			left, _, err := store.OutboxDepth(ctx, 1)
			return left == 0, err
		}
		log.Info("publishing outbox to stream", "backend", be.Backend)
	} else {
		rep, err := be.OpenReplica(ctx, *region)
		if err != nil {
			return err
		}
		defer rep.Close()
		// With the embedded backend, lookup servers in other processes
		// cannot hear a broadcast (bc is nil): their caches rely on TTLs
		// (invariant 5). On AWS it is the region's SNS topic.
		bc, err := be.OpenBroadcaster(ctx, backend.Invalidation{Region: *region, Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		applier := streamer.NewApplier(streamer.ApplierConfig{Region: *region, Stream: stream, Replica: rep, Broadcaster: bc, Feed: feed, Logger: log, Registerer: reg, Concurrency: concurrency})
		work = applier.Run
		hc.group = applier.Group()
		lagger, ok := stream.(interface {
			Lag(group string) (int64, error)
		})
		if *drain && !ok {
			return errors.New("apply --drain needs the embedded backend (a Kinesis stream has no end to drain to)")
		}
		hc.leases = be.IsAWS() // Kinesis shards are leased; the embedded stream is this process's alone
		if ok {
			idle = func(context.Context) (bool, error) {
				lag, err := lagger.Lag(applier.Group())
				return lag == 0, err
			}
		}
		log.Info("applying stream to replica", "region", *region, "backend", be.Backend)
	}

	if *drain {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			defer cancel()
			for {
				done, err := idle(ctx)
				if err != nil || done || ctx.Err() != nil {
					if err != nil {
						log.Error("drain check failed", "err", err)
					}
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	serveMetrics, metricsBound, err := obs.ListenMetrics(cmdutil.ObsHandler(gather, hc.alive, hc.ready, log), log)
	if err != nil {
		return err
	}
	if ready != nil && metricsBound != nil {
		ready <- metricsBound.String()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return work(gctx) })
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	err = g.Wait()
	log.Info("streamer stopped", "command", cmd)
	return err
}
