package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/configtest"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/awsclient"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/work"
)

// defaultConfig is what parseConfig makes of --region eu-west-1 alone and
// an empty environment.
func defaultConfig() *config {
	return &config{
		Region:   "eu-west-1",
		Addr:     "127.0.0.1:9001",
		Backend:  configtest.DefaultBackend(),
		Security: &cmdutil.Security{},
		Obs:      configtest.DefaultObs(cmdutil.DefaultTCSMetricsAddr),
		Cache: cache.Options{Size: cache.DefaultSize, TTL: cache.DefaultTTL, NegativeTTL: cache.DefaultNegativeTTL,
			MaxStale: cache.DefaultMaxStale, ReadTimeout: cache.DefaultReadTimeout, FailingAfter: cache.DefaultFailingAfter,
			FallbackTimeout: cache.DefaultFallbackTimeout, Refresh: true},
		Lookup: lookup.Config{FeedTimeout: lookup.DefaultFeedTimeout, FeedDownTTL: lookup.DefaultFeedDownTTL,
			HotKeys: lookup.DefaultHotKeys, WarmTimeout: lookup.DefaultWarmTimeout},
		Work:              true,
		WorkLeaseDuration: work.DefaultLeaseDuration,
		Register:          true,
	}
}

// limits is what a config's caps and limits set when wiring applies them.
type limits struct {
	Lookup lookup.Config
	Serve  lookup.ServeOptions
}

func applied(c *config) limits {
	var l limits
	c.Limits.Apply(&l.Lookup, &l.Serve)
	return l
}

// defaultLimits is what lookupflags applies with none of its flags given.
func defaultLimits() limits {
	var l limits
	l.Lookup.MaxWatchStreams, l.Lookup.MaxWatchPerCaller = lookup.DefaultMaxWatchStreams, lookup.DefaultMaxWatchPerCaller
	l.Lookup.LookupRate, l.Lookup.MissRate, l.Lookup.MissRatePerCaller = lookup.DefaultLookupRate, lookup.DefaultMissRate, lookup.DefaultMissRatePerCaller
	l.Lookup.Cache.NegativeSize = cache.DefaultNegativeSize
	l.Serve.MaxConcurrentStreams = lookup.DefaultMaxConcurrentStreams
	l.Serve.Keepalive.MaxConnectionAge, l.Serve.Keepalive.MaxConnectionAgeGrace = lookup.DefaultMaxConnectionAge, lookup.DefaultMaxConnectionAgeGrace
	return l
}

// configDiff compares configs by their exported fields: the flag groups'
// unexported state (the flag set they were declared on, a lock, the caps
// compared through what they apply) is theirs.
func configDiff(want, got *config) string {
	return cmp.Diff(want, got, configtest.Opts, cmpopts.IgnoreFields(config{}, "Limits"))
}

