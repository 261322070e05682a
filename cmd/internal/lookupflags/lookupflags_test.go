package lookupflags

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

func parse(t *testing.T, args ...string) *Flags {
	t.Helper()
	fs := flag.NewFlagSet("tcs", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantCfg  lookup.Config
		wantOpts lookup.ServeOptions
	}{{
		name: "defaults",
		wantCfg: lookup.Config{
			MaxWatchStreams: lookup.DefaultMaxWatchStreams, MaxWatchPerCaller: lookup.DefaultMaxWatchPerCaller,
			LookupRate: lookup.DefaultLookupRate, MissRate: lookup.DefaultMissRate, MissRatePerCaller: lookup.DefaultMissRatePerCaller,
			Cache: cache.Options{NegativeSize: cache.DefaultNegativeSize},
		},
		wantOpts: func() lookup.ServeOptions {
			var o lookup.ServeOptions
			o.MaxConcurrentStreams = lookup.DefaultMaxConcurrentStreams
			o.Keepalive.MaxConnectionAge, o.Keepalive.MaxConnectionAgeGrace = time.Hour, time.Minute
			return o
		}(),
	}, {
		name: "0 turns each off",
		args: []string{"--watch-max-streams=0", "--watch-max-per-caller=0", "--lookup-rate-per-caller=0", "--miss-rate=0",
			"--miss-rate-per-caller=0", "--max-connection-age=0", "--max-connection-age-grace=0", "--max-concurrent-streams=5", "--negative-cache-size=7"},
		wantCfg: lookup.Config{MaxWatchStreams: -1, MaxWatchPerCaller: -1, LookupRate: -1, MissRate: -1, MissRatePerCaller: -1,
			Cache: cache.Options{NegativeSize: 7}},
		wantOpts: func() lookup.ServeOptions {
			var o lookup.ServeOptions
			o.MaxConcurrentStreams = 5
			o.Keepalive.MaxConnectionAge, o.Keepalive.MaxConnectionAgeGrace = -1, -1
			return o
		}(),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var cfg lookup.Config
			var opts lookup.ServeOptions
			parse(t, tt.args...).Apply(&cfg, &opts)
			if diff := cmp.Diff(tt.wantCfg, cfg, cmpopts.IgnoreUnexported(lookup.Config{}, cache.Options{})); diff != "" {
				t.Errorf("Config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOpts, opts, cmpopts.IgnoreUnexported(lookup.ServeOptions{})); diff != "" {
				t.Errorf("ServeOptions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"--max-concurrent-streams=0": "--max-concurrent-streams 0",
		"--negative-cache-size=0":    "--negative-cache-size 0",
	} {
		err := parse(t, args).Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", args, err, want)
		}
	}
	if err := parse(t).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
