// Package catalogflags declares the admin REST API's flags once for every
// binary that serves it (catalog, tcs-dev). It is apart from cmdutil so
// that binaries without the REST API (tcs, tcs-sidecar) do not link it.
package catalogflags

import (
	"flag"
	"fmt"

	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
)

// RateLimits are the admin REST API's request rates.
type RateLimits struct {
	// PerCaller and PerAddress are the requests a second one
	// authenticated caller, and one client address before or without
	// authentication, may send (--rate-limit, --address-rate-limit); 0
	// means no limit.
	PerCaller, PerAddress int
}

// Register declares --rate-limit (TCS_RATE_LIMIT) and
// --address-rate-limit (TCS_ADDRESS_RATE_LIMIT) on fs; a malformed
// environment value is added to envErrs.
func Register(fs *flag.FlagSet, getenv func(string) string, envErrs *[]error) *RateLimits {
	r := &RateLimits{}
	fs.IntVar(&r.PerCaller, "rate-limit", cmdutil.EnvInt(getenv, "TCS_RATE_LIMIT", httpapi.DefaultPerCaller, "a whole number of requests a second", envErrs), "requests a second one authenticated caller may send, in bursts of twice that; beyond it 429 with Retry-After; 0: no limit (env TCS_RATE_LIMIT)")
	fs.IntVar(&r.PerAddress, "address-rate-limit", cmdutil.EnvInt(getenv, "TCS_ADDRESS_RATE_LIMIT", httpapi.DefaultPerAddress, "a whole number of requests a second", envErrs), "requests a second one client address may send before or without authentication (open routes, failed credentials, unknown routes), in bursts of twice that; 0: no limit (env TCS_ADDRESS_RATE_LIMIT)")
	return r
}

// Check reports a negative rate, naming both flags.
func (r *RateLimits) Check() error {
	if r.PerCaller < 0 || r.PerAddress < 0 {
		return fmt.Errorf("--rate-limit %d, --address-rate-limit %d: want 0 (no limit) or more", r.PerCaller, r.PerAddress)
	}
	return nil
}

// Limits are the API's httpapi.Config.RateLimits.
func (r *RateLimits) Limits() *httpapi.RateLimits {
	return &httpapi.RateLimits{PerCaller: float64(r.PerCaller), PerAddress: float64(r.PerAddress)}
}
