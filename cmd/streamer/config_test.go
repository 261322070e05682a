package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/configtest"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/publease"
	"github.com/tcs-dev/tcs/streamer/reconcile"
)

// defaultFeed is apply's invalidation feed with no flag and no environment.
func defaultFeed() streamer.FeedConfig {
	return streamer.FeedConfig{HeartbeatInterval: streamer.DefaultHeartbeatInterval, Timeout: streamer.DefaultFeedTimeout,
		MaxAge: streamer.DefaultFeedMaxAge, MaxPending: streamer.DefaultFeedMaxPending, Senders: streamer.DefaultFeedSenders}
}

// TestParseConfigDefaults: each command with only what it requires, and an
// empty environment, gets the documented defaults, and only its own
// command's group.
func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	obs := func(metrics string) *cmdutil.Flags {
		return configtest.DefaultObs(metrics)
	}
	for _, c := range []struct {
		name string
		args []string
		want *config
	}{
		{"publish", []string{"publish"}, &config{Command: "publish", Backend: configtest.DefaultBackend(), Obs: obs(cmdutil.DefaultPublishMetricsAddr),
			ReadyMaxAge: defaultReadyMaxAge, LiveMaxAge: defaultLiveMaxAge,
			Publish: &publishConfig{LeaseDuration: publease.DefaultLeaseDuration}}},
		{"apply", []string{"apply", "--region", "eu-west-1"}, &config{Command: "apply", Backend: configtest.DefaultBackend(), Obs: obs(cmdutil.DefaultApplyMetricsAddr),
			ReadyMaxAge: defaultReadyMaxAge, LiveMaxAge: defaultLiveMaxAge,
			Apply: &applyConfig{Region: "eu-west-1", Concurrency: streamer.DefaultApplyConcurrency, Feed: defaultFeed()}}},
		{"reconcile", []string{"reconcile", "--regions", "eu-west-1"}, &config{Command: "reconcile", Backend: configtest.DefaultBackend(), Obs: obs(cmdutil.DefaultReconcileMetricsAddr),
			Reconcile: &reconcileConfig{Regions: []string{"eu-west-1"}, Interval: reconcile.DefaultInterval, Settle: reconcile.DefaultSettle,
				Rescan: reconcile.DefaultRescan, RepairRate: reconcile.DefaultRepairRate}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfig(c.args, configtest.Env(nil), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got, configtest.Opts); diff != "" {
				t.Errorf("streamer %v: config (-want +got):\n%s", c.args, diff)
			}
		})
	}
}

