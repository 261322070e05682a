// Command streamer carries committed changes from the catalog to the
// regions:
//
//	streamer publish                 outbox → stream
//	streamer apply --region REGION   stream → REGION's replica table
//	streamer reconcile --regions R,… compare every region's replica with
//	                                 the catalog and resync what drifted
//
// config.go parses and checks the command line and environment; main.go
// and reconcile.go only wire.
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
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
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
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	switch {
	case cfg.Help:
		fmt.Fprintln(stdout, usage)
		return nil
	case cfg.Version:
		fmt.Fprintln(stdout, buildinfo.Get().String("streamer"))
		return nil
	case cfg.Reconcile != nil:
		return runReconcile(ctx, cfg, getenv, stdout, stderr, ready)
	}
	return runWork(ctx, cfg, getenv, stdout, stderr, ready)
}

// runWork runs publish or apply as cfg says.
func runWork(ctx context.Context, cfg *config, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	be, cmd := cfg.Backend, cfg.Command
	log, err := cfg.Obs.Logger(stderr)
	if err != nil {
		return err
	}
	tracing, stopTracing, err := cmdutil.StartTracing(ctx, "streamer", getenv, stdout, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	// component is publish or apply; an applier's metrics carry its region
	// themselves, and the process-wide ones get it here.
	var regionLabel string
	if a := cfg.Apply; a != nil {
		regionLabel = a.Region
	}
	gather, reg := cmdutil.Registry(cmd, regionLabel)
	so := streams.Options{Logger: log, Registerer: reg}
	if p := cfg.Publish; p != nil {
		so.DisablePacking = p.NoPack
	}
	if a := cfg.Apply; a != nil {
		so.Region, so.Owner = a.Region, a.WorkerID
	}
	stream, err := streams.Open(ctx, be, so)
	if err != nil {
		return err
	}
	defer stream.Close()

	hc := &health{gather: gather, cmd: cmd, readyMaxAge: cfg.ReadyMaxAge, liveMaxAge: cfg.LiveMaxAge, started: time.Now(), now: time.Now}
	var j job
	if cfg.Publish != nil {
		j, err = publishJob(ctx, cfg, stream, hc, log, reg, tracing.Provider())
	} else {
		j, err = applyJob(ctx, cfg, stream, hc, log, reg, tracing.Provider())
	}
	defer j.close()
	if err != nil {
		return err
	}
	if cfg.Drain {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go stopWhenIdle(ctx, cancel, j.idle, log)
	}
	serveMetrics, metricsBound, err := cfg.Obs.ListenMetrics(cmdutil.ObsHandler(gather, hc.alive, hc.ready, log), log)
	if err != nil {
		return err
	}
	if ready != nil && metricsBound != nil {
		ready <- metricsBound.String()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return j.work(gctx) })
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	err = g.Wait()
	log.Info("streamer stopped", "command", cmd)
	return err
}

// job is what publish or apply runs: its loop, the --drain check (nil if
// the stream cannot tell), and what to close once the loop returned (also
// when setting up failed part-way).
type job struct {
	work    func(context.Context) error
	idle    func(context.Context) (bool, error)
	closers []io.Closer
}

func (j *job) close() {
	for _, c := range slices.Backward(j.closers) {
		c.Close()
	}
}

// publishJob opens the catalog (and, on AWS, the publishers' leases) and
// returns the publisher.
func publishJob(ctx context.Context, cfg *config, stream streamer.Stream, hc *health, log *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (job, error) {
	be, p := cfg.Backend, cfg.Publish
	var j job
	store, err := catalogs.Open(ctx, be)
	if err != nil {
		return j, err
	}
	j.closers = append(j.closers, store)
	pc := streamer.PublisherConfig{Outbox: store, Stream: stream, Logger: log, Registerer: reg, TracerProvider: tp}
	if be.IsAWS() {
		// Any number of publishers share the outbox's shards; the
		// embedded catalog is this process's alone (bbolt locks it).
		leases, err := openPublishLeases(ctx, be, p.WorkerID, store.OutboxShards(), p.LeaseDuration, log, reg)
		if err != nil {
			return j, err
		}
		pc.Leases = leases
		hc.leases = true
	}
	j.work = streamer.NewPublisher(pc).Run
	j.idle = func(ctx context.Context) (bool, error) {
		left, _, err := store.OutboxDepth(ctx, 1)
		return left == 0, err
	}
	log.Info("publishing outbox to stream", "backend", be.Backend)
	return j, nil
}

// applyJob opens the region's replica and invalidation broadcaster and
// returns the applier.
func applyJob(ctx context.Context, cfg *config, stream streamer.Stream, hc *health, log *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (job, error) {
	be, a := cfg.Backend, cfg.Apply
	var j job
	rep, err := be.OpenReplica(ctx, a.Region)
	if err != nil {
		return j, err
	}
	j.closers = append(j.closers, rep)
	// With the embedded backend, lookup servers in other processes
	// cannot hear a broadcast (bc is nil): their caches rely on TTLs
	// (invariant 5). On AWS it is the region's SNS topic.
	bc, err := be.OpenBroadcaster(ctx, backend.Invalidation{Region: a.Region, Logger: log, Registerer: reg})
	if err != nil {
		return j, err
	}
	applier := streamer.NewApplier(streamer.ApplierConfig{Region: a.Region, Stream: stream, Replica: rep, Broadcaster: bc, Feed: a.Feed, Logger: log, Registerer: reg, Concurrency: a.Concurrency,
		TracerProvider: tp})
	j.work = applier.Run
	hc.group = applier.Group()
	lagger, ok := stream.(interface {
		Lag(group string) (int64, error)
	})
	if cfg.Drain && !ok {
		// parseConfig refuses --drain on AWS, the one stream without Lag.
		return j, fmt.Errorf("apply --drain: the %s stream cannot tell its lag", be.Backend)
	}
	hc.leases = be.IsAWS() // Kinesis shards are leased; the embedded stream is this process's alone
	if ok {
		j.idle = func(context.Context) (bool, error) {
			lag, err := lagger.Lag(applier.Group())
			return lag == 0, err
		}
	}
	log.Info("applying stream to replica", "region", a.Region, "backend", be.Backend)
	return j, nil
}

// stopWhenIdle is --drain: it cancels once idle reports nothing left (or
// fails, or ctx ends), checking every 50ms.
func stopWhenIdle(ctx context.Context, cancel context.CancelFunc, idle func(context.Context) (bool, error), log *slog.Logger) {
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		done, err := idle(ctx)
		if err != nil {
			log.Error("drain check failed", "err", err)
		}
		if err != nil || done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
