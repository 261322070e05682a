package sidecar

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The operations the metrics count.
const (
	opLookup = iota
	opBatch
	numOps
)

var opNames = [numOps]string{"lookup", "batch"}

// observer counts one (api, op, outcome) and its latency; the children are
// made once so that a request looks nothing up.
type observer struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

func (o observer) observe(start time.Time) {
	if o.count == nil {
		return
	}
	o.count.Inc()
	o.latency.Observe(time.Since(start).Seconds())
}

type metrics struct {
	http, grpc [numOps][numOutcomes]observer
}

// newMetrics registers the sidecar's metrics with reg (nil: none):
//
//   - tcs_sidecar_requests_total{api,op,outcome}: api http or grpc, op
//     lookup or batch, outcome ok, not_found, invalid, unavailable,
//     version_not_reached, canceled or error;
//   - tcs_sidecar_request_duration_seconds{api,op}: the same requests'
//     time in the sidecar (the client's lookup included);
//   - tcs_sidecar_ready: 1 while Ready;
//   - tcs_sidecar_watching: 1 while the client's Watch stream is up.
func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{}
	if reg == nil {
		return m
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_sidecar_requests_total",
		Help: "Lookups the sidecar answered, by API (http, grpc), operation (lookup, batch) and outcome.",
	}, []string{"api", "op", "outcome"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tcs_sidecar_request_duration_seconds",
		Help:    "Time the sidecar took to answer a lookup, the client's lookup included, by API and operation.",
		Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 0.025, 0.1, 0.5, 1, 5},
	}, []string{"api", "op"})
	reg.MustRegister(requests, latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tcs_sidecar_ready", Help: "1 while the sidecar is ready (its client has been watching, and it is not draining)."},
			func() float64 { return bool01(s.Ready() == nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tcs_sidecar_watching", Help: "1 while the sidecar's tcs client has its invalidation stream (Watch) up."},
			func() float64 { return bool01(s.lk.Watching()) }))
	for api, table := range map[string]*[numOps][numOutcomes]observer{"http": &m.http, "grpc": &m.grpc} {
		for op := range numOps {
			lat := latency.WithLabelValues(api, opNames[op])
			for o := range numOutcomes {
				table[op][o] = observer{count: requests.WithLabelValues(api, opNames[op], outcomeNames[o]), latency: lat}
			}
		}
	}
	return m
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
