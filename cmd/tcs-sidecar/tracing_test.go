package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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

// TestTracingConsole: with OTEL_TRACES_EXPORTER=console the sidecar's HTTP
// lookup is a server span, the child of the caller's traceparent, and the
// lookup its cache missed is a client RPC span in the same trace; both are
// on stdout once the sidecar has stopped (spans are flushed on exit).
func TestTracingConsole(t *testing.T) {
	t.Parallel()
	sys := startSystem(t)
	sys.create(t, hooliDoc)
	env := map[string]string{"TCS_REGIONS": sys.regions, "TCS_LOOKUP_TOKEN": sysLookupToken, "OTEL_TRACES_EXPORTER": "console"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	ready, done := make(chan bound, 1), make(chan error, 1)
	go func() {
		done <- runWithReady(ctx, []string{"--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--drain-delay", "0s"}, func(k string) string { return env[k] }, stdout, stderr, ready)
	}()
	var b bound
	select {
	case b = <-ready:
	case err := <-done:
		t.Fatalf("tcs-sidecar did not start: %v\n%s", err, stderr)
	}
	sc := &running{bound: b, http: &http.Client{Timeout: 10 * time.Second}}
	sc.waitReady(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", "http://"+b.HTTP+"/v1/lookup/hooli.example.com", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// 404 if the regions have not applied the create yet: a lookup all the same.
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusNotFound {
		t.Errorf("lookup: %s", res.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tcs-sidecar: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tcs-sidecar did not stop")
	}
	out := stdout.String()
	for _, want := range []string{`"Name":"tcs-sidecar GET"`, `"Name":"tcs.v1.TenantContextService/Lookup"`} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %s:\n%s", want, out)
		}
	}
	// The server span's trace and parent, and the client span's trace.
	if n := strings.Count(out, traceID); n < 3 {
		t.Errorf("trace %s appears %d times on stdout, want the server and the client span in it:\n%s", traceID, n, out)
	}
}
