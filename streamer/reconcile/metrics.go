package reconcile

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	cycles        *prometheus.CounterVec
	lastCycle     prometheus.Gauge
	compared      *prometheus.CounterVec
	differing     *prometheus.GaugeVec
	found         *prometheus.CounterVec
	drifted       *prometheus.GaugeVec
	resynced      *prometheus.CounterVec
	repaired      *prometheus.CounterVec
	repairSeconds *prometheus.HistogramVec
	truthReads    prometheus.Counter
	regionReads   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, regions []string) metrics {
	m := metrics{
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_reconcile_cycles_total", Help: "Comparisons of every region with the source of truth, by outcome (ok, error).",
		}, []string{"outcome"}),
		lastCycle: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_reconcile_last_cycle_timestamp_seconds", Help: "When the last comparison that succeeded ended (Unix seconds).",
		}),
		compared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_reconcile_buckets_compared_total", Help: "Bucket digests of a region compared with the source of truth's.",
		}, []string{"region"}),
		differing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcs_reconcile_buckets_differing", Help: "Buckets whose digests differed from the source of truth's at the last comparison (changes in flight included).",
		}, []string{"region"}),
		found: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_reconcile_drift_found_total", Help: "Drifted tenants found, by kind of drift (as tcsctl verify names them); each tenant and kind once per episode.",
		}, []string{"region", "kind"}),
		drifted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcs_reconcile_drifted_tenants", Help: "Drifted tenants found and not yet seen repaired (unrepairable ones stay until fixed by hand).",
		}, []string{"region"}),
		resynced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_reconcile_resyncs_total", Help: "Drifted tenants re-emitted to the region through the catalog's resync.",
		}, []string{"region"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_reconcile_repaired_total", Help: "Drifted tenants seen repaired (a later comparison found them equal to the source of truth).",
		}, []string{"region"}),
		repairSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tcs_reconcile_repair_seconds", Help: "Time from finding a drifted tenant to seeing it repaired.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"region"}),
		truthReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcs_reconcile_truth_records_read_total", Help: "Tenants read from the source of truth by rescans.",
		}),
		regionReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcs_reconcile_replica_records_read_total", Help: "Documents and hostname records read from a region's replica by comparisons.",
		}, []string{"region"}),
	}
	for _, r := range regions {
		m.compared.WithLabelValues(r)
		m.differing.WithLabelValues(r)
		m.drifted.WithLabelValues(r)
		m.resynced.WithLabelValues(r)
		m.repaired.WithLabelValues(r)
		m.regionReads.WithLabelValues(r)
	}
	m.cycles.WithLabelValues("ok")
	m.cycles.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.cycles, m.lastCycle, m.compared, m.differing, m.found, m.drifted, m.resynced, m.repaired, m.repairSeconds, m.truthReads, m.regionReads)
	}
	return m
}
