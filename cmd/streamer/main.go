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
// appliers of one region share the stream's shards through leases.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/streamer"
)

func main() { cmdutil.Main("streamer", run) }

const usage = `usage: streamer publish [flags]          outbox → stream
       streamer apply --region R [flags]  stream → region R's replica
Run "streamer publish -h" or "streamer apply -h" for flags.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("missing command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("streamer "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	be := backend.Register(fs, getenv)
	metricsAddr := fs.String("metrics-addr", getenv("TCS_METRICS_ADDR"), "serve Prometheus /metrics on this address (env TCS_METRICS_ADDR); empty: none")
	logFormat := fs.String("log-format", cmdutil.EnvOr(getenv, "TCS_LOG_FORMAT", "text"), "log format: text or json (env TCS_LOG_FORMAT)")
	drain := fs.Bool("drain", false, "exit once everything available has been processed (publish: the outbox is empty; apply, embedded backend only: the region has caught up with the stream)")
	var (
		region, worker *string
		concurrency    int
		concurrencyErr error
	)
	switch cmd {
	case "publish":
	case "apply":
		region = fs.String("region", getenv("TCS_REGION"), "region whose replica to apply to, e.g. us-east-1 (env TCS_REGION)")
		worker = fs.String("worker-id", getenv("TCS_WORKER_ID"), "aws: this applier's name among the appliers of its region, which share the stream's shards (env TCS_WORKER_ID; default host name, pid and a random suffix)")
		def := streamer.DefaultApplyConcurrency
		if v := getenv("TCS_APPLY_CONCURRENCY"); v != "" {
			if def, concurrencyErr = strconv.Atoi(v); concurrencyErr != nil {
				concurrencyErr = fmt.Errorf("TCS_APPLY_CONCURRENCY %q: want a whole number of tenants, such as 16", v)
			}
		}
		fs.IntVar(&concurrency, "concurrency", def, "aws: how many tenants of a stream batch are applied at once (env TCS_APPLY_CONCURRENCY); each tenant's events stay in order. The embedded replica applies a batch in one transaction and ignores it")
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
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if region != nil && *region == "" {
		return errors.New("apply needs --region (or TCS_REGION)")
	}
	if concurrencyErr != nil {
		return concurrencyErr
	}
	if region != nil && concurrency < 1 {
		return fmt.Errorf("--concurrency %d: want at least 1", concurrency)
	}
	if err := be.Validate(); err != nil {
		return err
	}
	log, err := cmdutil.NewLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	so := backend.StreamOptions{Logger: log, Registerer: reg}
	if region != nil {
		so.Region, so.Owner = *region, *worker
	}
	stream, err := be.OpenStream(ctx, so)
	if err != nil {
		return err
	}
	defer stream.Close()

	var (
		work func(context.Context) error
		idle func(context.Context) (bool, error) // for --drain
	)
	if cmd == "publish" {
		store, err := be.OpenCatalog(ctx)
		if err != nil {
			return err
		}
		defer store.Close()
		work = streamer.NewPublisher(streamer.PublisherConfig{Outbox: store, Stream: stream, Logger: log, Registerer: reg}).Run
		idle = func(ctx context.Context) (bool, error) {
			left, err := store.ReadOutbox(ctx, 0, 1)
			return len(left) == 0, err
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
		applier := streamer.NewApplier(streamer.ApplierConfig{Region: *region, Stream: stream, Replica: rep, Broadcaster: bc, Logger: log, Registerer: reg, Concurrency: concurrency})
		work = applier.Run
		lagger, ok := stream.(interface {
			Lag(group string) (int64, error)
		})
		if *drain && !ok {
			return errors.New("apply --drain needs the embedded backend (a Kinesis stream has no end to drain to)")
		}
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
	serveMetrics, err := cmdutil.ListenMetrics(*metricsAddr, reg)
	if err != nil {
		return err
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
