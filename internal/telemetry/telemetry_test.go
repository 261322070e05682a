package telemetry_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/tcs-dev/tcs/internal/telemetry"
	"github.com/tcs-dev/tcs/internal/testwait"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func fromEnv(t *testing.T, kv map[string]string) (*telemetry.Tracing, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	tr, err := telemetry.FromEnv(context.Background(), "tcs-test", env(kv), &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, &out
}

// TestOffByDefault: without an exporter asked for, nothing is traced and
// the helpers add nothing.
func TestOffByDefault(t *testing.T) {
	t.Parallel()
	for name, kv := range map[string]map[string]string{
		"unset":                   {},
		"none":                    {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
		"service_name_only":       {"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"},
		"protocol_without_target": {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tr, _ := fromEnv(t, kv)
			if tr.Enabled() || tr.Provider() != nil || tr.GRPCServerOptions() != nil || tr.GRPCDialOptions() != nil || tr.ServerHandler() != nil {
				t.Errorf("tracing is on with %v", kv)
			}
			h := &okHandler{}
			if got := tr.HTTPHandler(h, "x"); got != http.Handler(h) {
				t.Errorf("HTTPHandler wrapped the handler (%T) with tracing off", got)
			}
		})
	}
	var off *telemetry.Tracing
	if off.Enabled() || off.Shutdown(context.Background()) != nil {
		t.Error("a nil *Tracing is not tracing off")
	}
}

type okHandler struct{}

func (*okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

// TestOn: an OTLP endpoint alone, or an exporter named, turns tracing on.
func TestOn(t *testing.T) {
	t.Parallel()
	for name, kv := range map[string]map[string]string{
		"endpoint":             {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
		"traces_endpoint_grpc": {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
		"otlp_default_target":  {"OTEL_TRACES_EXPORTER": "otlp"},
		"console":              {"OTEL_TRACES_EXPORTER": "Console"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tr, _ := fromEnv(t, kv)
			if !tr.Enabled() || tr.Provider() == nil || len(tr.GRPCServerOptions()) != 1 || len(tr.GRPCDialOptions()) != 1 {
				t.Errorf("tracing is off with %v", kv)
			}
		})
	}
}

// TestBadValues: a value FromEnv cannot use is an error naming the
// variable.
func TestBadValues(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		kv   map[string]string
		want string
	}{
		"exporter":            {map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"},
		"two_exporters":       {map[string]string{"OTEL_TRACES_EXPORTER": "otlp,console"}, "OTEL_TRACES_EXPORTER"},
		"sampler":             {map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"},
		"sampler_while_off":   {map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"},
		"sampler_arg_range":   {map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"},
		"sampler_arg_text":    {map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1%"}, "OTEL_TRACES_SAMPLER_ARG"},
		"protocol":            {map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		"traces_protocol":     {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		"endpoint_no_scheme":  {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		"traces_endpoint_ftp": {map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tr, err := telemetry.FromEnv(context.Background(), "tcs-test", env(tc.kv), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromEnv(%v) = %v, %v; want an error naming %s", tc.kv, tr, err, tc.want)
			}
		})
	}
}

// TestConsoleExportsOnShutdown: the console exporter writes the spans,
// with the service name, by Shutdown at the latest.
func TestConsoleExportsOnShutdown(t *testing.T) {
	t.Parallel()
	tr, out := fromEnv(t, map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "my-catalog"})
	_, sp := tr.Provider().Tracer("test").Start(context.Background(), "a-span")
	sp.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, `"a-span"`) || !strings.Contains(s, "my-catalog") {
		t.Errorf("console output lacks the span or the service name:\n%s", s)
	}
}

// TestSampler: OTEL_TRACES_SAMPLER(_ARG) decide which root spans are
// sampled; the parent's decision is followed by the parentbased samplers.
func TestSampler(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		kv   map[string]string
		want bool
	}{
		"default":        {map[string]string{}, true},
		"always_off":     {map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, false},
		"ratio_zero":     {map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, false},
		"ratio_one":      {map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, true},
		"ratio_no_arg":   {map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}, true},
		"parentbased_on": {map[string]string{"OTEL_TRACES_SAMPLER": "PARENTBASED_ALWAYS_ON"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.kv["OTEL_TRACES_EXPORTER"] = "console"
			tr, _ := fromEnv(t, tc.kv)
			_, sp := tr.Provider().Tracer("test").Start(context.Background(), "root")
			defer sp.End()
			if got := sp.SpanContext().IsSampled(); got != tc.want {
				t.Errorf("root span sampled = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestHTTPHandlerJoinsCallersTrace: the traced handler's span is the child
// of the caller's traceparent, named after the server and the method.
func TestHTTPHandlerJoinsCallersTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := telemetry.New(tp).HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }), "catalog")
	req := httptest.NewRequest("DELETE", "/v1/tenants/acme", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	if sp.Name() != "catalog DELETE" || sp.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sp.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("span %q with parent %s/%s; want catalog DELETE, the caller's child", sp.Name(), sp.Parent().TraceID(), sp.Parent().SpanID())
	}
}

// TestLeafServerFollowsCallersDecision: a leaf server traces calls that
// come without a trace or with a sampled one, and skips those whose
// caller's trace is not sampled.
func TestLeafServerFollowsCallersDecision(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	gs := grpc.NewServer(telemetry.New(tp).GRPCLeafServerOptions()...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	for _, tc := range []struct {
		traceparent string
		spans       int
	}{
		{"", 1},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 0},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", 1}, // malformed: the server decides
	} {
		before := len(rec.Ended())
		ctx := context.Background()
		if tc.traceparent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tc.traceparent)
		}
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		// The server span ends as the call ends, possibly just after the
		// client has its answer.
		testwait.Until(t, 5*time.Second, time.Millisecond, "the server span", func() (bool, string) {
			return len(rec.Ended())-before >= tc.spans, ""
		})
		if got := len(rec.Ended()) - before; got != tc.spans {
			t.Errorf("traceparent %q: %d server spans, want %d", tc.traceparent, got, tc.spans)
		}
	}
}
