package helm_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/tcs-dev/tcs/internal/telemetry"
)

// tcsContainers returns every container of the rendered Deployments that
// runs a TCS binary (all but the example's compute service), by
// "deployment/container".
func tcsContainers(o *objects) map[string]corev1.Container {
	m := map[string]corev1.Container{}
	for name, d := range o.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if name == "tcs-sidecar-example" && c.Name == "app" {
				continue
			}
			m[name+"/"+c.Name] = c
		}
	}
	return m
}

// TestTracingOffByDefault: without tracing.enabled no container gets an
// OTEL_ variable (the binaries' tracing stays off), not even with a
// collector named.
func TestTracingOffByDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		overrides map[string]any
	}{
		{"defaults", map[string]any{"sidecarExample": map[string]any{"enabled": true}}},
		{"endpoint but not enabled", map[string]any{
			"sidecarExample": map[string]any{"enabled": true},
			"tracing":        map[string]any{"endpoint": "http://otel-collector:4318"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := tcsContainers(renderWith(t, nil, tc.overrides))
			if len(cs) != 6 {
				t.Errorf("%d TCS containers %v, want 6 (catalog, publisher, reconciler, applier, lookup, sidecar)", len(cs), sortedKeys(cs))
			}
			for name, c := range cs {
				for _, e := range c.Env {
					if strings.HasPrefix(e.Name, "OTEL_") || e.Name == "TCS_POD_NAME" {
						t.Errorf("%s: %s with tracing off", name, e.Name)
					}
				}
			}
		})
	}
}

// TestTracingEnabled: with tracing.enabled every TCS container, in every
// region, exports to the collector under its component's service name,
// with its pod, namespace and region as resource attributes and the
// extra environment; and internal/telemetry, which the binaries start
// tracing with, accepts the environment as rendered.
func TestTracingEnabled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		tracing map[string]any
		want    map[string]string // the OTEL_ variables of every container but the service name and resource
	}{
		{"ratio sampler over http", map[string]any{"enabled": true, "endpoint": "http://otel-collector.observability.svc:4318",
			"resourceAttributes": "deployment.environment.name=prod",
			"extraEnv":           []any{map[string]any{"name": "OTEL_EXPORTER_OTLP_TIMEOUT", "value": "5000"}}},
			map[string]string{
				"OTEL_TRACES_EXPORTER":        "otlp",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability.svc:4318",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
				"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
				"OTEL_TRACES_SAMPLER_ARG":     "0.01",
				"OTEL_EXPORTER_OTLP_TIMEOUT":  "5000",
			}},
		{"every call over grpc", map[string]any{"enabled": true, "endpoint": "https://collector.example.com:4317",
			"protocol": "grpc", "sampler": "always_on"},
			map[string]string{
				"OTEL_TRACES_EXPORTER":        "otlp",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example.com:4317",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
				"OTEL_TRACES_SAMPLER":         "always_on",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := renderWith(t, []string{"testdata/multi-region.yaml"}, map[string]any{
				"tracing":        tc.tracing,
				"sidecarExample": map[string]any{"enabled": true},
			})
			cs := tcsContainers(o)
			if len(cs) != 10 {
				t.Errorf("%d TCS containers %v, want 10 (catalog, publisher, reconciler, sidecar, 3 regions × applier and lookup)", len(cs), sortedKeys(cs))
			}
			for name, c := range cs {
				env, err := containerEnv(c)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got := map[string]string{}
				for k, v := range env {
					if strings.HasPrefix(k, "OTEL_") && k != "OTEL_SERVICE_NAME" && k != "OTEL_RESOURCE_ATTRIBUTES" {
						got[k] = v
					}
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s: OTEL_ environment (-want +got):\n%s", name, diff)
				}

				deployment, _, _ := strings.Cut(name, "/")
				service, region := "tcs-sidecar", ""
				for _, comp := range []string{"catalog", "publisher", "reconciler"} {
					if deployment == "tcs-"+comp {
						service = "tcs-" + comp
					}
				}
				for _, r := range []string{"us-east-1", "us-west-2", "eu-west-1"} {
					switch deployment {
					case "tcs-apply-" + r:
						service, region = "tcs-applier", r
					case "tcs-lookup-" + r:
						service, region = "tcs-lookup", r
					}
				}
				if env["OTEL_SERVICE_NAME"] != service {
					t.Errorf("%s: OTEL_SERVICE_NAME %q, want %q", name, env["OTEL_SERVICE_NAME"], service)
				}
				wantAttrs := []string{"k8s.namespace.name=" + namespace, "k8s.pod.name=tcs-example-7d9f8b6c4-x2x5q"}
				if region != "" {
					wantAttrs = append(wantAttrs, "cloud.region="+region)
				}
				if ra, _ := tc.tracing["resourceAttributes"].(string); ra != "" {
					wantAttrs = append(wantAttrs, ra)
				}
				if got := env["OTEL_RESOURCE_ATTRIBUTES"]; got != strings.Join(wantAttrs, ",") {
					t.Errorf("%s: OTEL_RESOURCE_ATTRIBUTES %q, want %q", name, got, strings.Join(wantAttrs, ","))
				}

				tr, err := telemetry.FromEnv(context.Background(), "unnamed", func(k string) string { return env[k] }, io.Discard)
				if err != nil {
					t.Errorf("%s: the binaries refuse the rendered environment: %v", name, err)
					continue
				}
				if !tr.Enabled() {
					t.Errorf("%s: tracing is off with the rendered environment", name)
				}
				if err := tr.Shutdown(context.Background()); err != nil {
					t.Errorf("%s: shutdown: %v", name, err)
				}
			}
		})
	}
}

func TestTracingBadValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		tracing map[string]any
		want    string
	}{
		{"no endpoint", map[string]any{"enabled": true}, "tracing.endpoint is required with tracing.enabled"},
		{"endpoint without scheme", map[string]any{"enabled": true, "endpoint": "otel-collector:4318"}, "/tracing/endpoint"},
		{"unknown protocol", map[string]any{"enabled": true, "endpoint": "http://c:4318", "protocol": "http/json"}, "/tracing/protocol"},
		{"unknown sampler", map[string]any{"enabled": true, "endpoint": "http://c:4318", "sampler": "ratio"}, "/tracing/sampler"},
		{"ratio above 1", map[string]any{"enabled": true, "endpoint": "http://c:4318", "samplerArg": 5}, "/tracing/samplerArg"},
		{"attributes not key=value", map[string]any{"enabled": true, "endpoint": "http://c:4318", "resourceAttributes": "prod"}, "/tracing/resourceAttributes"},
		{"misspelt key", map[string]any{"enabled": true, "endpoint": "http://c:4318", "sampleArg": 0.5}, "sampleArg"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := renderChart(t, userValues(t, nil, map[string]any{"tracing": c.tracing}))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("render: %v, want an error containing %q", err, c.want)
			}
		})
	}
}
