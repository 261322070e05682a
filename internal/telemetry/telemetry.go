// Package telemetry sets up OpenTelemetry tracing for TCS's binaries from the
// standard OTEL_* environment variables, and hands the servers and clients
// the instrumentation that goes with it: an otelgrpc stats handler for gRPC
// servers off the lookup hot path, near-free interceptors for lookup nodes
// and connections (internal/spanctx), otelhttp for HTTP handlers, and the
// TracerProvider of the pipeline's own spans (publish, apply, invalidate;
// see docs/tracing.md).
//
// Tracing is off unless asked for: FromEnv exports nothing, and the helpers
// add no instrumentation (no stats handler, interceptor or wrapped
// handler), unless OTEL_TRACES_EXPORTER is otlp or console, or, with
// OTEL_TRACES_EXPORTER unset, OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. The variables it reads (every other OTEL_EXPORTER_OTLP_* variable,
// such as headers, timeouts and certificates, is read by the OTLP exporter
// itself):
//
//	OTEL_TRACES_EXPORTER                otlp | console | none (default: otlp if an endpoint is set, else none)
//	OTEL_EXPORTER_OTLP_ENDPOINT         base URL of the collector (http or https); /v1/traces is added for http/protobuf
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  full URL of the traces endpoint; overrides the base
//	OTEL_EXPORTER_OTLP_PROTOCOL         http/protobuf (default) | grpc
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL  the same, for traces; overrides the base
//	OTEL_SERVICE_NAME                   the service.name resource attribute (default: the binary's name)
//	OTEL_RESOURCE_ATTRIBUTES            further resource attributes (key=value,…)
//	OTEL_TRACES_SAMPLER                 always_on | always_off | traceidratio | parentbased_always_on (default)
//	                                    | parentbased_always_off | parentbased_traceidratio
//	OTEL_TRACES_SAMPLER_ARG             the ratio of the traceidratio samplers, 0 to 1 (default 1)
//
// A value it cannot use is an error naming the variable, so that a binary
// refuses to start rather than run without the traces it was asked for.
// Trace context crosses processes as W3C traceparent/tracestate (gRPC
// metadata, HTTP headers, and the pipeline's own messages through
// internal/spanctx).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/tcs-dev/tcs/internal/spanctx"
)

// Tracing is a binary's tracing: its TracerProvider and the instrumentation
// of its servers and connections. The zero value (and a nil *Tracing) is
// tracing off: no spans, and helpers that add nothing.
type Tracing struct {
	provider trace.TracerProvider
	shutdown func(context.Context) error
}

// New returns tracing into tp, for tests (an SDK TracerProvider with an
// in-memory exporter or span recorder). A nil tp is tracing off.
func New(tp trace.TracerProvider) *Tracing { return &Tracing{provider: tp} }

// FromEnv sets tracing up from the OTEL_* variables (read through getenv;
// see the package comment): off, unless an exporter is asked for. service
// is the service.name unless OTEL_SERVICE_NAME names another; console
// exports to stdout. The caller must call Shutdown before exiting, which
// flushes the spans not yet exported.
func FromEnv(ctx context.Context, service string, getenv func(string) string, stdout io.Writer) (*Tracing, error) {
	exporter, err := exporterName(getenv)
	if err != nil {
		return nil, err
	}
	sampler, err := samplerFromEnv(getenv) // checked even when off: a typo shows at once
	if err != nil {
		return nil, err
	}
	if exporter == "none" {
		return &Tracing{}, nil
	}
	var exp sdktrace.SpanExporter
	switch exporter {
	case "console":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
	case "otlp":
		exp, err = otlpExporter(ctx, getenv)
	}
	if err != nil {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: %w", exporter, err)
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		service = name
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", service)))
	if err != nil {
		// WithFromEnv fails on a malformed OTEL_RESOURCE_ATTRIBUTES; the
		// resource it returns still has the rest.
		if res == nil || errors.Is(err, resource.ErrPartialResource) {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
		}
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler), sdktrace.WithResource(res))
	return &Tracing{provider: tp, shutdown: tp.Shutdown}, nil
}

// exporterName returns the exporter asked for: otlp, console or none.
func exporterName(getenv func(string) string) (string, error) {
	v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	switch strings.ToLower(v) {
	case "":
		if getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
			return "otlp", nil
		}
		return "none", nil
	case "otlp", "console", "none":
		return strings.ToLower(v), nil
	}
	return "", fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none (one exporter)", v)
}

// samplerFromEnv returns the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG ask for; parentbased_always_on by default.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1 for sampler %s", arg, name)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
}

