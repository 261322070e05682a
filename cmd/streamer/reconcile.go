package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/backend/catalogs"
	"github.com/tcs-dev/tcs/cmd/internal/backend/streams"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/streamer/reconcile"
	"github.com/tcs-dev/tcs/tcs"
)

// runReconcile is `streamer reconcile`: the continuous reconciler
// (streamer/reconcile) over the catalog, the stream and every region's
// replica. It runs here, beside publish and apply, because it needs what
// they hold: the catalog (to export and resync), the stream (to follow the
// truth) and the replicas (to scan); a tcs node has only its region's
// replica, and one reconciler for every region compares each replica once
// per cycle instead of once per node.
func runReconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("streamer reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	be := backend.Register(fs, getenv)
	obs := cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultReconcileMetricsAddr)
	var envErrs []error
	regions := fs.String("regions", getenv("TCS_REGIONS"), "comma-separated regions whose replicas to compare with the source of truth, e.g. us-east-1,eu-west-1 (env TCS_REGIONS)")
	var cfg reconcile.Config
	fs.DurationVar(&cfg.Interval, "interval", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_INTERVAL", reconcile.DefaultInterval, &envErrs),
		"time between two comparisons of every region with the source of truth; each reads every record of every region (env TCS_RECONCILE_INTERVAL)")
	fs.DurationVar(&cfg.Settle, "settle", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_SETTLE", reconcile.DefaultSettle, &envErrs),
		"how long a bucket must differ, and how old a tenant's change must be, before the tenant is judged drifted and resynced; keep it well above the replication lag (env TCS_RECONCILE_SETTLE)")
	fs.DurationVar(&cfg.Rescan, "rescan", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_RESCAN", reconcile.DefaultRescan, &envErrs),
		"how often the source of truth's digests are re-read from the catalog (between rescans the stream keeps them up to date) (env TCS_RECONCILE_RESCAN)")
	fs.Float64Var(&cfg.RepairRate, "repair-rate", reconcile.DefaultRepairRate, "most drifted tenants resynced per second")
	fs.Float64Var(&cfg.ReadRate, "read-rate", 0, "most records read per second from the catalog and from each region (0: no limit)")
	once := fs.Bool("once", false, "compare until every region agrees with the source of truth or a settle period and three intervals have passed, resyncing what drifted, then exit (embedded backend: with the catalog, publish and apply stopped)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if obs.PrintVersion("streamer", stdout) {
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := errors.Join(envErrs...); err != nil {
		return err
	}
	var names []string
	for _, r := range strings.Split(*regions, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if err := tenant.ValidateRegion(r); err != nil {
			return fmt.Errorf("--regions: %q: %v", r, tenant.ErrorMessage(err))
		}
		names = append(names, r)
	}
	switch {
	case len(names) == 0:
		return errors.New("reconcile needs --regions (or TCS_REGIONS)")
	case cfg.Interval <= 0 || cfg.Settle <= 0 || cfg.Rescan <= 0:
		return fmt.Errorf("--interval %v, --settle %v, --rescan %v: want positive durations", cfg.Interval, cfg.Settle, cfg.Rescan)
	case cfg.RepairRate <= 0 || cfg.ReadRate < 0:
		return fmt.Errorf("--repair-rate %v, --read-rate %v: want more than 0, and 0 (no limit) or more", cfg.RepairRate, cfg.ReadRate)
	}
	if err := be.Validate(); err != nil {
		return err
	}
	log, err := obs.Logger(stderr)
	if err != nil {
		return err
	}
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
	if *once {
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
	serveMetrics, bound, err := obs.ListenMetrics(cmdutil.ObsHandler(gather, nil, readyProbe, log), log)
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
