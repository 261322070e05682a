package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestBadOTELValue: an OTEL_* value tcs cannot use stops the start, naming
// the variable.
func TestBadOTELValue(t *testing.T) {
	t.Parallel()
	env := map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "5%"}
	err := run(context.Background(), []string{"--region", "eu-west-1", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--metrics-addr", ""},
		func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER_ARG") {
		t.Errorf("tcs with OTEL_TRACES_SAMPLER_ARG=5%% = %v, want an error naming the variable", err)
	}
}
