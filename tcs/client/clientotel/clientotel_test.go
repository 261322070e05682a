package clientotel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clientotel"
	"github.com/tcs-dev/tcs/tcs/client/clienttest"
)

// point is one data point, flattened for comparison.
type point struct {
	Attrs string
	Value float64 // sum, gauge value, or histogram sum
	Count uint64  // histogram count
}

// collect returns every data point the reader holds, by instrument name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string][]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string][]point{}
	attrs := func(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != clientotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, clientotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{Attrs: attrs(p.Attributes), Value: float64(p.Value)})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{Attrs: attrs(p.Attributes), Value: float64(p.Value)})
				}
			case metricdata.Histogram[float64]:
				if m.Unit != "s" {
					t.Errorf("%s: unit %q, want s", m.Name, m.Unit)
				}
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{Attrs: attrs(p.Attributes), Value: p.Sum, Count: p.Count})
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func newHooks(t *testing.T) (client.Hooks, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	h, err := clientotel.Hooks(mp.Meter(clientotel.ScopeName))
	if err != nil {
		t.Fatal(err)
	}
	return h, reader
}

// TestHooks calls every hook and checks what the SDK collects.
func TestHooks(t *testing.T) {
	t.Parallel()
	h, reader := newHooks(t)
	clienttest.CallEveryHook(h)

	want := map[string][]point{
		"tcs.client.cache.hits":    {{Value: 2}},
		"tcs.client.cache.misses":  {{Value: 1}},
		"tcs.client.stale_serves":  {{Value: 1}},
		"tcs.client.remembered":    {{Value: 1}},
		"tcs.client.invalidations": {{Value: 1}},
		"tcs.client.hedges":        {{Attrs: "tcs.region=eu-west-1", Value: 1}},
		"tcs.client.failovers":     {{Attrs: "tcs.region=eu-west-1", Value: 1}, {Attrs: "tcs.region=us-east-1", Value: 1}},
		"tcs.client.breaker_opens": {{Attrs: "tcs.region=us-east-1", Value: 1}},
		"tcs.client.behind":        {{Attrs: "tcs.region=ap-southeast-2", Value: 1}},
		"tcs.client.watch.up":      {{Attrs: "tcs.region=us-east-1", Value: 0}},
		"tcs.client.rpc.duration": {
			{Attrs: "rpc.grpc.status_code=0,tcs.region=eu-west-1", Value: 0.003, Count: 1},
			{Attrs: "rpc.grpc.status_code=14,tcs.region=eu-west-1", Value: 2, Count: 1},
		},
	}
	if diff := cmp.Diff(want, collect(t, reader), sortPoints); diff != "" {
		t.Errorf("collected (-want +got):\n%s", diff)
	}
}

var sortPoints = cmpopts.SortSlices(func(a, b point) bool { return a.Attrs < b.Attrs })

// TestHitAllocatesNothing: the hooks a cache hit calls keep it
// allocation-free with the SDK.
func TestHitAllocatesNothing(t *testing.T) {
	h, _ := newHooks(t)
	if n := testing.AllocsPerRun(1000, h.Hit); n != 0 {
		t.Errorf("Hit allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, h.Miss); n != 0 {
		t.Errorf("Miss allocates %v times", n)
	}
}

func TestNilMeter(t *testing.T) {
	t.Parallel()
	if _, err := clientotel.Hooks(nil); err == nil {
		t.Error("Hooks(nil): no error")
	}
}

// TestClient records a real Client's lookups.
func TestClient(t *testing.T) {
	t.Parallel()
	srv, err := clienttest.NewServer(&tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h, reader := newHooks(t)
	ctx := testwait.Context(t)
	c, err := srv.NewClient(ctx, client.WithMetrics(h))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if _, err := c.Lookup(ctx, "acme.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Lookup(ctx, "nobody.example.com"); !errors.Is(err, client.ErrNotFound) {
		t.Fatal(err)
	}
	got := collect(t, reader)
	// The stream came up before the region had named itself: its label is
	// the address.
	want := map[string][]point{
		"tcs.client.cache.hits":   {{Value: 2}},
		"tcs.client.cache.misses": {{Value: 2}},
		"tcs.client.watch.up":     {{Attrs: "tcs.region=" + srv.Addr(), Value: 1}},
	}
	for name, w := range want {
		if diff := cmp.Diff(w, got[name]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	var rpcs uint64
	for _, p := range got["tcs.client.rpc.duration"] {
		rpcs += p.Count
	}
	if rpcs != 2 {
		t.Errorf("%d RPCs recorded, want 2", rpcs)
	}
}
