// Package lookupflags declares the caps and limits of a lookup server
// (package lookup's load shedding) as flags, once for every binary that
// runs one (tcs, tcs-dev).
package lookupflags

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// Flags are the parsed caps and limits.
type Flags struct {
	maxStreams                    uint
	connAge, connAgeGrace         time.Duration
	watchMax, watchPerCaller      int
	lookupRate, missRate, missPer float64
	negativeSize                  int
}

// Register declares the flags on fs.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.UintVar(&f.maxStreams, "max-concurrent-streams", lookup.DefaultMaxConcurrentStreams, "calls open at once on one client connection (HTTP/2 streams); more wait")
	fs.DurationVar(&f.connAge, "max-connection-age", lookup.DefaultMaxConnectionAge, "close a client connection gracefully (GOAWAY) after this long, so that clients spread over new servers (0: never)")
	fs.DurationVar(&f.connAgeGrace, "max-connection-age-grace", lookup.DefaultMaxConnectionAgeGrace, "then cut off the calls still running on it (Watch streams too: clients reconnect) after this long (0: never)")
	fs.IntVar(&f.watchMax, "watch-max-streams", lookup.DefaultMaxWatchStreams, "Watch streams open on this node; more are refused (RESOURCE_EXHAUSTED) (0: no cap)")
	fs.IntVar(&f.watchPerCaller, "watch-max-per-caller", lookup.DefaultMaxWatchPerCaller, "Watch streams one caller (authenticated identity, else IP address) may have open on this node (0: no cap)")
	fs.Float64Var(&f.lookupRate, "lookup-rate-per-caller", lookup.DefaultLookupRate, "hostnames a second one caller may look up (Lookup: 1, BatchLookup: its distinct hostnames), bursts of a second's worth; more are refused with a retry-after trailer (0: no limit)")
	fs.Float64Var(&f.missRate, "miss-rate", lookup.DefaultMissRate, "miss budget of the node: lookups a second of hostnames the cache holds no tenant for that may read the replica; over it they get the kept answer (stale) or are refused (0: no limit)")
	fs.Float64Var(&f.missPer, "miss-rate-per-caller", lookup.DefaultMissRatePerCaller, "miss budget of one caller, as --miss-rate (0: no limit)")
	fs.IntVar(&f.negativeSize, "negative-cache-size", cache.DefaultNegativeSize, "cache entries for hostnames without a tenant, kept apart from --cache-size's so that made-up hostnames never evict a tenant")
	return f
}

// off turns a flag's "0: none" into the Config's "negative: none".
func off[T int | float64](v T) T {
	if v <= 0 {
		return -1
	}
	return v
}

// offDuration turns a flag's "0: never" into ServeOptions' "negative:
// never".
func offDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// Validate reports a flag value that makes no sense.
func (f *Flags) Validate() error {
	if f.maxStreams == 0 {
		return errors.New("--max-concurrent-streams 0: a connection must carry at least one call")
	}
	if f.negativeSize <= 0 {
		return fmt.Errorf("--negative-cache-size %d: must be positive", f.negativeSize)
	}
	return nil
}

// Apply sets the caps and limits in cfg and opts.
func (f *Flags) Apply(cfg *lookup.Config, opts *lookup.ServeOptions) {
	cfg.MaxWatchStreams = off(f.watchMax)
	cfg.MaxWatchPerCaller = off(f.watchPerCaller)
	cfg.LookupRate = off(f.lookupRate)
	cfg.MissRate = off(f.missRate)
	cfg.MissRatePerCaller = off(f.missPer)
	cfg.Cache.NegativeSize = f.negativeSize
	opts.MaxConcurrentStreams = uint32(min(f.maxStreams, 1<<32-1))
	opts.Keepalive.MaxConnectionAge = offDuration(f.connAge)
	opts.Keepalive.MaxConnectionAgeGrace = offDuration(f.connAgeGrace)
}
