package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/lookupflags"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/work"
)

// config is everything tcs is told on its command line and in its
// environment, checked.
type config struct {
	// Region is the region served (--region); required.
	Region string
	// Addr is the gRPC listen address (--addr).
	Addr string
	// Reflection serves gRPC server reflection (--reflection).
	Reflection bool
	// NodeID names this node's invalidation queue and its entry in the
	// node registry (--node-id, aws); empty means the host name and pid.
	NodeID string
	// Register heartbeats this node into the node registry, the home
	// region's <prefix>-nodes table, for the catalog's propagation status
	// (--register, aws only).
	Register bool
	// AdvertiseAddr is the host:port the catalog dials to reach this node
	// (--advertise-addr); empty means Addr, which must then name a host
	// and a port (not a wildcard or port 0).
	AdvertiseAddr string
	// FallbackRegion is the region whose replica a miss reads when
	// Region's fails (--fallback-region, aws only); empty means none.
	FallbackRegion string
	// Work serves tcs.v1.WorkService, the tenant work pools (--work).
	Work bool
	// WorkLeaseDuration is the work pools' lease duration
	// (--work-lease-duration); positive, the same on every node.
	WorkLeaseDuration time.Duration

	// Backend selects and configures the replica and the feed.
	Backend *backend.Config
	// Security holds the credentials and TLS files, loaded when wiring.
	Security *cmdutil.Security
	// Obs are the logging and metrics flags every server shares.
	Obs *cmdutil.Flags
	// Limits are the lookup server's caps and load shedding, applied to
	// Lookup and the serve options when wiring.
	Limits *lookupflags.Flags
	// Cache is the cache's configuration; wiring adds the fallback
	// replica.
	Cache cache.Options
	// Lookup is the lookup server's configuration; wiring adds the
	// region, replica, feed, cache, logger and registerer.
	Lookup lookup.Config

	// Version is set when --version was asked: run prints it and returns,
	// and nothing else was checked.
	Version bool
}

