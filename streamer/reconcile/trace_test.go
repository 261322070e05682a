package reconcile_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/spanctx"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer/reconcile"
)

// tracingSource passes Export and Resync to the catalog, recording the
// trace context each Resync is called under (what the catalog stores with
// the entries it appends: catalog/storetest ResyncTraceContext).
type tracingSource struct {
	reconcile.Source
	mu     sync.Mutex
	traces []tenant.TraceContext
}

func (s *tracingSource) Resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (catalog.ResyncResult, error) {
	s.mu.Lock()
	s.traces = append(s.traces, spanctx.Capture(ctx))
	s.mu.Unlock()
	return s.Source.Resync(ctx, reqs, regions)
}

func (s *tracingSource) calls() []tenant.TraceContext {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.traces)
}

// TestRepairIsTraced: with a TracerProvider, each resync of a repair runs
// under a "reconcile resync" span naming its regions and tenant count, and
// the catalog's Resync is called under it, so the resync events carry its
// context; without one, Resync is called under no span.
func TestRepairIsTraced(t *testing.T) {
	t.Parallel()
	for _, traced := range []bool{true, false} {
		name := map[bool]string{true: "traced", false: "untraced"}[traced]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := startSystem(t, "us-east-1")
			if _, err := s.src.Create(context.Background(), storetest.NewTenant("aaa"), "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.src.Create(context.Background(), storetest.NewTenant("zzz"), "test"); err != nil {
				t.Fatal(err)
			}
			s.waitConverged(t, 10*time.Second)

			rec := tracetest.NewSpanRecorder()
			src := &tracingSource{Source: s.src}
			cfg := reconcile.Config{Source: src, Stream: s.stream,
				Regions:  []reconcile.Region{{Name: "us-east-1", Scanner: s.replicas["us-east-1"]}},
				Interval: testInterval, Settle: testSettle, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
			if traced {
				cfg.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			}
			r, err := reconcile.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			run(t, r)
			s.replicas["us-east-1"].Edit(t, func(d, _ *bbolt.Bucket) error { return d.Delete([]byte("aaa")) })
			testwait.Until(t, 10*time.Second, 10*time.Millisecond, "us-east-1 repaired", func() (bool, string) { return s.converged(t, "us-east-1") })

			calls := src.calls()
			if len(calls) == 0 {
				t.Fatal("repaired without a Resync")
			}
			if !traced {
				for _, tc := range calls {
					if !tc.IsZero() {
						t.Errorf("untraced reconciler called Resync under %+v", tc)
					}
				}
				return
			}
			spans := map[tenant.TraceContext]sdktrace.ReadOnlySpan{}
			for _, sp := range rec.Ended() {
				if sp.Name() == "reconcile resync" {
					spans[spanctx.Of(sp.SpanContext())] = sp
				}
			}
			for _, tc := range calls {
				sp, ok := spans[tc]
				if !ok {
					t.Errorf("Resync called under %+v, not a reconcile resync span (have %d)", tc, len(spans))
					continue
				}
				attrs := attribute.NewSet(sp.Attributes()...)
				if v, _ := attrs.Value("tcs.regions"); !slices.Equal(v.AsStringSlice(), []string{"us-east-1"}) {
					t.Errorf("span tcs.regions %v, want [us-east-1]", v.AsStringSlice())
				}
				if v, _ := attrs.Value("tcs.tenants"); v.AsInt64() != 1 {
					t.Errorf("span tcs.tenants %d, want 1 (aaa)", v.AsInt64())
				}
			}
		})
	}
}