// otlpExporter returns the OTLP exporter of the protocol and endpoint the
// environment names (the exporter reads its other OTEL_EXPORTER_OTLP_*
// variables itself).
func otlpExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	protoVar, protocol := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protoVar, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	// A traces endpoint is used as it is; the base endpoint gets the
	// signal's path (http/protobuf only: gRPC has no path).
	endVar, endpoint, full := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), true
	if endpoint == "" {
		endVar, endpoint, full = "OTEL_EXPORTER_OTLP_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), false
	}
	var u *url.URL
	if endpoint != "" {
		var err error
		u, err = url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s=%q: want an http or https URL, such as http://localhost:4318", endVar, endpoint)
		}
	}
	switch protocol {
	case "", "http/protobuf":
		var opts []otlptracehttp.Option
		if u != nil {
			if !full {
				u = u.JoinPath("v1", "traces")
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		}
		return otlptracehttp.New(ctx, opts...)
	case "grpc":
		var opts []otlptracegrpc.Option
		if u != nil {
			opts = append(opts, otlptracegrpc.WithEndpointURL(u.String()))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	return nil, fmt.Errorf("%s=%q: want http/protobuf or grpc", protoVar, protocol)
}

// Enabled reports whether t makes spans.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// Provider returns t's TracerProvider, nil when tracing is off (the
// pipeline's configs take nil as no spans).
func (t *Tracing) Provider() trace.TracerProvider {
	if !t.Enabled() {
		return nil
	}
	return t.provider
}

// propagator is how trace context crosses processes: W3C Trace Context and
// Baggage.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// GRPCServerOptions returns the options that trace a gRPC server's calls
// (an otelgrpc stats handler: a server span per call, the child of the
// caller's), for servers off the lookup hot path (tcs-sidecar's gRPC API):
// a stats handler costs every call grpc-go's stats events, sampled or not
// (see GRPCLeafServerOptions); none when tracing is off.
func (t *Tracing) GRPCServerOptions() []grpc.ServerOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(t.ServerHandler())}
}

// GRPCLeafServerOptions traces a gRPC server whose calls make no traced
// calls of their own (a tcs lookup node: its handlers read the replica and
// the cache) without a stats handler: interceptors
// (spanctx.UnaryServerInterceptor, StreamServerInterceptor) make a server
// span, named and attributed as otelgrpc's, for a call whose caller's
// traceparent says sampled (its child) or, with none, that the sampler
// samples as a root, and cost every other call next to nothing (a stats
// handler alone makes grpc-go do some 45 allocations more per call: see
// docs/tracing.md). None when tracing is off.
func (t *Tracing) GRPCLeafServerOptions() []grpc.ServerOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(spanctx.UnaryServerInterceptor(t.provider)),
		grpc.ChainStreamInterceptor(spanctx.StreamServerInterceptor(t.provider))}
}

// ServerHandler returns the otelgrpc stats handler of gRPC servers; nil when
// tracing is off.
func (t *Tracing) ServerHandler() stats.Handler {
	if !t.Enabled() {
		return nil
	}
	return otelgrpc.NewServerHandler(t.grpcOptions()...)
}

// GRPCDialOptions returns the options that trace a gRPC connection's unary
// calls without a stats handler (spanctx.UnaryClientInterceptor): a call
// under a sampled span gets a client span, its child, whose context it
// sends in the call's metadata; any other call goes straight through,
// sending no trace context. Streaming calls are not traced. None when
// tracing is off.
func (t *Tracing) GRPCDialOptions() []grpc.DialOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(spanctx.UnaryClientInterceptor(t.provider))}
}

func (t *Tracing) grpcOptions() []otelgrpc.Option {
	// The RPC metrics otelgrpc can record are left out (a no-op meter):
	// the servers' Prometheus metrics already count calls.
	return []otelgrpc.Option{otelgrpc.WithTracerProvider(t.provider), otelgrpc.WithPropagators(propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider())}
}

// HTTPHandler returns h traced (otelhttp: a server span per request, named
// after server and the method, the child of the caller's span); h itself
// when tracing is off.
func (t *Tracing) HTTPHandler(h http.Handler, server string) http.Handler {
	if !t.Enabled() {
		return h
	}
	return otelhttp.NewHandler(h, server, otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(propagator),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(operation string, r *http.Request) string { return operation + " " + r.Method }))
}

// Shutdown exports the spans not yet exported and stops the exporter; it
// does nothing when tracing is off or was not set up by FromEnv.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}
