package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/publease"
	"github.com/tcs-dev/tcs/streamer/reconcile"
)

const usage = `usage: streamer publish [flags]          outbox → stream
       streamer apply --region R [flags]  stream → region R's replica
       streamer reconcile --regions R,… [flags]  compare the regions with the catalog, resync drift
Run "streamer publish -h", "streamer apply -h" or "streamer reconcile -h" for flags.`

// config is everything streamer is told on its command line and in its
// environment, checked.
//
// One type serves the three commands rather than one type each: they share
// the backend, logging and metrics flags (and publish and apply the drain
// and health ones), which are parsed and checked once, here. What only one
// command takes sits in that command's struct (Publish, Apply, Reconcile),
// nil for the other commands, so that wiring cannot read a flag its
// command was never given.
type config struct {
	// Command is publish, apply or reconcile; "" with Help, or with Version
	// asked before any command.
	Command string
	// Help is set by `streamer help` (-h, --help): run prints the usage.
	Help bool
	// Version is set by `streamer version` or --version (before or after
	// the command): run prints the version. With Help or Version set
	// nothing else is filled in or checked.
	Version bool

	Backend *backend.Config
	Obs     *cmdutil.Flags

	// Publish and apply: --drain, --ready-max-age, --live-max-age.
	Drain       bool
	ReadyMaxAge time.Duration
	LiveMaxAge  time.Duration

	Publish   *publishConfig   // publish only
	Apply     *applyConfig     // apply only
	Reconcile *reconcileConfig // reconcile only
}

// publishConfig is what only publish takes.
type publishConfig struct {
	WorkerID      string // "": leasetable.DefaultOwner()
	LeaseDuration time.Duration
	NoPack        bool // --kinesis-no-pack
}

// applyConfig is what only apply takes.
type applyConfig struct {
	Region      string
	WorkerID    string // "": the stream's default owner
	Concurrency int
	// Feed is the invalidation broadcast's settings as the applier takes
	// them: --feed-heartbeat 0 (none) is HeartbeatInterval -1.
	Feed streamer.FeedConfig
}

// reconcileConfig is what only reconcile takes.
type reconcileConfig struct {
	Regions    []string // --regions, split, each a valid region
	Interval   time.Duration
	Settle     time.Duration
	Rescan     time.Duration
	RepairRate float64
	ReadRate   float64 // 0: no limit
	Once       bool
}