// TestParseConfig: defaults with only --region and no environment; each
// environment variable replaces its default, and a flag the environment.
func TestParseConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		args   []string
		env    map[string]string
		want   func(*config)
		limits func(*limits)
	}{
		{name: "defaults", args: []string{"--region", "eu-west-1"}},
		{name: "environment", env: map[string]string{
			"TCS_REGION": "eu-west-1", "TCS_ADDR": "127.0.0.1:19001", "TCS_NODE_ID": "node-7",
			"TCS_FALLBACK_REGION": "us-east-1", "TCS_HOT_KEYS_FILE": "/var/lib/tcs/hot-keys",
			"TCS_BACKEND": "aws", "AWS_REGION": "us-east-1", "TCS_AWS_PREFIX": "staging", "TCS_POLL_INTERVAL": "250ms",
			"TCS_AWS_TIMEOUT": "20s", "TCS_AWS_CONNECT_TIMEOUT": "3s", "TCS_AWS_HEADER_TIMEOUT": "6s",
			"TCS_TOKENS_FILE": "/etc/tcs/tokens", "TCS_TLS_CERT": "c.pem", "TCS_TLS_KEY": "k.pem",
			"TCS_TLS_CLIENT_CA": "ca.pem", "TCS_LOG_LEVEL": "debug", "TCS_LOG_FORMAT": "json",
			"TCS_METRICS_ADDR": "none", "TCS_ADVERTISE_ADDR": "10.0.3.7:19001",
		}, want: func(c *config) {
			c.AdvertiseAddr = "10.0.3.7:19001"
			c.Addr, c.NodeID, c.FallbackRegion, c.Lookup.HotKeysFile = "127.0.0.1:19001", "node-7", "us-east-1", "/var/lib/tcs/hot-keys"
			c.Backend.Backend, c.Backend.Names.Prefix, c.Backend.HomeRegion = "aws", "staging", "us-east-1"
			c.Backend.PollInterval = 250 * time.Millisecond
			c.Backend.Timeouts = awsclient.Timeouts{Operation: 20 * time.Second, Connect: 3 * time.Second, ResponseHeader: 6 * time.Second}
			c.Security.TokensFile, c.Security.TLS = "/etc/tcs/tokens", auth.TLSFiles{Cert: "c.pem", Key: "k.pem", ClientCA: "ca.pem"}
			c.Obs.LogLevel, c.Obs.LogFormat, c.Obs.MetricsAddr = "debug", "json", "none"
		}},
		{name: "flags over environment", env: map[string]string{
			"TCS_REGION": "eu-west-1", "TCS_ADDR": "127.0.0.1:19001", "TCS_NODE_ID": "node-7",
			"TCS_HOT_KEYS_FILE": "/var/lib/tcs/hot-keys", "TCS_DATA_DIR": "/var/lib/tcs", "TCS_LOG_LEVEL": "debug",
		}, args: []string{"--region", "ap-southeast-2", "--addr", "127.0.0.1:0", "--node-id", "node-8",
			"--hot-keys-file", "", "--data", "here", "--log-level", "error", "--reflection", "--insecure-i-know",
			"--work=false", "--work-lease-duration", "4s"},
			want: func(c *config) {
				c.Work, c.WorkLeaseDuration = false, 4*time.Second
				c.Region, c.Addr, c.NodeID, c.Lookup.HotKeysFile = "ap-southeast-2", "127.0.0.1:0", "node-8", ""
				c.Backend.DataDir, c.Obs.LogLevel, c.Reflection, c.Security.Insecure = "here", "error", true, true
			}},
		// --backend aws: the node registers at --addr unless told otherwise.
		{name: "aws advertises addr", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", "tcs-0.tcs.internal:9001"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = "tcs-0.tcs.internal:9001", "tcs-0.tcs.internal:9001"
			}},
		{name: "aws advertise flag", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", ":9001", "--advertise-addr", "10.0.3.7:9001"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = ":9001", "10.0.3.7:9001"
			}},
		// The chart passes the pod IP alone: it takes --addr's port.
		{name: "aws advertise IPv4 pod IP", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", ":9001"}, env: map[string]string{"TCS_ADVERTISE_ADDR": "10.244.0.26"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = ":9001", "10.244.0.26:9001"
			}},
		{name: "aws advertise IPv6 pod IP", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", ":9001"}, env: map[string]string{"TCS_ADVERTISE_ADDR": "fd00:10:244::1a"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = ":9001", "[fd00:10:244::1a]:9001"
			}},
		// Unbracketed, fd00::7:1 is an address (fd00:0:0:0:0:0:7:1), not
		// [fd00::7]:1.
		{name: "aws advertise IPv6 with colons", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", ":9001", "--advertise-addr", "fd00::7:1"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = ":9001", "[fd00::7:1]:9001"
			}},
		{name: "aws advertise host name", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", "0.0.0.0:9002", "--advertise-addr", "tcs-eu-west-1"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = "0.0.0.0:9002", "tcs-eu-west-1:9002"
			}},
		{name: "aws advertise bracketed host", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", ":9001", "--advertise-addr", "[fd00::7]"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = ":9001", "[fd00::7]:9001"
			}},
		{name: "aws advertise IPv6 bracketed", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", ":9001", "--advertise-addr", "[fd00::7]:9001"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.AdvertiseAddr = ":9001", "[fd00::7]:9001"
			}},
		{name: "aws not registered", args: []string{"--region", "eu-west-1", "--backend", "aws", "--aws-home-region", "us-east-1",
			"--addr", "0.0.0.0:9001"}, env: map[string]string{"TCS_REGISTER": "false"},
			want: func(c *config) {
				c.Backend.Backend, c.Backend.HomeRegion = "aws", "us-east-1"
				c.Addr, c.Register = "0.0.0.0:9001", false
			}},
		{name: "cache and lookup flags", args: []string{"--region", "eu-west-1", "--cache-size", "10", "--cache-ttl", "1m",
			"--negative-ttl", "-1s", "--max-stale", "-1s", "--read-timeout", "1s", "--failing-after", "-1",
			"--fallback-timeout", "2s", "--refresh-invalidated=false", "--feed-timeout", "-1s", "--feed-down-ttl", "3s",
			"--hot-keys", "5", "--warm-timeout", "-1s"},
			want: func(c *config) {
				c.Cache = cache.Options{Size: 10, TTL: time.Minute, NegativeTTL: -time.Second, MaxStale: -time.Second,
					ReadTimeout: time.Second, FailingAfter: -1, FallbackTimeout: 2 * time.Second}
				c.Lookup = lookup.Config{FeedTimeout: -time.Second, FeedDownTTL: 3 * time.Second, HotKeys: 5, WarmTimeout: -time.Second}
			}},
		{name: "caps and limits", args: []string{"--region", "eu-west-1", "--max-concurrent-streams", "7",
			"--max-connection-age", "0s", "--watch-max-streams", "5", "--watch-max-per-caller", "0",
			"--lookup-rate-per-caller", "10", "--miss-rate", "0", "--miss-rate-per-caller", "2.5", "--negative-cache-size", "9"},
			limits: func(l *limits) {
				l.Serve.MaxConcurrentStreams, l.Serve.Keepalive.MaxConnectionAge = 7, -1
				l.Lookup.MaxWatchStreams, l.Lookup.MaxWatchPerCaller, l.Lookup.Cache.NegativeSize = 5, -1, 9
				l.Lookup.LookupRate, l.Lookup.MissRate, l.Lookup.MissRatePerCaller = 10, -1, 2.5
			}},
		// What needs I/O is checked when wiring: a data directory or
		// hot-keys file that does not exist, credentials and certificates
		// that cannot be read, a non-loopback address without them.
		{name: "nothing opened", args: []string{"--region", "eu-west-1", "--addr", "0.0.0.0:9001", "--data", "/nonexistent/data",
			"--hot-keys-file", "/nonexistent/hot-keys", "--tokens-file", "/nonexistent/tokens", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"},
			want: func(c *config) {
				c.Addr, c.Backend.DataDir, c.Lookup.HotKeysFile = "0.0.0.0:9001", "/nonexistent/data", "/nonexistent/hot-keys"
				c.Security.TokensFile, c.Security.TLS = "/nonexistent/tokens", auth.TLSFiles{Cert: "/nonexistent/c.pem", Key: "/nonexistent/k.pem"}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			got, err := parseConfig(c.args, configtest.Env(c.env), &stderr)
			if err != nil {
				t.Fatalf("parseConfig(%q) = %v", c.args, err)
			}
			want := defaultConfig()
			if c.want != nil {
				c.want(want)
			}
			if diff := configDiff(want, got); diff != "" {
				t.Errorf("parseConfig(%q) (-want +got):\n%s", c.args, diff)
			}
			wantLimits := defaultLimits()
			if c.limits != nil {
				c.limits(&wantLimits)
			}
			if diff := cmp.Diff(wantLimits, applied(got), cmpopts.IgnoreUnexported(lookup.ServeOptions{})); diff != "" {
				t.Errorf("parseConfig(%q): caps and limits applied (-want +got):\n%s", c.args, diff)
			}
			if stderr.Len() > 0 {
				t.Errorf("parseConfig wrote to stderr: %q", stderr.String())
			}
		})
	}
}

