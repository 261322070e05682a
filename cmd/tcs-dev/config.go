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
	"github.com/tcs-dev/tcs/cmd/internal/catalogflags"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/lookupflags"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/streamer/reconcile"
	"github.com/tcs-dev/tcs/tcs/work"
)

// DefaultRegions are the regions `make run` serves, with their gRPC ports.
const DefaultRegions = "us-east-1=127.0.0.1:9001,eu-west-1=127.0.0.1:9002,ap-southeast-2=127.0.0.1:9003"

// regionAddr is a region tcs-dev serves and its lookup server's address.
type regionAddr struct{ Region, Addr string }

// config is everything tcs-dev is told on its command line and in its
// environment, checked.
type config struct {
	// CatalogAddr is the admin REST API's listen address (--catalog-addr).
	CatalogAddr string
	// RateLimits are the admin REST API's request rates (--rate-limit,
	// --address-rate-limit), as the catalog's.
	RateLimits *catalogflags.RateLimits
	// Regions are the regions served, each with its lookup server's listen
	// address (--regions); at least one, none twice.
	Regions []regionAddr
	// Seed asks for the sample tenants when the data is new (--seed).
	Seed bool
	// Reflection serves gRPC reflection on the lookup servers
	// (--reflection).
	Reflection bool
	// ReconcileInterval is the reconciler's time between comparisons; 0
	// runs no reconciler (--reconcile-interval).
	ReconcileInterval time.Duration
	// ReconcileSettle is how long a difference lasts before it is drift
	// (--reconcile-settle); positive.
	ReconcileSettle time.Duration
	// Work serves tcs.v1.WorkService on the lookup servers (--work), every
	// region's sharing one lease table: on AWS the home region's
	// <prefix>-work-leases (shared with tcs nodes of the same prefix),
	// embedded one in this process.
	Work bool
	// WorkLeaseDuration is the work pools' lease duration
	// (--work-lease-duration); positive.
	WorkLeaseDuration time.Duration

	// Backend selects and configures every part's storage and messaging.
	Backend *backend.Config
	// Security holds the credentials and TLS files of every surface, loaded
	// when wiring.
	Security *cmdutil.Security
	// Obs are the logging and metrics flags every server shares.
	Obs *cmdutil.Flags
	// Limits are the lookup servers' caps and limits.
	Limits *lookupflags.Flags

	// Version is set when --version was asked: run prints it and returns,
	// and nothing else was checked.
	Version bool
}

// parseConfig parses args and getenv into a config and checks it; every
// error names the flag or environment variable that was wrong. It opens no
// file, socket or table: the credentials file and the TLS certificates are
// read, the listeners opened and the backends opened when run wires the
// system.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("tcs-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	c.Backend = backend.Register(fs, getenv)
	fs.StringVar(&c.CatalogAddr, "catalog-addr", cmdutil.EnvOr(getenv, "TCS_CATALOG_ADDR", "127.0.0.1:8080"), "admin REST API listen address (env TCS_CATALOG_ADDR)")
	regions := fs.String("regions", cmdutil.EnvOr(getenv, "TCS_REGIONS", DefaultRegions), "regions and their gRPC listen addresses (env TCS_REGIONS)")
	fs.BoolVar(&c.Seed, "seed", true, "create sample tenants when the data directory is new (aws: when the catalog is empty)")
	c.Obs = cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultDevMetricsAddr)
	c.Security = cmdutil.RegisterSecurity(fs, getenv, auth.Roles...)
	fs.BoolVar(&c.Reflection, "reflection", false, "serve gRPC server reflection on the lookup servers (grpcurl without .proto files)")
	c.Limits = lookupflags.Register(fs)
	var envErrs []error
	c.RateLimits = catalogflags.Register(fs, getenv, &envErrs)
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_INTERVAL", reconcile.DefaultInterval, &envErrs),
		"time between two comparisons of every region with the source of truth by the reconciler, which resyncs what drifted (as `streamer reconcile` does) (env TCS_RECONCILE_INTERVAL); 0: no reconciler")
	fs.DurationVar(&c.ReconcileSettle, "reconcile-settle", cmdutil.EnvDuration(getenv, "TCS_RECONCILE_SETTLE", reconcile.DefaultSettle, &envErrs),
		"how long a difference must last before the reconciler judges it drift (env TCS_RECONCILE_SETTLE)")
	fs.BoolVar(&c.Work, "work", true, "serve tcs.v1.WorkService (tenant work pools) on the lookup servers, every region's sharing one lease table; aws: the home region's <prefix>-work-leases table, shared with tcs nodes of the same prefix; embedded: in this process")
	fs.DurationVar(&c.WorkLeaseDuration, "work-lease-duration", work.DefaultLeaseDuration,
		"work pools: how long a member's tenants stay its own after its node's last renewal (a member that stops heartbeating loses them about this long after)")
	version, err := c.Obs.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	if c.Version = version; version {
		return c, nil
	}
	if err := errors.Join(envErrs...); err != nil {
		return nil, err
	}
	if c.ReconcileInterval < 0 || c.ReconcileSettle <= 0 {
		return nil, fmt.Errorf("--reconcile-interval %v, --reconcile-settle %v: want 0 (no reconciler) or more, and more than 0", c.ReconcileInterval, c.ReconcileSettle)
	}
	if c.WorkLeaseDuration <= 0 {
		return nil, fmt.Errorf("--work-lease-duration %v: want more than 0", c.WorkLeaseDuration)
	}
	if err := c.RateLimits.Check(); err != nil {
		return nil, err
	}
	if err := c.Limits.Validate(); err != nil {
		return nil, err
	}
	if c.Regions, err = parseRegions(*regions); err != nil {
		return nil, err
	}
	if err := c.Backend.Validate(); err != nil {
		return nil, err
	}
	if err := c.Obs.Check(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseRegions parses --regions: REGION=HOST:PORT, comma-separated.
func parseRegions(s string) ([]regionAddr, error) {
	var out []regionAddr
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		region, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || region == "" || addr == "" {
			return nil, fmt.Errorf("--regions: %q is not REGION=HOST:PORT", part)
		}
		if err := tenant.ValidateRegion(region); err != nil {
			return nil, fmt.Errorf("--regions: region %q: %w", region, err)
		}
		if seen[region] {
			return nil, fmt.Errorf("--regions: region %s listed twice", region)
		}
		seen[region] = true
		out = append(out, regionAddr{region, addr})
	}
	return out, nil
}