// parseConfig parses args (the command, then its flags) and getenv into a
// config and checks it; every error names the flag or environment variable
// that was wrong. It opens no file, socket or table. The usage goes to
// stderr when the command is missing or unknown, and flag errors and -h
// after a command (flag.ErrHelp) are written there by the flag package.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return nil, errors.New("missing command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "--version", "-version", "version":
		return &config{Version: true}, nil
	case "-h", "-help", "--help", "help":
		return &config{Help: true}, nil
	case "publish", "apply", "reconcile":
	default:
		fmt.Fprintln(stderr, usage)
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	cfg := &config{Command: cmd}
	fs := flag.NewFlagSet("streamer "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.Backend = backend.Register(fs, getenv)
	var (
		envErrs []error
		check   func() error
	)
	switch cmd {
	case "publish", "apply":
		check = cfg.registerWork(fs, getenv, &envErrs)
	case "reconcile":
		check = cfg.registerReconcile(fs, getenv, &envErrs)
	}
	version, err := cfg.Obs.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	if cfg.Version = version; version {
		return cfg, nil
	}
	if err := check(); err != nil {
		return nil, err
	}
	if err := cfg.Backend.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Obs.Check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// registerWork declares publish's or apply's flags on fs and returns the
// check of their values, to run once fs is parsed.
func (cfg *config) registerWork(fs *flag.FlagSet, getenv func(string) string, envErrs *[]error) (check func() error) {
	metricsDefault := cmdutil.DefaultPublishMetricsAddr
	if cfg.Command == "apply" {
		metricsDefault = cmdutil.DefaultApplyMetricsAddr
	}
	cfg.Obs = cmdutil.RegisterFlags(fs, getenv, metricsDefault)
	fs.BoolVar(&cfg.Drain, "drain", false, "exit once everything available has been processed (publish: the outbox is empty; apply, embedded backend only: the region has caught up with the stream)")
	fs.DurationVar(&cfg.ReadyMaxAge, "ready-max-age", cmdutil.EnvDuration(getenv, "TCS_READY_MAX_AGE", defaultReadyMaxAge, envErrs),
		"/readyz answers 503 unless this process holds work (apply on Kinesis: a shard lease) and its last successful cycle (publish: an outbox read, empty or not; apply: a read of a held shard, its batch applied) is at most this old (env TCS_READY_MAX_AGE)")
	fs.DurationVar(&cfg.LiveMaxAge, "live-max-age", cmdutil.EnvDuration(getenv, "TCS_LIVE_MAX_AGE", defaultLiveMaxAge, envErrs),
		"/healthz answers 503 when work held has made no successful cycle for this long (env TCS_LIVE_MAX_AGE); 0: always 200")
	switch cfg.Command {
	case "publish":
		p := &publishConfig{}
		cfg.Publish = p
		fs.StringVar(&p.WorkerID, "worker-id", getenv("TCS_WORKER_ID"), "aws: this publisher's name among the publishers, which share the outbox's shards through leases; it must differ between running publishers, and a publisher restarted under the same name adopts its leases at once rather than after --lease-duration (env TCS_WORKER_ID; default host name, pid and a random suffix)")
		fs.DurationVar(&p.LeaseDuration, "lease-duration", cmdutil.EnvDuration(getenv, "TCS_PUBLISH_LEASE_DURATION", publease.DefaultLeaseDuration, envErrs),
			"aws: how long an outbox shard lease lives without renewal before another publisher takes it over (env TCS_PUBLISH_LEASE_DURATION): a killed publisher's shards move after about this long; every publisher must use the same")
		fs.BoolVar(&p.NoPack, "kinesis-no-pack", false,
			"aws: store every event as a Kinesis record of its own, readable by appliers older than 0.2.0 (by default a tenant's consecutive events are packed into one record; upgrade the appliers first, or set this until they are)")
	case "apply":
		a := &applyConfig{}
		cfg.Apply = a
		fs.StringVar(&a.Region, "region", getenv("TCS_REGION"), "region whose replica to apply to, e.g. us-east-1 (env TCS_REGION)")
		fs.StringVar(&a.WorkerID, "worker-id", getenv("TCS_WORKER_ID"), "aws: this applier's name among the appliers of its region, which share the stream's shards (env TCS_WORKER_ID; default host name, pid and a random suffix)")
		fs.IntVar(&a.Concurrency, "concurrency", cmdutil.EnvInt(getenv, "TCS_APPLY_CONCURRENCY", streamer.DefaultApplyConcurrency, "a whole number of tenants, such as 16", envErrs),
			"aws: how many tenants of a stream batch are applied at once (env TCS_APPLY_CONCURRENCY); each tenant's events stay in order. The embedded replica applies a batch in one transaction and ignores it")
		// Invalidations go to the region's SNS topic; with the embedded
		// backend this process has no broadcast to send to.
		fs.DurationVar(&a.Feed.HeartbeatInterval, "feed-heartbeat", cmdutil.EnvDuration(getenv, "TCS_FEED_HEARTBEAT", streamer.DefaultHeartbeatInterval, envErrs),
			"aws: how often to broadcast a heartbeat to the region's lookup servers, so that they can tell a quiet invalidation feed from a broken one (env TCS_FEED_HEARTBEAT); 0 sends none, for lookup servers too old to decode them")
		fs.DurationVar(&a.Feed.Timeout, "feed-send-timeout", cmdutil.EnvDuration(getenv, "TCS_FEED_SEND_TIMEOUT", streamer.DefaultFeedTimeout, envErrs),
			"aws: deadline of each invalidation broadcast (env TCS_FEED_SEND_TIMEOUT); a failed one goes back into the queue and is retried, with backoff up to 1 s, until --feed-max-age. Applying never waits for broadcasts")
		fs.DurationVar(&a.Feed.MaxAge, "feed-max-age", cmdutil.EnvDuration(getenv, "TCS_FEED_MAX_AGE", streamer.DefaultFeedMaxAge, envErrs),
			"aws: how long an invalidation that cannot be broadcast is retried before it is given up (env TCS_FEED_MAX_AGE); by then the lookup servers' caches have expired what it would drop, so keep it at least their --cache-ttl")
		fs.IntVar(&a.Feed.MaxPending, "feed-max-pending", cmdutil.EnvInt(getenv, "TCS_FEED_MAX_PENDING", streamer.DefaultFeedMaxPending, "a whole number of tenants, such as 100000", envErrs),
			"aws: most invalidations waiting to be broadcast, one per tenant (a tenant's newer change merges into its pending one) (env TCS_FEED_MAX_PENDING); when full, the oldest is dropped")
		fs.IntVar(&a.Feed.Senders, "feed-senders", cmdutil.EnvInt(getenv, "TCS_FEED_SENDERS", streamer.DefaultFeedSenders, "a whole number, such as 4", envErrs),
			"aws: how many invalidation broadcasts run at once (env TCS_FEED_SENDERS)")
	}
	return func() error { return cfg.checkWork(errors.Join(*envErrs...)) }
}

// checkWork checks publish's or apply's values; envErr is what the
// environment defaults could not parse.
func (cfg *config) checkWork(envErr error) error {
	if cfg.ReadyMaxAge <= 0 || cfg.LiveMaxAge < 0 {
		return fmt.Errorf("--ready-max-age %v, --live-max-age %v: want a positive duration, and 0 (off) or more", cfg.ReadyMaxAge, cfg.LiveMaxAge)
	}
	if p := cfg.Publish; p != nil && p.LeaseDuration <= 0 {
		return fmt.Errorf("--lease-duration %v: want more than 0", p.LeaseDuration)
	}
	if a := cfg.Apply; a != nil && a.Region == "" {
		return errors.New("apply needs --region (or TCS_REGION)")
	}
	if envErr != nil {
		return envErr
	}
	a := cfg.Apply
	if a == nil {
		return nil
	}
	switch feed := &a.Feed; {
	case a.Concurrency < 1:
		return fmt.Errorf("--concurrency %d: want at least 1", a.Concurrency)
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
	case cfg.Drain && cfg.Backend.IsAWS():
		return errors.New("apply --drain needs the embedded backend (a Kinesis stream has no end to drain to)")
	}
	if a.Feed.HeartbeatInterval == 0 {
		a.Feed.HeartbeatInterval = -1 // FeedConfig's "none"
	}
	return nil
}

// registerReconcile declares reconcile's flags on fs and returns the check
// of their values, to run once fs is parsed.
func (cfg *config) registerReconcile(fs *flag.FlagSet, getenv func(string) string, envErrs *[]error) (check func() error) {
	cfg.Obs = cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultReconcileMetricsAddr)
	r := &reconcileConfig{}
	cfg.Reconcile = r
	regions := fs.String("regions", getenv("TCS_REGIONS"), "comma-separated regions whose replicas to compare with the source of truth, e.g. us-east-1,eu-west-1 (env TCS_REGIONS)")
	fs.DurationVar(&r.Interval, "interval", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_INTERVAL", reconcile.DefaultInterval, envErrs),
		"time between two comparisons of every region with the source of truth; each reads every record of every region (env TCS_RECONCILE_INTERVAL)")
	fs.DurationVar(&r.Settle, "settle", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_SETTLE", reconcile.DefaultSettle, envErrs),
		"how long a bucket must differ, and how old a tenant's change must be, before the tenant is judged drifted and resynced; keep it well above the replication lag (env TCS_RECONCILE_SETTLE)")
	fs.DurationVar(&r.Rescan, "rescan", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_RESCAN", reconcile.DefaultRescan, envErrs),
		"how often the source of truth's digests are re-read from the catalog (between rescans the stream keeps them up to date) (env TCS_RECONCILE_RESCAN)")
	fs.Float64Var(&r.RepairRate, "repair-rate", reconcile.DefaultRepairRate, "most drifted tenants resynced per second")
	fs.Float64Var(&r.ReadRate, "read-rate", 0, "most records read per second from the catalog and from each region (0: no limit)")
	fs.BoolVar(&r.Once, "once", false, "compare until every region agrees with the source of truth or a settle period and three intervals have passed, resyncing what drifted, then exit (embedded backend: with the catalog, publish and apply stopped)")
	return func() error {
		if err := errors.Join(*envErrs...); err != nil {
			return err
		}
		for _, name := range strings.Split(*regions, ",") {
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			if err := tenant.ValidateRegion(name); err != nil {
				return fmt.Errorf("--regions: %q: %v", name, tenant.ErrorMessage(err))
			}
			r.Regions = append(r.Regions, name)
		}
		switch {
		case len(r.Regions) == 0:
			return errors.New("reconcile needs --regions (or TCS_REGIONS)")
		case r.Interval <= 0 || r.Settle <= 0 || r.Rescan <= 0:
			return fmt.Errorf("--interval %v, --settle %v, --rescan %v: want positive durations", r.Interval, r.Settle, r.Rescan)
		case r.RepairRate <= 0 || r.ReadRate < 0:
			return fmt.Errorf("--repair-rate %v, --read-rate %v: want more than 0, and 0 (no limit) or more", r.RepairRate, r.ReadRate)
		}
		return nil
	}
}