// parseConfig parses args and getenv into a config and checks it; every
// error names the flag or environment variable that was wrong. It opens no
// file, socket or table: the credentials file and the TLS certificates are
// read, the replica and the feed opened, when run wires the binary.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("tcs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.Region, "region", getenv("TCS_REGION"), "region to serve, e.g. us-east-1 (env TCS_REGION); required")
	fs.StringVar(&c.Addr, "addr", cmdutil.EnvOr(getenv, "TCS_ADDR", "127.0.0.1:9001"), "gRPC listen address (env TCS_ADDR)")
	c.Backend = backend.Register(fs, getenv)
	c.Security = cmdutil.RegisterSecurity(fs, getenv, auth.Lookup, auth.ReplicaScan)
	fs.BoolVar(&c.Reflection, "reflection", false, "serve gRPC server reflection (grpcurl without .proto files); off: it tells anyone who connects what the server offers")
	fs.StringVar(&c.NodeID, "node-id", getenv("TCS_NODE_ID"), "aws: this node's name in its invalidation queue's name and in the node registry (env TCS_NODE_ID; default host name and pid)")
	var envErrs []error
	fs.BoolVar(&c.Register, "register", envBool(getenv, "TCS_REGISTER", true, &envErrs), "aws: heartbeat this node into the home region's <prefix>-nodes table (removed on a clean stop) so that the catalog's propagation status and tcsctl wait ask it (env TCS_REGISTER)")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", getenv("TCS_ADVERTISE_ADDR"), "aws with --register: host:port at which the catalog reaches this node's gRPC port, or a host alone (IPv4, IPv6, or a name), which takes --addr's port (env TCS_ADVERTISE_ADDR; in Kubernetes the pod IP); default --addr, refused when that is a wildcard address or port 0")
	c.Obs = cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultTCSMetricsAddr)
	co := &c.Cache
	fs.IntVar(&co.Size, "cache-size", cache.DefaultSize, "cache entries")
	fs.DurationVar(&co.TTL, "cache-ttl", cache.DefaultTTL, "how long a cached answer is served without reading the replica")
	fs.DurationVar(&co.NegativeTTL, "negative-ttl", cache.DefaultNegativeTTL, "how long an unknown hostname is remembered (negative: never)")
	fs.DurationVar(&co.MaxStale, "max-stale", cache.DefaultMaxStale, "oldest answer served when the replica fails (negative: never serve stale)")
	fs.DurationVar(&co.ReadTimeout, "read-timeout", cache.DefaultReadTimeout, "bound on one replica read")
	fs.IntVar(&co.FailingAfter, "failing-after", cache.DefaultFailingAfter, "replica reads failed in a row after which stale answers are served at once, one probe read at a time (negative: never)")
	fs.StringVar(&c.FallbackRegion, "fallback-region", getenv("TCS_FALLBACK_REGION"), "aws: read this region's replica when a miss's read of --region's fails (answers served stale, never cached) (env TCS_FALLBACK_REGION); empty: none")
	fs.DurationVar(&co.FallbackTimeout, "fallback-timeout", cache.DefaultFallbackTimeout, "bound on one read of the --fallback-region replica")
	fs.BoolVar(&co.Refresh, "refresh-invalidated", true, "read the hostnames an invalidation names that this node has cached (looked up before) again at once, in the background (a changed tenant's next lookup is a hit, and its new answer is what a replica failure finds kept); false: read on the next lookup")
	lc := &c.Lookup
	fs.DurationVar(&lc.FeedTimeout, "feed-timeout", lookup.DefaultFeedTimeout, "the invalidation feed is down after this long without a message (appliers send a heartbeat every 5s): cache TTL limited to --feed-down-ttl, Watch streams refused (negative: never)")
	fs.DurationVar(&lc.FeedDownTTL, "feed-down-ttl", lookup.DefaultFeedDownTTL, "cache TTL (and negative TTL) while the invalidation feed is down")
	fs.StringVar(&lc.HotKeysFile, "hot-keys-file", getenv("TCS_HOT_KEYS_FILE"), "file on local disk where this node keeps the hostnames it answered most (written every minute and on a clean stop), read back at start to warm the cache from the replica before reporting ready (env TCS_HOT_KEYS_FILE); empty: start cold")
	fs.IntVar(&lc.HotKeys, "hot-keys", lookup.DefaultHotKeys, "how many hostnames --hot-keys-file keeps (and the warm-up reads)")
	fs.DurationVar(&lc.WarmTimeout, "warm-timeout", lookup.DefaultWarmTimeout, "bound on the start-up warm-up from --hot-keys-file: past it the node reports ready with what it loaded (negative: no warm-up)")
	c.Limits = lookupflags.Register(fs)
	fs.BoolVar(&c.Work, "work", true, "serve tcs.v1.WorkService (tenant work pools); aws: leases in the home region's <prefix>-work-leases table, shared by every node; embedded: in this process only")
	fs.DurationVar(&c.WorkLeaseDuration, "work-lease-duration", work.DefaultLeaseDuration,
		"work pools: how long a member's tenants stay its own after its node's last renewal (a member that stops heartbeating loses them about this long after); the same on every node")
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
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// check reports the first setting that cannot work, naming its flag.
func (c *config) check() error {
	if c.Region == "" {
		return errors.New("--region is required (or TCS_REGION)")
	}
	if err := c.Backend.Validate(); err != nil {
		return err
	}
	if c.FallbackRegion != "" {
		switch {
		case !c.Backend.IsAWS():
			return errors.New("--fallback-region needs --backend aws (an embedded replica file is locked by the process that serves it)")
		case c.FallbackRegion == c.Region:
			return fmt.Errorf("--fallback-region %s is --region itself; name another region", c.FallbackRegion)
		}
	}
	if c.Backend.IsAWS() && c.Register {
		addr, err := advertised(c.AdvertiseAddr, c.Addr)
		if err != nil {
			return err
		}
		c.AdvertiseAddr = addr
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if c.WorkLeaseDuration <= 0 {
		return fmt.Errorf("--work-lease-duration %v: want more than 0", c.WorkLeaseDuration)
	}
	if c.Lookup.FeedDownTTL <= 0 {
		return fmt.Errorf("--feed-down-ttl %v: must be positive", c.Lookup.FeedDownTTL)
	}
	if c.Lookup.HotKeys <= 0 {
		return fmt.Errorf("--hot-keys %d: must be positive", c.Lookup.HotKeys)
	}
	if err := c.Security.Check(); err != nil { // the files are read when wiring
		return err
	}
	if err := c.Obs.Check(); err != nil {
		return err
	}
	return nil
}

// advertised returns the address other processes dial to reach this node:
// adv (--advertise-addr) if set, else listen (--addr) when it names a host
// and a port another process can dial. adv is host:port ([v6]:port), or a
// host alone (a name, an IPv4 or an IPv6 address, brackets optional: the
// chart passes the pod IP as it comes), which takes --addr's port.
func advertised(adv, listen string) (string, error) {
	if adv != "" {
		host, port, err := net.SplitHostPort(adv)
		if err != nil {
			if h, ok := hostAlone(adv); ok {
				_, lport, lerr := net.SplitHostPort(listen)
				if lerr != nil || lport == "" || lport == "0" {
					return "", fmt.Errorf("--advertise-addr %q names no port, and --addr %q has none to lend: give host:port, such as 10.0.3.7:9001", adv, listen)
				}
				host, port, err = h, lport, nil
			}
		}
		if err != nil || host == "" || port == "" || port == "0" {
			return "", fmt.Errorf("--advertise-addr %q: want host:port, or a host (its port is --addr's), that other processes can dial, such as 10.0.3.7:9001", adv)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return "", fmt.Errorf("--advertise-addr %q: %s is a wildcard address, which no other process can dial; name this node's address", adv, host)
		}
		return net.JoinHostPort(host, port), nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--addr %q: want host:port", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) || port == "0" {
		return "", fmt.Errorf("--register needs --advertise-addr (or TCS_ADVERTISE_ADDR): --addr %s is a wildcard address or port 0, which the catalog cannot dial (or --register=false)", listen)
	}
	return listen, nil
}

// hostAlone reports whether s is a host without a port: an IP address
// ("10.0.3.7", "fd00::7", "[fd00::7]") or a name with no colon. An
// unbracketed IPv6 address is all address: fd00::7:9001 is the host
// fd00::7:9001, never [fd00::7]:9001.
func hostAlone(s string) (string, bool) {
	if t, ok := strings.CutPrefix(s, "["); ok {
		if t, ok = strings.CutSuffix(t, "]"); ok && net.ParseIP(t) != nil {
			return t, true
		}
		return "", false
	}
	if net.ParseIP(s) != nil || (s != "" && !strings.ContainsAny(s, ":[]")) {
		return s, true
	}
	return "", false
}

// envBool is getenv(key) as a boolean, def when unset; a value that is not
// one is added to errs, naming key.
func envBool(getenv func(string) string, key string, def bool, errs *[]error) bool {
	v := getenv(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q: want true or false", key, v))
		return def
	}
	return b
}
