package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestBadOTELValue: an OTEL_* value the catalog cannot use stops the
// start, naming the variable.
func TestBadOTELValue(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}
	err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--metrics-addr", ""},
		func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Errorf("catalog with OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318 = %v, want an error naming the variable", err)
	}
}
