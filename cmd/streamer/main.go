// Command streamer carries committed changes from the catalog to the
// regions:
//
//	streamer publish                 outbox → stream
//	streamer apply --region REGION   stream → REGION's replica table
//
// With the embedded backends every data file is owned by one process at a
// time (bbolt locks it), so publish needs the catalog stopped, and apply
// needs publish and that region's tcs stopped; cmd/tcs-dev runs them all in
// one process. The AWS backends have no such limit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
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
	dataDir := fs.String("data", cmdutil.EnvOr(getenv, "TCS_DATA_DIR", "data"), "data directory of the embedded backends (env TCS_DATA_DIR)")
	metricsAddr := fs.String("metrics-addr", getenv("TCS_METRICS_ADDR"), "serve Prometheus /metrics on this address (env TCS_METRICS_ADDR); empty: none")
	logFormat := fs.String("log-format", cmdutil.EnvOr(getenv, "TCS_LOG_FORMAT", "text"), "log format: text or json (env TCS_LOG_FORMAT)")
	drain := fs.Bool("drain", false, "exit once everything available has been processed (publish: the outbox is empty; apply: the region has caught up with the stream)")
	var region *string
	switch cmd {
	case "publish":
	case "apply":
		region = fs.String("region", getenv("TCS_REGION"), "region whose replica to apply to, e.g. us-east-1 (env TCS_REGION)")
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
	log, err := cmdutil.NewLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	data := cmdutil.Data(*dataDir)
	if err := data.Ensure(); err != nil {
		return err
	}
	stream, err := boltlog.Open(data.Stream(), boltlog.Options{})
	if err != nil {
		return err
	}
	defer stream.Close()
	reg := prometheus.NewRegistry()

	var (
		worker func(context.Context) error
		idle   func(context.Context) (bool, error) // for --drain
	)
	if cmd == "publish" {
		store, err := bolt.Open(data.Catalog(), bolt.Options{})
		if err != nil {
			return err
		}
		defer store.Close()
		worker = streamer.NewPublisher(streamer.PublisherConfig{Outbox: store, Stream: stream, Logger: log, Registerer: reg}).Run
		idle = func(ctx context.Context) (bool, error) {
			left, err := store.ReadOutbox(ctx, 0, 1)
			return len(left) == 0, err
		}
		log.Info("publishing outbox to stream", "catalog", data.Catalog(), "stream", data.Stream())
	} else {
		rep, err := boltreplica.Open(data.Replica(*region), boltreplica.Options{})
		if err != nil {
			return err
		}
		defer rep.Close()
		// Lookup servers in other processes cannot hear an in-process
		// broadcast; their caches rely on TTLs (invariant 5).
		applier := streamer.NewApplier(streamer.ApplierConfig{Region: *region, Stream: stream, Replica: rep, Logger: log, Registerer: reg})
		worker = applier.Run
		idle = func(context.Context) (bool, error) {
			lag, err := stream.Lag(applier.Group())
			return lag == 0, err
		}
		log.Info("applying stream to replica", "region", *region, "replica", data.Replica(*region))
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
	g.Go(func() error { return worker(gctx) })
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	err = g.Wait()
	log.Info("streamer stopped", "command", cmd)
	return err
}
