package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/catalogflags"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/configtest"
	"github.com/tcs-dev/tcs/cmd/internal/lookupflags"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/streamer/reconcile"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/work"
)

// defaultConfig is tcs-dev's config with no flag and no environment:
// `make run`'s.
func defaultConfig() *config {
	return &config{
		CatalogAddr:       "127.0.0.1:8080",
		RateLimits:        &catalogflags.RateLimits{PerCaller: httpapi.DefaultPerCaller, PerAddress: httpapi.DefaultPerAddress},
		Regions:           []regionAddr{{"us-east-1", "127.0.0.1:9001"}, {"eu-west-1", "127.0.0.1:9002"}, {"ap-southeast-2", "127.0.0.1:9003"}},
		Seed:              true,
		ReconcileInterval: reconcile.DefaultInterval,
		ReconcileSettle:   reconcile.DefaultSettle,
		Backend:           configtest.DefaultBackend(),
		Security:          &cmdutil.Security{},
		Obs:               configtest.DefaultObs(cmdutil.DefaultDevMetricsAddr),
		Limits:            &lookupflags.Flags{},
		Work:              true,
		WorkLeaseDuration: work.DefaultLeaseDuration,
	}
}

// TestParseConfig: the defaults, each environment variable over its
// default, and each flag over its environment variable.
func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TCS_CATALOG_ADDR": "127.0.0.1:1", "TCS_REGIONS": " us-east-1=127.0.0.1:2 , eu-west-1=[::1]:3",
		"TCS_RECONCILE_INTERVAL": "0s", "TCS_RECONCILE_SETTLE": "1s", "TCS_RATE_LIMIT": "50", "TCS_ADDRESS_RATE_LIMIT": "5",
		"TCS_BACKEND": "aws", "AWS_REGION": "eu-west-1", "TCS_DATA_DIR": "/env/data",
		"TCS_LOG_LEVEL": "debug", "TCS_LOG_FORMAT": "json", "TCS_METRICS_ADDR": "none",
		"TCS_TOKENS_FILE": "/env/tokens", "TCS_TLS_CERT": "/env/cert.pem", "TCS_TLS_KEY": "/env/key.pem", "TCS_TLS_CLIENT_CA": "/env/ca.pem",
	}
	fromEnv := func() *config {
		c := defaultConfig()
		c.CatalogAddr = "127.0.0.1:1"
		c.Regions = []regionAddr{{"us-east-1", "127.0.0.1:2"}, {"eu-west-1", "[::1]:3"}}
		c.ReconcileInterval, c.ReconcileSettle = 0, time.Second
		c.RateLimits = &catalogflags.RateLimits{PerCaller: 50, PerAddress: 5}
		c.Backend.Backend, c.Backend.HomeRegion, c.Backend.DataDir = backend.AWS, "eu-west-1", "/env/data"
		c.Obs = &cmdutil.Flags{LogLevel: "debug", LogFormat: "json", MetricsAddr: "none"}
		c.Security = &cmdutil.Security{TokensFile: "/env/tokens", TLS: auth.TLSFiles{Cert: "/env/cert.pem", Key: "/env/key.pem", ClientCA: "/env/ca.pem"}}
		return c
	}
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want func() *config
	}{
		{"defaults", nil, nil, defaultConfig},
		{"environment", nil, env, fromEnv},
		{"flags over environment", []string{"--catalog-addr", "127.0.0.1:0", "--regions", "ap-southeast-2=127.0.0.1:0",
			"--reconcile-interval", "1m", "--reconcile-settle", "10s", "--seed=false", "--reflection", "--work=false", "--work-lease-duration", "3s",
			"--backend", "embedded", "--data", "/flag/data", "--log-level", "warn", "--metrics-addr", "127.0.0.1:0",
			"--tokens-file", "/flag/tokens", "--tls-cert", "", "--tls-key", "", "--tls-client-ca", "", "--insecure-i-know",
			"--rate-limit", "0", "--address-rate-limit", "3"}, env,
			func() *config {
				c := fromEnv()
				c.CatalogAddr = "127.0.0.1:0"
				c.RateLimits = &catalogflags.RateLimits{PerCaller: 0, PerAddress: 3}
				c.Regions = []regionAddr{{"ap-southeast-2", "127.0.0.1:0"}}
				c.ReconcileInterval, c.ReconcileSettle = time.Minute, 10*time.Second
				c.Seed, c.Reflection = false, true
				c.Work, c.WorkLeaseDuration = false, 3*time.Second
				c.Backend.Backend, c.Backend.DataDir = backend.Embedded, "/flag/data"
				c.Obs = &cmdutil.Flags{LogLevel: "warn", LogFormat: "json", MetricsAddr: "127.0.0.1:0"}
				c.Security = &cmdutil.Security{TokensFile: "/flag/tokens", Insecure: true}
				return c
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfig(c.args, configtest.Env(c.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want(), got, configtest.Opts); diff != "" {
				t.Errorf("tcs-dev %v: config (-want +got):\n%s", c.args, diff)
			}
		})
	}
}