// TestParseConfigRefuses: each setting that cannot work is refused with an
// error naming its flag or environment variable.
func TestParseConfigRefuses(t *testing.T) {
	t.Parallel()
	region := []string{"--region", "eu-west-1"}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }
	aws := with(region, "--backend", "aws", "--aws-home-region", "us-east-1")
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "no region", want: "--region is required (or TCS_REGION)"},
		{name: "empty region", args: []string{"--region", ""}, env: map[string]string{"TCS_REGION": "eu-west-1"}, want: "--region is required"},
		{name: "stray argument", args: with(region, "stray"), want: `unexpected arguments ["stray"]`},
		{name: "unknown flag", args: with(region, "--nope"), want: "flag provided but not defined: -nope"},
		{name: "malformed duration", args: with(region, "--feed-timeout", "soon"), want: `invalid value "soon" for flag -feed-timeout`},
		{name: "malformed size", args: with(region, "--cache-size", "big"), want: `invalid value "big" for flag -cache-size`},
		{name: "unknown backend", args: with(region, "--backend", "mysql"), want: `--backend "mysql": want embedded or aws`},
		{name: "backend env", args: region, env: map[string]string{"TCS_BACKEND": "mysql"}, want: `--backend "mysql"`},
		{name: "empty data directory", args: with(region, "--data", ""), want: "--data (TCS_DATA_DIR) is empty"},
		{name: "aws without home region", args: with(region, "--backend", "aws"), want: "--backend aws needs a home region"},
		{name: "bad aws prefix", args: with(aws, "--aws-prefix", "a_b"), want: `--aws-prefix "a_b"`},
		{name: "aws connect timeout env", args: aws, env: map[string]string{"TCS_AWS_CONNECT_TIMEOUT": "2"}, want: `TCS_AWS_CONNECT_TIMEOUT "2"`},
		{name: "zero aws timeout", args: with(aws, "--aws-timeout", "0s"), want: "--aws-timeout 0s: want a positive duration"},
		{name: "fallback region embedded", args: with(region, "--fallback-region", "us-east-1"), want: "--fallback-region needs --backend aws"},
		{name: "fallback region env embedded", args: region, env: map[string]string{"TCS_FALLBACK_REGION": "us-east-1"}, want: "--fallback-region needs --backend aws"},
		{name: "fallback region is region", args: with(aws, "--fallback-region", "eu-west-1"), want: "--fallback-region eu-west-1 is --region itself"},
		{name: "register wildcard addr", args: with(aws, "--addr", "0.0.0.0:9001"), want: "--register needs --advertise-addr (or TCS_ADVERTISE_ADDR): --addr 0.0.0.0:9001"},
		{name: "register empty host", args: with(aws, "--addr", ":9001"), want: "--register needs --advertise-addr"},
		{name: "register port 0", args: with(aws, "--addr", "127.0.0.1:0"), want: "--register needs --advertise-addr"},
		{name: "advertise wildcard", args: with(aws, "--advertise-addr", "[::]:9001"), want: `--advertise-addr "[::]:9001": :: is a wildcard address`},
		{name: "advertise host, addr port 0", args: with(aws, "--addr", "127.0.0.1:0", "--advertise-addr", "10.0.3.7"), want: `--advertise-addr "10.0.3.7" names no port, and --addr "127.0.0.1:0" has none to lend`},
		{name: "advertise bad brackets", args: with(aws, "--advertise-addr", "[tcs-a]"), want: `--advertise-addr "[tcs-a]": want host:port, or a host`},
		{name: "advertise wildcard host", args: with(aws, "--advertise-addr", "::"), want: `--advertise-addr "::": :: is a wildcard address`},
		{name: "advertise port 0 env", args: aws, env: map[string]string{"TCS_ADVERTISE_ADDR": "10.0.3.7:0"}, want: `--advertise-addr "10.0.3.7:0"`},
		{name: "register env", args: aws, env: map[string]string{"TCS_REGISTER": "maybe"}, want: `TCS_REGISTER="maybe": want true or false`},
		{name: "zero max concurrent streams", args: with(region, "--max-concurrent-streams", "0"), want: "--max-concurrent-streams 0"},
		{name: "zero negative cache size", args: with(region, "--negative-cache-size", "0"), want: "--negative-cache-size 0: must be positive"},
		{name: "zero work lease duration", args: with(region, "--work-lease-duration", "0s"), want: "--work-lease-duration 0s: want more than 0"},
		{name: "zero feed-down TTL", args: with(region, "--feed-down-ttl", "0s"), want: "--feed-down-ttl 0s: must be positive"},
		{name: "negative feed-down TTL", args: with(region, "--feed-down-ttl", "-5s"), want: "--feed-down-ttl -5s: must be positive"},
		{name: "zero hot keys", args: with(region, "--hot-keys", "0"), want: "--hot-keys 0: must be positive"},
		{name: "client CA without certificate", args: with(region, "--tls-client-ca", "ca.pem"), want: "--tls-client-ca needs --tls-cert and --tls-key"},
		{name: "certificate without key", args: with(region, "--tls-cert", "c.pem"), want: "--tls-cert and --tls-key go together"},
		{name: "key without certificate env", args: region, env: map[string]string{"TCS_TLS_KEY": "k.pem"}, want: "--tls-cert and --tls-key go together"},
		{name: "bad log level env", args: region, env: map[string]string{"TCS_LOG_LEVEL": "loud"}, want: `--log-level "loud": want debug, info, warn or error`},
		{name: "bad log format", args: with(region, "--log-format", "xml"), want: `--log-format "xml": want text or json`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseConfig(c.args, configtest.Env(c.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("parseConfig(%q) = %v, want an error containing %q", c.args, err, c.want)
			}
			if cfg != nil {
				t.Errorf("parseConfig(%q) returned a config with its error", c.args)
			}
		})
	}
}

