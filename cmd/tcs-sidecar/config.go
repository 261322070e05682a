package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/regionlist"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/busypoll"
	"github.com/tcs-dev/tcs/tcs/client"
)

// Defaults of tcs-sidecar's own flags.
const (
	DefaultHTTPAddr   = "127.0.0.1:7070"
	DefaultGRPCAddr   = "127.0.0.1:7071"
	DefaultDrainDelay = 5 * time.Second
)

// config is everything tcs-sidecar is told on its command line and in its
// environment, checked.
type config struct {
	// HTTPAddr is the TCP address of the HTTP/JSON API, /metrics, /healthz
	// and /readyz (--http-addr); empty: none.
	HTTPAddr string
	// UnixSocket is the path of a Unix socket serving the same as HTTPAddr
	// (--unix-socket); empty: none.
	UnixSocket string
	// GRPCAddr is the TCP address of the gRPC lookup API and gRPC health
	// (--grpc-addr); empty: none.
	GRPCAddr string
	// Regions are the lookup regions, local first (--regions).
	Regions []regionlist.Region
	// Token is the lookup token sent to the regions (TCS_LOOKUP_TOKEN; the
	// development token when every region is on loopback); empty: none.
	Token string
	// TLS is set when the regions are reached over TLS (--tls, --ca-file).
	TLS bool
	// CAFile holds the roots the regions' certificates are checked with
	// (--ca-file); empty: the system's.
	CAFile string
	// Reflection serves gRPC server reflection (--reflection).
	Reflection bool
	// Insecure allows a non-loopback listen address (--insecure-i-know).
	Insecure bool
	// DrainDelay is how long a stopping sidecar keeps serving, unready,
	// before it stops accepting (--drain-delay).
	DrainDelay time.Duration
	// BusyPoll is how long a read of an HTTP connection spins for the next
	// request before it parks (--busy-poll); 0: it does not spin.
	BusyPoll time.Duration

	// Client options.
	CacheSize     int
	TTL           time.Duration
	NegativeTTL   time.Duration
	MaxStale      time.Duration
	LookupTimeout time.Duration

	// Probe, when set, is a path (/readyz, /healthz) run GETs from the
	// running sidecar on --http-addr (or --unix-socket) before it exits: 0
	// on 200, an error otherwise (an exec probe for Kubernetes, whose
	// kubelet cannot reach a loopback listener) (--probe).
	Probe string

	// Obs are the logging flags every binary shares (the metrics are
	// served on the HTTP listeners, so there is no --metrics-addr).
	Obs *cmdutil.Flags
	// Version is set when --version was asked: run prints it and returns,
	// and nothing else was checked.
	Version bool
}

