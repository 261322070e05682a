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

	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/catalogflags"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/configtest"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/awsclient"
)

// defaultConfig is what parseConfig makes of no arguments and an empty
// environment.
func defaultConfig() *config {
	return &config{
		Addr:         "127.0.0.1:8080",
		StoreTimeout: httpapi.DefaultStoreTimeout,
		RateLimits:   &catalogflags.RateLimits{PerCaller: httpapi.DefaultPerCaller, PerAddress: httpapi.DefaultPerAddress},
		Backend:      configtest.DefaultBackend(),
		Security:     &cmdutil.Security{},
		Obs:          configtest.DefaultObs(cmdutil.DefaultCatalogMetricsAddr),
	}
}

// TestParseConfig: defaults with no arguments and no environment; each
// environment variable replaces its default, and a flag the environment.
func TestParseConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want func(*config)
	}{
		{name: "defaults", want: func(*config) {}},
		{name: "environment", env: map[string]string{
			"TCS_CATALOG_ADDR": "127.0.0.1:18080", "TCS_STORE_TIMEOUT": "750ms", "TCS_RATE_LIMIT": "7",
			"TCS_ADDRESS_RATE_LIMIT": "0", "TCS_BACKEND": "aws", "TCS_DATA_DIR": "/var/lib/tcs",
			"TCS_AWS_PREFIX": "staging", "AWS_REGION": "eu-west-1", "TCS_POLL_INTERVAL": "250ms",
			"TCS_AWS_TIMEOUT": "20s", "TCS_AWS_CONNECT_TIMEOUT": "3s", "TCS_AWS_HEADER_TIMEOUT": "6s",
			"TCS_TOKENS_FILE": "/etc/tcs/tokens", "TCS_TLS_CERT": "c.pem", "TCS_TLS_KEY": "k.pem",
			"TCS_TLS_CLIENT_CA": "ca.pem", "TCS_LOG_LEVEL": "debug", "TCS_LOG_FORMAT": "json",
			"TCS_METRICS_ADDR": "none", "TCS_PROPAGATION_REGIONS": "us-east-1, eu-west-1,", "TCS_NODES_CA_FILE": "nodes-ca.pem",
			"TCS_SCAN_TOKEN": "scan-secret",
		}, want: func(c *config) {
			c.PropagationRegions, c.Nodes.CAFile, c.ScanToken = []string{"us-east-1", "eu-west-1"}, "nodes-ca.pem", "scan-secret"
			c.Addr, c.StoreTimeout, c.RateLimits.PerCaller, c.RateLimits.PerAddress = "127.0.0.1:18080", 750*time.Millisecond, 7, 0
			c.Backend.Backend, c.Backend.DataDir, c.Backend.Names.Prefix, c.Backend.HomeRegion = "aws", "/var/lib/tcs", "staging", "eu-west-1"
			c.Backend.PollInterval = 250 * time.Millisecond
			c.Backend.Timeouts = awsclient.Timeouts{Operation: 20 * time.Second, Connect: 3 * time.Second, ResponseHeader: 6 * time.Second}
			c.Security.TokensFile, c.Security.TLS = "/etc/tcs/tokens", auth.TLSFiles{Cert: "c.pem", Key: "k.pem", ClientCA: "ca.pem"}
			c.Obs.LogLevel, c.Obs.LogFormat, c.Obs.MetricsAddr = "debug", "json", "none"
		}},
		{name: "home region of its own", env: map[string]string{"AWS_REGION": "eu-west-1", "TCS_AWS_HOME_REGION": "us-east-1"},
			want: func(c *config) { c.Backend.HomeRegion = "us-east-1" }},
		{name: "flags over environment", env: map[string]string{
			"TCS_CATALOG_ADDR": "127.0.0.1:18080", "TCS_STORE_TIMEOUT": "750ms", "TCS_RATE_LIMIT": "7",
			"TCS_ADDRESS_RATE_LIMIT": "0", "TCS_DATA_DIR": "/var/lib/tcs", "TCS_TOKENS_FILE": "/etc/tcs/tokens",
			"TCS_LOG_LEVEL": "debug", "TCS_METRICS_ADDR": "none",
		}, args: []string{"--addr", "127.0.0.1:0", "--store-timeout", "2s", "--rate-limit", "0", "--address-rate-limit", "9",
			"--data", "here", "--tokens-file", "creds", "--log-level", "warn", "--metrics-addr", "127.0.0.1:0",
			"--insecure-i-know", "--migrate-layout"},
			want: func(c *config) {
				c.Addr, c.StoreTimeout, c.RateLimits.PerCaller, c.RateLimits.PerAddress = "127.0.0.1:0", 2*time.Second, 0, 9
				c.Backend.DataDir, c.Security.TokensFile, c.Security.Insecure = "here", "creds", true
				c.Obs.LogLevel, c.Obs.MetricsAddr, c.MigrateLayout = "warn", "127.0.0.1:0", true
			}},
		{name: "nodes flags", env: map[string]string{"TCS_PROPAGATION_REGIONS": "us-east-1", "TCS_NODES_CA_FILE": "nodes-ca.pem"},
			args: []string{"--propagation-regions", "ap-southeast-2", "--nodes-ca-file", "", "--nodes-plaintext"},
			want: func(c *config) { c.PropagationRegions, c.Nodes.Plaintext = []string{"ap-southeast-2"}, true }},
		{name: "nodes server name", env: map[string]string{"TCS_NODES_SERVER_NAME": "tcs-lookup.tcs.svc"},
			want: func(c *config) { c.Nodes.ServerName = "tcs-lookup.tcs.svc" }},
		{name: "nodes plaintext env", env: map[string]string{"TCS_NODES_PLAINTEXT": "true"},
			want: func(c *config) { c.Nodes.Plaintext = true }},
		// What needs I/O is checked when wiring: a data directory that
		// does not exist, credentials and certificates that cannot be
		// read, a non-loopback address without them all parse.
		{name: "nothing opened", args: []string{"--addr", "0.0.0.0:8080", "--data", "/nonexistent/data",
			"--tokens-file", "/nonexistent/tokens", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem", "--tls-client-ca", "/nonexistent/ca.pem"},
			want: func(c *config) {
				c.Addr, c.Backend.DataDir, c.Security.TokensFile = "0.0.0.0:8080", "/nonexistent/data", "/nonexistent/tokens"
				c.Security.TLS = auth.TLSFiles{Cert: "/nonexistent/c.pem", Key: "/nonexistent/k.pem", ClientCA: "/nonexistent/ca.pem"}
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
			c.want(want)
			if diff := cmp.Diff(want, got, configtest.Opts); diff != "" {
				t.Errorf("parseConfig(%q) (-want +got):\n%s", c.args, diff)
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
	aws := []string{"--backend", "aws", "--aws-home-region", "us-east-1"}
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string // all in the error
	}{
		{name: "stray argument", args: []string{"serve"}, want: []string{`unexpected arguments ["serve"]`}},
		{name: "unknown flag", args: []string{"--nope"}, want: []string{"flag provided but not defined: -nope"}},
		{name: "malformed store timeout", args: []string{"--store-timeout", "soon"}, want: []string{`invalid value "soon" for flag -store-timeout`}},
		{name: "zero store timeout", args: []string{"--store-timeout", "0s"}, want: []string{"--store-timeout 0s: want a positive duration"}},
		{name: "negative store timeout", args: []string{"--store-timeout", "-1s"}, want: []string{"--store-timeout -1s"}},
		{name: "negative rate limit", args: []string{"--rate-limit", "-1"}, want: []string{"--rate-limit -1", "want 0 (no limit) or more"}},
		{name: "negative address rate limit", args: []string{"--address-rate-limit", "-5"}, want: []string{"--address-rate-limit -5", "want 0 (no limit) or more"}},
		{name: "store timeout env", env: map[string]string{"TCS_STORE_TIMEOUT": "5"}, want: []string{`TCS_STORE_TIMEOUT "5": want a duration`}},
		{name: "rate limit env", env: map[string]string{"TCS_RATE_LIMIT": "fast"}, want: []string{`TCS_RATE_LIMIT "fast": want a whole number`}},
		{name: "two bad env variables", env: map[string]string{"TCS_ADDRESS_RATE_LIMIT": "1.5", "TCS_STORE_TIMEOUT": "5"},
			want: []string{`TCS_ADDRESS_RATE_LIMIT "1.5"`, `TCS_STORE_TIMEOUT "5"`}},
		// A flag does not excuse a malformed environment variable: it is
		// a mistake in the deployment either way.
		{name: "env under a flag", args: []string{"--store-timeout", "1s"}, env: map[string]string{"TCS_STORE_TIMEOUT": "5"}, want: []string{`TCS_STORE_TIMEOUT "5"`}},
		{name: "unknown backend", args: []string{"--backend", "mysql"}, want: []string{`--backend "mysql": want embedded or aws`}},
		{name: "empty data directory", args: []string{"--data", ""}, want: []string{"--data (TCS_DATA_DIR) is empty"}},
		{name: "aws without home region", args: []string{"--backend", "aws"}, want: []string{"--backend aws needs a home region"}},
		{name: "bad aws prefix", args: append(aws, "--aws-prefix", "Prod"), want: []string{`--aws-prefix "Prod"`}},
		{name: "zero poll interval", args: append(aws, "--poll-interval", "0s"), want: []string{"--poll-interval 0s"}},
		{name: "aws timeout env", args: aws, env: map[string]string{"TCS_AWS_TIMEOUT": "soon"}, want: []string{`TCS_AWS_TIMEOUT "soon"`}},
		{name: "header timeout over aws timeout", args: append(aws, "--aws-timeout", "1s", "--aws-header-timeout", "2s"),
			want: []string{"--aws-header-timeout 2s exceeds --aws-timeout 1s"}},
		{name: "client CA without certificate", args: []string{"--tls-client-ca", "ca.pem"}, want: []string{"--tls-client-ca needs --tls-cert and --tls-key"}},
		{name: "key without certificate", env: map[string]string{"TCS_TLS_KEY": "k.pem"}, want: []string{"--tls-cert and --tls-key go together"}},
		{name: "nodes plaintext and CA", args: []string{"--nodes-plaintext", "--nodes-ca-file", "ca.pem"}, want: []string{"--nodes-plaintext excludes --nodes-ca-file and --nodes-server-name"}},
		{name: "nodes plaintext and server name", args: []string{"--nodes-plaintext", "--nodes-server-name", "tcs"}, want: []string{"--nodes-plaintext excludes"}},
		{name: "nodes plaintext env", env: map[string]string{"TCS_NODES_PLAINTEXT": "yes please"}, want: []string{`TCS_NODES_PLAINTEXT="yes please": want true or false`}},
		{name: "bad propagation region", args: []string{"--propagation-regions", "us-east-1,EU WEST"}, want: []string{`--propagation-regions: "EU WEST" is not a region name`}},
		{name: "bad log level", args: []string{"--log-level", "loud"}, want: []string{`--log-level "loud": want debug, info, warn or error`}},
		{name: "bad log format env", env: map[string]string{"TCS_LOG_FORMAT": "xml"}, want: []string{`--log-format "xml": want text or json`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseConfig(c.args, configtest.Env(c.env), io.Discard)
			if err == nil {
				t.Fatalf("parseConfig(%q) = %+v, want an error", c.args, cfg)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("parseConfig(%q) = %v, want an error containing %q", c.args, err, w)
				}
			}
			if cfg != nil {
				t.Errorf("parseConfig(%q) returned a config with its error", c.args)
			}
		})
	}
}

// TestParseConfigVersion: --version is all that counts: the rest is not
// checked, as the binary only prints its version.
func TestParseConfigVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"--version", "--store-timeout", "0s", "--backend", "mysql", "stray"}} {
		cfg, err := parseConfig(args, configtest.Env(map[string]string{"TCS_STORE_TIMEOUT": "5"}), io.Discard)
		if err != nil || !cfg.Version {
			t.Errorf("parseConfig(%q) = %+v, %v; want Version set and no error", args, cfg, err)
		}
	}
	cfg, err := parseConfig(nil, configtest.Env(nil), io.Discard)
	if err != nil || cfg.Version {
		t.Errorf("parseConfig() = %+v, %v; want Version unset", cfg, err)
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
	for _, w := range []string{"-addr", "env TCS_CATALOG_ADDR", "-store-timeout", "env TCS_STORE_TIMEOUT", "-rate-limit",
		"-address-rate-limit", "-migrate-layout", "-backend", "-tokens-file", "-log-level", "-metrics-addr", "-version"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("-h output has no %q:\n%s", w, stderr.String())
		}
	}
}

// TestParseConfigOpensNothing: parsing creates no data directory; run
// creates it when it opens the catalog.
func TestParseConfigOpensNothing(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := parseConfig([]string{"--data", data}, configtest.Env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after parseConfig, stat %s: %v; want it not to exist", data, err)
	}
}
