package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/cmd/internal/backend/catalogs"
	"github.com/tcs-dev/tcs/cmd/internal/backend/streams"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/streamer/reconcile"
	"github.com/tcs-dev/tcs/tcs"
)

// runReconcile is `streamer reconcile` as c says: the continuous reconciler
// (streamer/reconcile) over the catalog, the stream and every region's
// replica. It runs here, beside publish and apply, because it needs what
// they hold: the catalog (to export and resync), the stream (to follow the
// truth) and the replicas (to scan); a tcs node has only its region's
// replica, and one reconciler for every region compares each replica once
// per cycle instead of once per node.
func runReconcile(ctx context.Context, c *config, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	be, names := c.Backend, c.Reconcile.Regions
	log, err := c.Obs.Logger(stderr)
	if err != nil {
		return err
	}
	// Traced, each repair's resync is a span whose context its resync
	// events carry through publish, apply and invalidation.
	tracing, stopTracing, err := cmdutil.StartTracing(ctx, "streamer", getenv, stdout, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg := reconcile.Config{Interval: c.Reconcile.Interval, Settle: c.Reconcile.Settle, Rescan: c.Reconcile.Rescan,
		RepairRate: c.Reconcile.RepairRate, ReadRate: c.Reconcile.ReadRate, TracerProvider: tracing.Provider()}
	gather, reg := cmdutil.Registry("reconcile", "")
	store, err := catalogs.Open(ctx, be)
	if err != nil {
		return err
	}
	defer store.Close()
	// The consumer group's leases (Kinesis) live in the first region's
	// lease table.
	stream, err := streams.Open(ctx, be, streams.Options{Region: names[0], Owner: "reconcile", Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer stream.Close()
	for _, name := range names {
		rep, err := be.OpenReplica(ctx, name)
		if err != nil {
			return err
		}
		defer rep.Close()
		sc, ok := rep.(tcs.Scanner)
		if !ok {
			return fmt.Errorf("region %s: the replica cannot be scanned", name)
		}
		cfg.Regions = append(cfg.Regions, reconcile.Region{Name: name, Scanner: sc})
	}
	cfg.Source, cfg.Stream, cfg.Logger, cfg.Registerer = store, stream, log, reg
	rec, err := reconcile.New(cfg)
	if err != nil {
		return err
	}
	if c.Reconcile.Once {
		return reconcileOnce(ctx, rec, cfg, stdout)
	}
	// Ready once a comparison succeeded, and while the last one is at most
	// three intervals old (a comparison reads every region: allow for big
	// ones).
	readyProbe := func(context.Context) error {
		last := rec.LastCycle()
		switch {
		case last.IsZero():
			return errors.New("no comparison has succeeded yet")
		case time.Since(last) > 3*cfg.Interval:
			return fmt.Errorf("the last comparison that succeeded ended %v ago", time.Since(last).Round(time.Second))
		}
		return nil
	}
	serveMetrics, bound, err := c.Obs.ListenMetrics(cmdutil.ObsHandler(gather, nil, readyProbe, log), log)
	if err != nil {
		return err
	}
	if ready != nil && bound != nil {
		ready <- bound.String()
	}
	log.Info("reconciling regions with the source of truth", "regions", names, "interval", cfg.Interval, "settle", cfg.Settle, "backend", be.Backend)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rec.Run(gctx) })
	if serveMetrics != nil {
		g.Go(func() error { return serveMetrics(gctx) })
	}
	err = g.Wait()
	log.Info("streamer stopped", "command", "reconcile")
	return err
}

// reconcileOnce compares until every region agrees, or until a drifted
// bucket had its settle period and two comparisons to be judged and
// confirmed in, and prints what it did.
func reconcileOnce(ctx context.Context, rec *reconcile.Reconciler, cfg reconcile.Config, stdout io.Writer) error {
	deadline := time.Now().Add(cfg.Settle + 3*cfg.Interval)
	found := map[string]bool{}   // region/tenant
	resynced := map[string]int{} // region → tenants
	for {
		rep, err := rec.Cycle(ctx)
		if err != nil {
			return err
		}
		for _, f := range rep.Findings {
			found[f.Region+"/"+f.TenantID] = true
		}
		for r, n := range rep.Resynced {
			resynced[r] += n
		}
		differing := 0
		for _, n := range rep.Differing {
			differing += n
		}
		if differing == 0 || time.Now().After(deadline) {
			fmt.Fprintf(stdout, "buckets differing: %d; drifted tenants found: %d; resynced:", differing, len(found))
			for _, r := range cfg.Regions {
				fmt.Fprintf(stdout, " %s %d", r.Name, resynced[r.Name])
			}
			fmt.Fprintln(stdout)
			return nil
		}
		t := time.NewTimer(cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