// TestParseConfigEnvAndFlags: every environment variable overrides its
// default, and a flag overrides the environment.
func TestParseConfigEnvAndFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TCS_BACKEND": "aws", "TCS_AWS_HOME_REGION": "us-east-1", "TCS_AWS_PREFIX": "env", "TCS_POLL_INTERVAL": "100ms",
		"TCS_LOG_LEVEL": "debug", "TCS_LOG_FORMAT": "json", "TCS_METRICS_ADDR": "127.0.0.1:1",
		"TCS_READY_MAX_AGE": "1m", "TCS_LIVE_MAX_AGE": "0s", "TCS_WORKER_ID": "env-worker",
		"TCS_PUBLISH_LEASE_DURATION": "20s", "TCS_REGION": "eu-west-1", "TCS_APPLY_CONCURRENCY": "3",
		"TCS_FEED_HEARTBEAT": "0s", "TCS_FEED_SEND_TIMEOUT": "3s", "TCS_FEED_MAX_AGE": "1m", "TCS_FEED_MAX_PENDING": "7", "TCS_FEED_SENDERS": "2",
		"TCS_REGIONS": "eu-west-1, ap-southeast-2", "TCS_RECONCILE_INTERVAL": "1m", "TCS_RECONCILE_SETTLE": "30s", "TCS_RECONCILE_RESCAN": "2h",
	}
	envBackend := func() *backend.Config {
		b := configtest.DefaultBackend()
		b.Backend, b.HomeRegion, b.Names.Prefix, b.PollInterval = backend.AWS, "us-east-1", "env", 100*time.Millisecond
		return b
	}
	flagBackend := func() *backend.Config {
		b := envBackend()
		b.Names.Prefix = "flag"
		return b
	}
	envObs := &cmdutil.Flags{LogLevel: "debug", LogFormat: "json", MetricsAddr: "127.0.0.1:1"}
	flagObs := &cmdutil.Flags{LogLevel: "warn", LogFormat: "json", MetricsAddr: "none"}
	common := []string{"--aws-prefix", "flag", "--log-level", "warn", "--metrics-addr", "none"}
	for _, c := range []struct {
		name string
		args []string
		want *config
	}{
		{"publish env", []string{"publish"}, &config{Command: "publish", Backend: envBackend(), Obs: envObs,
			ReadyMaxAge: time.Minute, LiveMaxAge: 0,
			Publish: &publishConfig{WorkerID: "env-worker", LeaseDuration: 20 * time.Second}}},
		{"publish flags", append([]string{"publish", "--ready-max-age", "2m", "--live-max-age", "1h", "--worker-id", "w",
			"--lease-duration", "5s", "--kinesis-no-pack", "--drain"}, common...),
			&config{Command: "publish", Backend: flagBackend(), Obs: flagObs, Drain: true,
				ReadyMaxAge: 2 * time.Minute, LiveMaxAge: time.Hour,
				Publish: &publishConfig{WorkerID: "w", LeaseDuration: 5 * time.Second, NoPack: true}}},
		{"apply env", []string{"apply"}, &config{Command: "apply", Backend: envBackend(), Obs: envObs,
			ReadyMaxAge: time.Minute, LiveMaxAge: 0,
			Apply: &applyConfig{Region: "eu-west-1", WorkerID: "env-worker", Concurrency: 3,
				Feed: streamer.FeedConfig{HeartbeatInterval: -1, Timeout: 3 * time.Second, MaxAge: time.Minute, MaxPending: 7, Senders: 2}}}},
		{"apply flags", append([]string{"apply", "--region", "ap-southeast-2", "--worker-id", "w", "--concurrency", "5",
			"--feed-heartbeat", "9s", "--feed-send-timeout", "1s", "--feed-max-age", "10s", "--feed-max-pending", "8", "--feed-senders", "6"}, common...),
			&config{Command: "apply", Backend: flagBackend(), Obs: flagObs, ReadyMaxAge: time.Minute, LiveMaxAge: 0,
				Apply: &applyConfig{Region: "ap-southeast-2", WorkerID: "w", Concurrency: 5,
					Feed: streamer.FeedConfig{HeartbeatInterval: 9 * time.Second, Timeout: time.Second, MaxAge: 10 * time.Second, MaxPending: 8, Senders: 6}}}},
		{"reconcile env", []string{"reconcile"}, &config{Command: "reconcile", Backend: envBackend(), Obs: envObs,
			Reconcile: &reconcileConfig{Regions: []string{"eu-west-1", "ap-southeast-2"}, Interval: time.Minute, Settle: 30 * time.Second,
				Rescan: 2 * time.Hour, RepairRate: reconcile.DefaultRepairRate}}},
		{"reconcile flags", append([]string{"reconcile", "--regions", "us-east-1", "--interval", "10s", "--settle", "20s", "--rescan", "30s",
			"--repair-rate", "5", "--read-rate", "100", "--once"}, common...),
			&config{Command: "reconcile", Backend: flagBackend(), Obs: flagObs,
				Reconcile: &reconcileConfig{Regions: []string{"us-east-1"}, Interval: 10 * time.Second, Settle: 20 * time.Second,
					Rescan: 30 * time.Second, RepairRate: 5, ReadRate: 100, Once: true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfig(c.args, configtest.Env(env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got, configtest.Opts); diff != "" {
				t.Errorf("streamer %v: config (-want +got):\n%s", c.args, diff)
			}
		})
	}
}

// TestParseConfigErrors: each bad input is refused with an error naming
// the flag or environment variable that was wrong.
func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	apply := func(args ...string) []string { return append([]string{"apply", "--region", "us-east-1"}, args...) }
	rec := func(args ...string) []string { return append([]string{"reconcile", "--regions", "us-east-1"}, args...) }
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, nil, "missing command"},
		{"unknown command", []string{"bogus"}, nil, `unknown command "bogus"`},
		{"publish positional", []string{"publish", "extra"}, nil, `unexpected arguments ["extra"]`},
		{"apply positional", apply("extra", "more"), nil, `unexpected arguments ["extra" "more"]`},
		{"reconcile positional", rec("extra"), nil, `unexpected arguments ["extra"]`},
		{"unknown flag", []string{"publish", "--region", "us-east-1"}, nil, "flag provided but not defined: -region"},
		{"flag of another command", []string{"apply", "--regions", "us-east-1"}, nil, "flag provided but not defined: -regions"},
		{"bad flag value", apply("--concurrency", "many"), nil, `invalid value "many" for flag -concurrency`},

		{"ready max age", []string{"publish", "--ready-max-age", "0s"}, nil, "--ready-max-age 0s"},
		{"live max age", []string{"apply", "--region", "us-east-1", "--live-max-age", "-1s"}, nil, "--live-max-age -1s"},
		{"TCS_READY_MAX_AGE", []string{"publish"}, map[string]string{"TCS_READY_MAX_AGE": "soon"}, `TCS_READY_MAX_AGE "soon"`},
		{"TCS_LIVE_MAX_AGE", []string{"publish"}, map[string]string{"TCS_LIVE_MAX_AGE": "10"}, `TCS_LIVE_MAX_AGE "10"`},

		{"lease duration", []string{"publish", "--lease-duration", "0s"}, nil, "--lease-duration 0s: want more than 0"},
		{"TCS_PUBLISH_LEASE_DURATION", []string{"publish"}, map[string]string{"TCS_PUBLISH_LEASE_DURATION": "long"}, `TCS_PUBLISH_LEASE_DURATION "long"`},

		{"no region", []string{"apply"}, nil, "apply needs --region (or TCS_REGION)"},
		{"concurrency", apply("--concurrency", "0"), nil, "--concurrency 0: want at least 1"},
		{"TCS_APPLY_CONCURRENCY", apply(), map[string]string{"TCS_APPLY_CONCURRENCY": "lots"}, `TCS_APPLY_CONCURRENCY "lots"`},
		{"feed heartbeat", apply("--feed-heartbeat", "-1s"), nil, "--feed-heartbeat -1s: want 0 (none) or more"},
		{"TCS_FEED_HEARTBEAT", apply(), map[string]string{"TCS_FEED_HEARTBEAT": "often"}, `TCS_FEED_HEARTBEAT "often"`},
		{"feed send timeout", apply("--feed-send-timeout", "0s"), nil, "--feed-send-timeout 0s: want more than 0"},
		{"TCS_FEED_SEND_TIMEOUT", apply(), map[string]string{"TCS_FEED_SEND_TIMEOUT": "2"}, `TCS_FEED_SEND_TIMEOUT "2"`},
		{"feed max age", apply("--feed-max-age", "-1s"), nil, "--feed-max-age -1s: want more than 0"},
		{"TCS_FEED_MAX_AGE", apply(), map[string]string{"TCS_FEED_MAX_AGE": "30"}, `TCS_FEED_MAX_AGE "30"`},
		{"feed max pending", apply("--feed-max-pending", "0"), nil, "--feed-max-pending 0: want at least 1"},
		{"TCS_FEED_MAX_PENDING", apply(), map[string]string{"TCS_FEED_MAX_PENDING": "1e5"}, `TCS_FEED_MAX_PENDING "1e5"`},
		{"feed senders", apply("--feed-senders", "0"), nil, "--feed-senders 0: want at least 1"},
		{"TCS_FEED_SENDERS", apply(), map[string]string{"TCS_FEED_SENDERS": "four"}, `TCS_FEED_SENDERS "four"`},
		{"drain on aws", apply("--drain", "--backend", "aws", "--aws-home-region", "us-east-1"), nil, "apply --drain needs the embedded backend"},

		{"no regions", []string{"reconcile"}, nil, "reconcile needs --regions (or TCS_REGIONS)"},
		{"only commas", []string{"reconcile", "--regions", " , ,"}, nil, "reconcile needs --regions (or TCS_REGIONS)"},
		{"bad region", []string{"reconcile", "--regions", "us-east-1,Not A Region"}, nil, `--regions: "Not A Region"`},
		{"TCS_REGIONS", []string{"reconcile"}, map[string]string{"TCS_REGIONS": "UPPER"}, `--regions: "UPPER"`},
		{"interval", rec("--interval", "0s"), nil, "--interval 0s"},
		{"TCS_RECONCILE_INTERVAL", rec(), map[string]string{"TCS_RECONCILE_INTERVAL": "often"}, `TCS_RECONCILE_INTERVAL "often"`},
		{"settle", rec("--settle", "0s"), nil, "--settle 0s"},
		{"TCS_RECONCILE_SETTLE", rec(), map[string]string{"TCS_RECONCILE_SETTLE": "2"}, `TCS_RECONCILE_SETTLE "2"`},
		{"rescan", rec("--rescan", "-1h"), nil, "--rescan -1h0m0s"},
		{"TCS_RECONCILE_RESCAN", rec(), map[string]string{"TCS_RECONCILE_RESCAN": "hourly"}, `TCS_RECONCILE_RESCAN "hourly"`},
		{"repair rate", rec("--repair-rate", "0"), nil, "--repair-rate 0"},
		{"read rate", rec("--read-rate", "-1"), nil, "--read-rate -1"},

		{"backend", []string{"publish", "--backend", "cloud"}, nil, `--backend "cloud"`},
		{"TCS_BACKEND", []string{"reconcile", "--regions", "us-east-1"}, map[string]string{"TCS_BACKEND": "cloud"}, `--backend "cloud"`},
		{"no home region", apply("--backend", "aws"), nil, "--backend aws needs a home region"},
		{"TCS_POLL_INTERVAL", []string{"publish"}, map[string]string{"TCS_POLL_INTERVAL": "fast"}, `TCS_POLL_INTERVAL "fast"`},
		{"log level", []string{"publish", "--log-level", "loud"}, nil, `--log-level "loud"`},
		{"TCS_LOG_FORMAT", rec(), map[string]string{"TCS_LOG_FORMAT": "xml"}, `--log-format "xml"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfig(c.args, configtest.Env(c.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("streamer %v (env %v) = %+v, %v; want an error containing %q", c.args, c.env, got, err, c.want)
			}
			if got != nil {
				t.Errorf("streamer %v: a config (%+v) beside the error", c.args, got)
			}
		})
	}
}

// TestParseConfigVersionAndHelp: --version, before or after the command,
// asks for the version whatever else is wrong; help asks for the usage;
// -h after a command is the flag package's help.
func TestParseConfigVersionAndHelp(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args          []string
		version, help bool
	}{
		{[]string{"version"}, true, false},
		{[]string{"--version"}, true, false},
		{[]string{"-version"}, true, false},
		{[]string{"publish", "--version"}, true, false},
		{[]string{"apply", "--version"}, true, false},              // no --region
		{[]string{"reconcile", "--version", "extra"}, true, false}, // no --regions, a positional argument
		{[]string{"publish", "--version", "--ready-max-age", "0s", "--backend", "cloud"}, true, false},
		{[]string{"help"}, false, true},
		{[]string{"-h"}, false, true},
		{[]string{"--help"}, false, true},
	} {
		got, err := parseConfig(c.args, configtest.Env(map[string]string{"TCS_FEED_SENDERS": "four"}), &bytes.Buffer{})
		if err != nil {
			t.Errorf("streamer %v: %v", c.args, err)
			continue
		}
		if got.Version != c.version || got.Help != c.help {
			t.Errorf("streamer %v: Version %v, Help %v; want %v, %v", c.args, got.Version, got.Help, c.version, c.help)
		}
	}
	for _, cmd := range []string{"publish", "apply", "reconcile"} {
		var stderr bytes.Buffer
		_, err := parseConfig([]string{cmd, "-h"}, configtest.Env(nil), &stderr)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("streamer %s -h: %v, want flag.ErrHelp", cmd, err)
		}
		if !strings.Contains(stderr.String(), "-metrics-addr") {
			t.Errorf("streamer %s -h wrote %q, want the flags", cmd, stderr.String())
		}
	}
}

// TestParseConfigUsage: a missing or unknown command prints the usage to
// stderr.
func TestParseConfigUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"bogus"}} {
		var stderr bytes.Buffer
		if _, err := parseConfig(args, configtest.Env(nil), &stderr); err == nil {
			t.Errorf("streamer %v: no error", args)
		}
		if stderr.String() != usage+"\n" {
			t.Errorf("streamer %v wrote %q to stderr, want the usage", args, stderr.String())
		}
	}
}
