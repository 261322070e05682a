package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestBadOTELValue: an OTEL_* value the sidecar cannot use stops the start,
// naming the variable.
func TestBadOTELValue(t *testing.T) {
	t.Parallel()
	env := map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}
	err := run(context.Background(), []string{"--http-addr", "127.0.0.1:0"},
		func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
		t.Errorf("tcs-sidecar with OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json = %v, want an error naming the variable", err)
	}
}
