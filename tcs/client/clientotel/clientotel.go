// Package clientotel connects a tcs/client Client to OpenTelemetry. It counts
// what the client does in metrics (Hooks makes the instruments on a Meter
// and returns the client.Hooks that record into them), and traces its RPCs
// (WithTracing).
//
//	hooks, err := clientotel.Hooks(provider.Meter(clientotel.ScopeName))
//	c, err := client.New(ctx, client.WithRegions(...), client.WithMetrics(hooks))
//
// WithTracing traces the client's RPCs (client spans, like otelgrpc's):
//
//	c, err := client.New(ctx, client.WithRegions(...), clientotel.WithTracing(tracerProvider))
//
// It is a package of its own so that a program that does not use
// OpenTelemetry does not link it through tcs/client. The instruments (one
// Hooks field each; see client.Hooks for when each is called):
//
//	tcs.client.cache.hits       counter                  Hit
//	tcs.client.cache.misses     counter                  Miss
//	tcs.client.stale_serves     counter                  StaleServe
//	tcs.client.remembered       counter                  Remembered
//	tcs.client.invalidations    counter                  Invalidation
//	tcs.client.hedges           counter {tcs.region}     Hedge
//	tcs.client.failovers        counter {tcs.region}     Failover
//	tcs.client.breaker_opens    counter {tcs.region}     BreakerOpen
//	tcs.client.behind           counter {tcs.region}     Behind
//	tcs.client.rpc.duration     histogram, s {tcs.region, rpc.grpc.status_code}   RPC
//	tcs.client.watch.up         gauge {tcs.region}       WatchState: 1 while the Watch stream is up, else 0 (one point: the region of the last stream)
//
// tcs.region is the region's label as the client knows it (its name once it
// has answered, its address before); rpc.grpc.status_code is the gRPC
// status code number (0 on success), as in the OpenTelemetry semantic
// conventions for RPC. The hit and miss hooks record without allocating
// (with the OpenTelemetry SDK), so cache hits stay allocation-free.
package clientotel

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/tcs/client"
)

// ScopeName is the instrumentation scope to get the Meter for (a
// MeterProvider's Meter(ScopeName)).
const ScopeName = "github.com/tcs-dev/tcs/tcs/client"

// RPCBuckets are the bucket boundaries of tcs.client.rpc.duration, in
// seconds: 0.5 ms to about 1 s, doubling (a lookup is bounded by the
// client's lookup timeout, 1 s by default).
var RPCBuckets = []float64{0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024}

// Attribute keys.
const (
	RegionKey = attribute.Key("tcs.region")
	CodeKey   = attribute.Key("rpc.grpc.status_code")
)

// Hooks makes the instruments on meter and returns the hooks that record
// into them. Give each Client its own (their counts would add up, and the
// watch gauge follows one stream).
func Hooks(meter metric.Meter) (client.Hooks, error) {
	if meter == nil {
		return client.Hooks{}, errors.New("clientotel: nil meter")
	}
	r := &recorder{attrs: map[attrKey]metric.MeasurementOption{}}
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{event}"))
		errs = append(errs, err)
		return c
	}
	hits := counter("tcs.client.cache.hits", "Lookups answered from the client's cache, fresh (negative answers included).")
	misses := counter("tcs.client.cache.misses", "Lookups that asked a region.")
	stale := counter("tcs.client.stale_serves", "Lookups that every region failed, answered with an expired cached answer within max-stale.")
	remembered := counter("tcs.client.remembered", "Lookups answered with the newest version of the tenant returned before, the regions that answered being behind it.")
	invalidations := counter("tcs.client.invalidations", "Invalidations received over the Watch stream.")
	hedges := counter("tcs.client.hedges", "Lookups also sent to the next region because the region had not answered within the hedge delay.")
	failovers := counter("tcs.client.failovers", "Lookups that moved past the region because it failed or its circuit breaker was open.")
	breakerOpens := counter("tcs.client.breaker_opens", "Times the region's circuit breaker opened.")
	behind := counter("tcs.client.behind", "Answers of the region set aside because they were older than a version the client had returned or was asked for.")
	rpc, err := meter.Float64Histogram("tcs.client.rpc.duration",
		metric.WithDescription("Lookup RPCs to the region, by gRPC status code."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(RPCBuckets...))
	errs = append(errs, err)
	_, err = meter.Int64ObservableGauge("tcs.client.watch.up",
		metric.WithDescription("1 while the client's Watch stream on the region is up, else 0."),
		metric.WithInt64Callback(r.observeWatch))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return client.Hooks{}, err
	}

	bg := context.Background()
	inc := func(c metric.Int64Counter) func() { return func() { c.Add(bg, 1) } }
	incRegion := func(c metric.Int64Counter) func(string) {
		return func(region string) { c.Add(bg, 1, r.attr(region, noCode)) }
	}
	return client.Hooks{
		Hit:          inc(hits),
		Miss:         inc(misses),
		StaleServe:   inc(stale),
		Remembered:   inc(remembered),
		Invalidation: inc(invalidations),
		Hedge:        incRegion(hedges),
		Failover:     incRegion(failovers),
		BreakerOpen:  incRegion(breakerOpens),
		Behind:       incRegion(behind),
		RPC: func(region string, d time.Duration, err error) {
			rpc.Record(bg, d.Seconds(), r.attr(region, status.Code(err)))
		},
		WatchState: r.setWatch,
	}, nil
}

// noCode: an attribute set without a status code.
const noCode = codes.Code(math.MaxUint32)

// attrKey names an attribute set: a region, and a status code (or noCode).
type attrKey struct {
	region string
	code   codes.Code
}

// recorder keeps the attribute sets made so far (a region's are made once)
// and the state of the watch stream.
type recorder struct {
	mu      sync.RWMutex
	attrs   map[attrKey]metric.MeasurementOption
	watchAt string // region of the last stream ("": none yet)
	watchUp bool
}

// attr returns the measurement option of region and code (or noCode).
func (r *recorder) attr(region string, code codes.Code) metric.MeasurementOption {
	k := attrKey{region, code}
	r.mu.RLock()
	o, ok := r.attrs[k]
	r.mu.RUnlock()
	if ok {
		return o
	}
	kvs := []attribute.KeyValue{RegionKey.String(region)}
	if code != noCode {
		kvs = append(kvs, CodeKey.Int(int(code)))
	}
	o = metric.WithAttributeSet(attribute.NewSet(kvs...))
	r.mu.Lock()
	r.attrs[k] = o
	r.mu.Unlock()
	return o
}

func (r *recorder) setWatch(region string, up bool) {
	r.mu.Lock()
	r.watchAt, r.watchUp = region, up
	r.mu.Unlock()
}

func (r *recorder) observeWatch(_ context.Context, o metric.Int64Observer) error {
	r.mu.RLock()
	region, up := r.watchAt, r.watchUp
	r.mu.RUnlock()
	if region == "" {
		return nil
	}
	v := int64(0)
	if up {
		v = 1
	}
	o.Observe(v, metric.WithAttributeSet(attribute.NewSet(RegionKey.String(region))))
	return nil
}
