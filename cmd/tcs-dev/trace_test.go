package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcs-dev/tcs/internal/telemetry"
	"github.com/tcs-dev/tcs/internal/testwait"
)

var traceRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}

// TestTraceWriteToEveryRegion follows one REST write through the whole
// embedded system in one trace: the caller's span → the catalog's HTTP
// server span (otelhttp) → publish (the child of the write's span, whose
// context the outbox entry carried) → apply in each of the three regions
// (children of publish, through the stream event) → invalidate on each
// region's lookup server (children of their region's apply, through the
// invalidation feed).
func TestTraceWriteToEveryRegion(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s := startTraced(t, nil, telemetry.New(tp), "--seed=false")
	traceWriteToEveryRegion(t, s, tp, rec)
}

// TestTraceWriteToEveryRegionAWS is TestTraceWriteToEveryRegion on the AWS
// family: the trace context goes through the DynamoDB outbox, Kinesis and
// SNS/SQS.
func TestTraceWriteToEveryRegionAWS(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s, _ := startAWSTraced(t, telemetry.New(tp), "--seed=false")
	traceWriteToEveryRegion(t, s, tp, rec)
}

func traceWriteToEveryRegion(t *testing.T, s *system, tp trace.TracerProvider, rec *tracetest.SpanRecorder) {
	if code, _, body := s.rest(t, "POST", "/v1/tenants", adm, `{"id":"traced","hostnames":["traced.example.com"]}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	// Every region caches the tenant, so that the update must invalidate.
	s.eventually(t, "traced.example.com", atVersion("traced", 1))

	// The caller's span: the trace's root.
	ctx, root := tp.Tracer("test").Start(context.Background(), "caller")
	hdr := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, hdr)
	code, _, body := s.rest(t, "PATCH", "/v1/tenants/traced", adm, `{"labels":{"tier":"gold"}}`,
		"Content-Type", "application/merge-patch+json", "If-Match", `"1"`, "traceparent", hdr["traceparent"])
	root.End()
	if code != http.StatusOK {
		t.Fatalf("update: %d %s", code, body)
	}
	s.eventually(t, "traced.example.com", atVersion("traced", 2))
	id := root.SpanContext().TraceID()

	// One publish, an apply per region and an invalidate per region's
	// lookup server, all in the caller's trace.
	var spans []sdktrace.ReadOnlySpan
	testwait.Until(t, 15*time.Second, 10*time.Millisecond, "the update's publish, apply and invalidate spans", func() (bool, string) {
		spans = spans[:0]
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID() == id {
				spans = append(spans, sp)
			}
		}
		n := map[string]int{}
		for _, sp := range spans {
			n[sp.Name()]++
		}
		return n["publish"] == 1 && n["apply"] == len(traceRegions) && n["invalidate"] == len(traceRegions), describe(spans)
	})

	byName := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, sp := range spans {
			if sp.Name() == name {
				out = append(out, sp)
			}
		}
		return out
	}
	server := byName("catalog PATCH")
	if len(server) != 1 || server[0].Parent().SpanID() != root.SpanContext().SpanID() || server[0].SpanKind() != trace.SpanKindServer {
		t.Fatalf("catalog server spans %s: want one, the caller's child", describe(server))
	}
	publish := byName("publish")[0]
	if publish.Parent().SpanID() != server[0].SpanContext().SpanID() {
		t.Errorf("publish's parent is %s, want the catalog's span %s", publish.Parent().SpanID(), server[0].SpanContext().SpanID())
	}
	if got := attr(publish, "tcs.tenant.id"); got != "traced" {
		t.Errorf("publish tcs.tenant.id = %q, want traced", got)
	}
	applies := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range byName("apply") {
		applies[attr(sp, "tcs.region")] = sp
		if sp.Parent().SpanID() != publish.SpanContext().SpanID() {
			t.Errorf("apply in %s: parent %s, want publish %s", attr(sp, "tcs.region"), sp.Parent().SpanID(), publish.SpanContext().SpanID())
		}
		if attr(sp, "tcs.tenant.version") != "2" {
			t.Errorf("apply in %s: version %s, want 2", attr(sp, "tcs.region"), attr(sp, "tcs.tenant.version"))
		}
	}
	for _, inv := range byName("invalidate") {
		region := attr(inv, "tcs.region")
		apply, ok := applies[region]
		if !ok || inv.Parent().SpanID() != apply.SpanContext().SpanID() {
			t.Errorf("invalidate in %s: parent %s, want that region's apply", region, inv.Parent().SpanID())
		}
	}
	for _, r := range traceRegions {
		if _, ok := applies[r]; !ok {
			t.Errorf("no apply span in %s; got %s", r, describe(byName("apply")))
		}
	}
}

func attr(sp sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func describe(spans []sdktrace.ReadOnlySpan) string {
	var out []string
	for _, sp := range spans {
		out = append(out, fmt.Sprintf("%s(%s)", sp.Name(), attr(sp, "tcs.region")))
	}
	slices.Sort(out)
	return "[" + strings.Join(out, " ") + "]"
}