// TestParseConfigLimits: the lookup servers' caps reach what the lookup
// servers are built with.
func TestParseConfigLimits(t *testing.T) {
	t.Parallel()
	got, err := parseConfig([]string{"--negative-cache-size", "7", "--max-concurrent-streams", "9", "--watch-max-streams", "0"}, configtest.Env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		lc lookup.Config
		so lookup.ServeOptions
	)
	got.Limits.Apply(&lc, &so)
	if lc.Cache.NegativeSize != 7 || so.MaxConcurrentStreams != 9 || lc.MaxWatchStreams != -1 {
		t.Errorf("limits applied: negative cache size %d, max concurrent streams %d, watch streams %d; want 7, 9, -1 (no cap)",
			lc.Cache.NegativeSize, so.MaxConcurrentStreams, lc.MaxWatchStreams)
	}
}

// TestParseConfigErrors: each bad input is refused with an error naming
// the flag or environment variable that was wrong.
func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"positional", []string{"extra"}, nil, `unexpected arguments ["extra"]`},
		{"unknown flag", []string{"--region", "us-east-1"}, nil, "flag provided but not defined: -region"},
		{"bad flag value", []string{"--seed=maybe"}, nil, `invalid boolean value "maybe" for -seed`},

		{"reconcile interval", []string{"--reconcile-interval", "-1s"}, nil, "--reconcile-interval -1s"},
		{"reconcile settle", []string{"--reconcile-settle", "0s"}, nil, "--reconcile-settle 0s"},
		{"TCS_RECONCILE_INTERVAL", nil, map[string]string{"TCS_RECONCILE_INTERVAL": "often"}, `TCS_RECONCILE_INTERVAL "often"`},
		{"TCS_RECONCILE_SETTLE", nil, map[string]string{"TCS_RECONCILE_SETTLE": "2"}, `TCS_RECONCILE_SETTLE "2"`},

		{"work lease duration", []string{"--work-lease-duration", "0s"}, nil, "--work-lease-duration 0s: want more than 0"},
		{"rate limit", []string{"--rate-limit", "-1"}, nil, "--rate-limit -1, --address-rate-limit 20: want 0 (no limit) or more"},
		{"TCS_RATE_LIMIT", nil, map[string]string{"TCS_RATE_LIMIT": "fast"}, `TCS_RATE_LIMIT "fast": want a whole number of requests a second`},

		{"region without address", []string{"--regions", "us-east-1"}, nil, `--regions: "us-east-1" is not REGION=HOST:PORT`},
		{"empty region", []string{"--regions", "=127.0.0.1:1"}, nil, `--regions: "=127.0.0.1:1" is not REGION=HOST:PORT`},
		{"empty address", []string{"--regions", "us-east-1="}, nil, `--regions: "us-east-1=" is not REGION=HOST:PORT`},
		{"empty entry", []string{"--regions", "us-east-1=127.0.0.1:1,"}, nil, `--regions: "" is not REGION=HOST:PORT`},
		{"region not a name", []string{"--regions", "../etc=127.0.0.1:1"}, nil, `--regions: region "../etc": invalid region: region: must contain only a-z`},
		{"region twice", []string{"--regions", "us-east-1=127.0.0.1:1,us-east-1=127.0.0.1:2"}, nil, "--regions: region us-east-1 listed twice"},
		{"TCS_REGIONS", nil, map[string]string{"TCS_REGIONS": "us-east-1"}, `--regions: "us-east-1" is not REGION=HOST:PORT`},

		{"max concurrent streams", []string{"--max-concurrent-streams", "0"}, nil, "--max-concurrent-streams 0"},
		{"negative cache size", []string{"--negative-cache-size", "0"}, nil, "--negative-cache-size 0"},

		{"backend", []string{"--backend", "cloud"}, nil, `--backend "cloud"`},
		{"TCS_BACKEND", nil, map[string]string{"TCS_BACKEND": "cloud"}, `--backend "cloud"`},
		{"no home region", []string{"--backend", "aws"}, nil, "--backend aws needs a home region"},
		{"empty data", []string{"--data", ""}, nil, "--data (TCS_DATA_DIR) is empty"},
		{"TCS_AWS_TIMEOUT", nil, map[string]string{"TCS_AWS_TIMEOUT": "ten"}, `TCS_AWS_TIMEOUT "ten"`},
		{"log level", []string{"--log-level", "loud"}, nil, `--log-level "loud"`},
		{"TCS_LOG_FORMAT", nil, map[string]string{"TCS_LOG_FORMAT": "xml"}, `--log-format "xml"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfig(c.args, configtest.Env(c.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("tcs-dev %v (env %v) = %+v, %v; want an error containing %q", c.args, c.env, got, err, c.want)
			}
			if got != nil {
				t.Errorf("tcs-dev %v: a config (%+v) beside the error", c.args, got)
			}
		})
	}
}

// TestParseConfigVersionAndHelp: --version asks for the version whatever
// else is wrong; -h is the flag package's help, written to stderr.
func TestParseConfigVersionAndHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--version"},
		{"-version", "extra"},
		{"--version", "--regions", "nonsense", "--reconcile-settle", "0s", "--backend", "cloud"},
	} {
		got, err := parseConfig(args, configtest.Env(map[string]string{"TCS_RECONCILE_INTERVAL": "often"}), &bytes.Buffer{})
		if err != nil || !got.Version {
			t.Errorf("tcs-dev %v = %+v, %v; want Version", args, got, err)
		}
	}
	var stderr bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, configtest.Env(nil), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("tcs-dev -h: %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "-reconcile-interval") {
		t.Errorf("tcs-dev -h wrote %q, want the flags", stderr.String())
	}
}