// TestParseConfigVersion: --version is all that counts: the rest (even a
// missing --region) is not checked, as the binary only prints its version.
func TestParseConfigVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"--version", "--hot-keys", "0", "--backend", "mysql", "stray"}} {
		cfg, err := parseConfig(args, configtest.Env(nil), io.Discard)
		if err != nil || !cfg.Version {
			t.Errorf("parseConfig(%q) = %+v, %v; want Version set and no error", args, cfg, err)
		}
	}
	cfg, err := parseConfig([]string{"--region", "eu-west-1"}, configtest.Env(nil), io.Discard)
	if err != nil || cfg.Version {
		t.Errorf("parseConfig(--region eu-west-1) = %+v, %v; want Version unset", cfg, err)
	}
}

// TestParseConfigHelp: -h prints every flag with its environment variable
// and returns flag.ErrHelp (the binary exits 2 without an error line).
func TestParseConfigHelp(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, configtest.Env(nil), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig(-h) = %v, want flag.ErrHelp", err)
	}
	for _, w := range []string{"-region", "env TCS_REGION", "-addr", "env TCS_ADDR", "-node-id", "env TCS_NODE_ID",
		"-fallback-region", "env TCS_FALLBACK_REGION", "-hot-keys-file", "env TCS_HOT_KEYS_FILE", "-cache-ttl",
		"-feed-timeout", "-max-concurrent-streams", "-reflection", "-backend", "-tokens-file", "-metrics-addr", "-version"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("-h output has no %q:\n%s", w, stderr.String())
		}
	}
}

// TestParseConfigOpensNothing: parsing creates neither the data directory
// nor the hot-keys file; run does, opening the replica and stopping.
func TestParseConfigOpensNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, hotKeys := filepath.Join(dir, "data"), filepath.Join(dir, "hot-keys")
	if _, err := parseConfig([]string{"--region", "eu-west-1", "--data", data, "--hot-keys-file", hotKeys}, configtest.Env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{data, hotKeys} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after parseConfig, stat %s: %v; want it not to exist", p, err)
		}
	}
}
