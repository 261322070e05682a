package cmdutil

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/tcs-dev/tcs/internal/telemetry"
)

// tracingFlushTimeout bounds the export of the spans still buffered when a
// binary stops.
const tracingFlushTimeout = 5 * time.Second

// StartTracing sets the binary's tracing up from the OTEL_* variables (see
// internal/telemetry: off unless an exporter is asked for), and returns it
// with the func that flushes and stops it, which the binary calls (defers)
// on its way out. A bad OTEL_* value is the error, naming the variable.
func StartTracing(ctx context.Context, name string, getenv func(string) string, stdout io.Writer, log *slog.Logger) (*telemetry.Tracing, func(), error) {
	tr, err := telemetry.FromEnv(ctx, name, getenv, stdout)
	if err != nil {
		return nil, nil, err
	}
	if tr.Enabled() {
		log.Info("tracing on (OpenTelemetry, configured by the OTEL_* environment variables)")
	}
	return tr, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingFlushTimeout)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			log.Warn("tracing: spans not exported at shutdown", "err", err)
		}
	}, nil
}
