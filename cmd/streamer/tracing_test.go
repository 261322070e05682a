package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBadOTELValue: an OTEL_* value the streamer cannot use stops the
// start, naming the variable.
func TestBadOTELValue(t *testing.T) {
	t.Parallel()
	env := map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}
	err := run(context.Background(), []string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--metrics-addr", ""},
		func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Errorf("streamer apply with OTEL_TRACES_EXPORTER=zipkin = %v, want an error naming the variable", err)
	}
}
