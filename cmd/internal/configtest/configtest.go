// Package configtest holds what the binaries' parseConfig tests share: an
// environment from a map, the shared option groups as parsed from no flag
// and no environment, and the go-cmp options that compare configs by what
// they were told.
package configtest

import (
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/lookupflags"
	"github.com/tcs-dev/tcs/internal/awsclient"
	"github.com/tcs-dev/tcs/internal/awsnames"
)

// Env is a getenv reading m (nil: an empty environment).
func Env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// DefaultBackend is backend.Register's group with no flag and no
// environment: the embedded backend under ./data, the default AWS names,
// poll interval and timeouts.
func DefaultBackend() *backend.Config {
	return &backend.Config{
		Backend:      backend.Embedded,
		DataDir:      "data",
		Names:        awsnames.Names{Prefix: awsnames.DefaultPrefix},
		PollInterval: backend.DefaultPollInterval,
		Timeouts: awsclient.Timeouts{Operation: awsclient.DefaultOperation, Connect: awsclient.DefaultConnect,
			ResponseHeader: awsclient.DefaultResponseHeader},
	}
}

// DefaultObs is cmdutil.RegisterFlags' group with no flag and no
// environment, for a binary whose default metrics address is metricsAddr.
func DefaultObs(metricsAddr string) *cmdutil.Flags {
	return &cmdutil.Flags{LogLevel: "info", LogFormat: "text", MetricsAddr: metricsAddr}
}

// Opts compare configs by their exported fields: the option groups'
// unexported state (the flag set they were declared on, a lock) is theirs.
var Opts = cmp.Options{cmpopts.IgnoreUnexported(backend.Config{}, cmdutil.Flags{}, lookupflags.Flags{})}