// parseConfig parses args and getenv into a config and checks it; every
// error names the flag or environment variable that was wrong. It opens
// nothing (the --ca-file is read when run wires the client).
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("tcs-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var regions string
	var envErrs []error
	fs.StringVar(&c.HTTPAddr, "http-addr", cmdutil.EnvOr(getenv, "TCS_SIDECAR_HTTP_ADDR", DefaultHTTPAddr), "TCP address of the HTTP/JSON lookup API, /metrics, /healthz and /readyz (env TCS_SIDECAR_HTTP_ADDR); \"none\": no TCP listener")
	fs.StringVar(&c.UnixSocket, "unix-socket", getenv("TCS_SIDECAR_UNIX_SOCKET"), "also serve the HTTP API on this Unix socket path (a stale socket file there is replaced) (env TCS_SIDECAR_UNIX_SOCKET); empty: none")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", cmdutil.EnvOr(getenv, "TCS_SIDECAR_GRPC_ADDR", DefaultGRPCAddr), "TCP address of the gRPC lookup API (tcs.v1.TenantContextService Lookup and BatchLookup, gRPC health) (env TCS_SIDECAR_GRPC_ADDR); \"none\": no gRPC")
	fs.StringVar(&regions, "regions", cmdutil.EnvOr(getenv, "TCS_REGIONS", regionlist.Default), "lookup regions and their tcs gRPC addresses, local region first: REGION=HOST:PORT,… (env TCS_REGIONS; default: the three regions of make run)")
	fs.BoolVar(&c.TLS, "tls", getenv("TCS_TLS") == "true", "reach the regions over TLS, checked against the system's roots (env TCS_TLS=true); implied by --ca-file")
	fs.StringVar(&c.CAFile, "ca-file", getenv("TCS_CA_FILE"), "PEM roots to check the regions' TLS certificates with; implies --tls (env TCS_CA_FILE)")
	fs.BoolVar(&c.Reflection, "reflection", false, "serve gRPC server reflection on --grpc-addr (grpcurl without .proto files)")
	fs.BoolVar(&c.Insecure, "insecure-i-know", false, "serve a non-loopback --http-addr or --grpc-addr: the sidecar's API has no authentication or TLS (it is for the programs on its host); never where others can reach it")
	fs.DurationVar(&c.DrainDelay, "drain-delay", DefaultDrainDelay, "on SIGTERM, keep answering this long with /readyz and gRPC health failing (the programs beside it are stopping too), then stop accepting and finish what is in flight")
	fs.DurationVar(&c.BusyPoll, "busy-poll", cmdutil.EnvDuration(getenv, "TCS_SIDECAR_BUSY_POLL", 0, &envErrs), "after answering on an HTTP connection, spin up to this long for its next request instead of sleeping (adaptive: only while requests keep coming within it and no other request is being served; at most GOMAXPROCS-1 connections at once): a lower latency for callers that send requests back to back and spin for their answers too, paid in CPU; up to 10ms (env TCS_SIDECAR_BUSY_POLL); 0: off")
	fs.IntVar(&c.CacheSize, "cache-size", client.DefaultCacheSize, "client cache entries (tenants and unknown hostnames)")
	fs.DurationVar(&c.TTL, "ttl", client.DefaultTTL, "how long a cached answer is served without asking a region (invalidations end it sooner)")
	fs.DurationVar(&c.NegativeTTL, "negative-ttl", client.DefaultNegativeTTL, "how long an unknown hostname is remembered (0: not cached)")
	fs.DurationVar(&c.MaxStale, "max-stale", client.DefaultMaxStale, "oldest answer served, marked stale, when every region fails (0: never)")
	fs.DurationVar(&c.LookupTimeout, "lookup-timeout", client.DefaultLookupTimeout, "bound on one cache miss across every region")
	fs.StringVar(&c.Probe, "probe", "", "probe a running sidecar instead of running one: GET this path (/readyz or /healthz) on --http-addr (or --unix-socket) and exit 0 on 200, 2 otherwise (a Kubernetes exec probe: the kubelet cannot reach a loopback listener)")
	c.Obs = cmdutil.RegisterFlags(fs, getenv, "")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.Version = c.Obs.Version; c.Version {
		return c, nil
	}
	if err := errors.Join(envErrs...); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.Regions, err = regionlist.Parse(regions); err != nil {
		return nil, err
	}
	if c.HTTPAddr == "none" {
		c.HTTPAddr = ""
	}
	if c.GRPCAddr == "none" {
		c.GRPCAddr = ""
	}
	c.TLS = c.TLS || c.CAFile != ""
	c.Token = getenv("TCS_LOOKUP_TOKEN")
	if c.Token == "" && allLoopback(c.Regions) {
		c.Token = auth.DevLookupToken
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func allLoopback(rs []regionlist.Region) bool {
	for _, r := range rs {
		if !auth.IsLoopback(r.Addr) {
			return false
		}
	}
	return true
}

// check reports the first setting that cannot work, naming its flag.
func (c *config) check() error {
	if c.HTTPAddr == "" && c.UnixSocket == "" && c.GRPCAddr == "" {
		return errors.New("nothing to serve: --http-addr, --unix-socket and --grpc-addr are all off")
	}
	for _, b := range []struct{ flag, addr string }{{"--http-addr", c.HTTPAddr}, {"--grpc-addr", c.GRPCAddr}} {
		if b.addr != "" && !auth.IsLoopback(b.addr) && !c.Insecure {
			return fmt.Errorf("refusing to serve %s %s: not a loopback address, and the sidecar's API has no authentication or TLS (it is for the programs on its host; use --unix-socket to share it through a volume); or pass --insecure-i-know to accept the risk", b.flag, b.addr)
		}
	}
	if _, port, _ := net.SplitHostPort(c.HTTPAddr); c.HTTPAddr != "" && c.HTTPAddr == c.GRPCAddr && port != "0" {
		return fmt.Errorf("--http-addr and --grpc-addr are both %s: give each its own port", c.HTTPAddr)
	}
	if c.Token != "" && !c.TLS && !allLoopback(c.Regions) {
		return errors.New("TCS_LOOKUP_TOKEN is set but the regions are reached in plaintext off loopback: the token would cross the network in clear; set --tls or --ca-file")
	}
	if c.Probe != "" && (!strings.HasPrefix(c.Probe, "/") || (c.HTTPAddr == "" && c.UnixSocket == "")) {
		return fmt.Errorf("--probe %q: want a path such as /readyz, and --http-addr or --unix-socket to reach it on", c.Probe)
	}
	if c.DrainDelay < 0 {
		return fmt.Errorf("--drain-delay %v: must not be negative", c.DrainDelay)
	}
	if c.BusyPoll < 0 || c.BusyPoll > busypoll.MaxSpin {
		return fmt.Errorf("--busy-poll %v: want 0 (off) to %v (a request later than that finds the process asleep anyway)", c.BusyPoll, busypoll.MaxSpin)
	}
	if c.LookupTimeout <= 0 {
		return fmt.Errorf("--lookup-timeout %v: must be positive", c.LookupTimeout)
	}
	if c.TTL <= 0 {
		return fmt.Errorf("--ttl %v: must be positive", c.TTL)
	}
	return c.Obs.Check()
}

// clientTLS is the TLS configuration the client reaches the regions with,
// nil for plaintext.
func (c *config) clientTLS() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// clientOptions are the tcs client's options.
func (c *config) clientOptions() ([]client.Option, error) {
	tlsCfg, err := c.clientTLS()
	if err != nil {
		return nil, err
	}
	opts := []client.Option{
		client.WithRegions(regionlist.Addrs(c.Regions)...),
		client.WithCacheSize(c.CacheSize),
		client.WithTTL(c.TTL),
		client.WithNegativeTTL(c.NegativeTTL),
		client.WithMaxStale(c.MaxStale),
		client.WithLookupTimeout(c.LookupTimeout),
	}
	if tlsCfg != nil {
		opts = append(opts, client.WithTLS(tlsCfg))
	}
	if c.Token != "" {
		opts = append(opts, client.WithToken(c.Token))
	}
	return opts, nil
}
