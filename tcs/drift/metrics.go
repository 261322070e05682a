package drift

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WriteTextfile writes what a verify run found to path in Prometheus' text
// format, for the node exporter's textfile collector (a cron job or a
// Kubernetes CronJob runs `tcsctl verify --metrics-file`). The file is
// replaced atomically. rep is nil when the run failed before it could
// judge: the file then says so (tcs_verify_completed 0) and carries no
// findings, so an old clean result cannot hide a verify that stopped
// working. The alerts TCSRegionsDiverged and TCSVerifyNotRunning read it.
func WriteTextfile(path string, rep *Report, finished time.Time) error {
	reg := prometheus.NewRegistry()
	completed := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_verify_completed",
		Help: "1 if the last tcsctl verify compared every region it was asked to, 0 if it failed before judging (see its output).",
	})
	last := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_verify_last_run_timestamp_seconds",
		Help: "When the last tcsctl verify ended (Unix seconds), completed or not.",
	})
	findings := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcs_verify_findings",
		Help: "Drift confirmed by the last completed tcsctl verify (findings that survived its re-checks), by region; 0 for a region that agrees with the source of truth. The command's output lists them.",
	}, []string{"region"})
	unsettled := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_verify_unsettled_tenants",
		Help: "Tenants the last tcsctl verify could not judge because their version kept changing through every re-check.",
	})
	reg.MustRegister(completed, last)
	last.Set(float64(finished.UnixNano()) / 1e9)
	if rep != nil {
		reg.MustRegister(findings, unsettled)
		completed.Set(1)
		unsettled.Set(float64(len(rep.Unsettled)))
		for _, r := range rep.Regions {
			findings.WithLabelValues(r).Set(0)
		}
		for _, f := range rep.Findings {
			findings.WithLabelValues(f.Region).Inc()
		}
	}
	return prometheus.WriteToTextfile(path, reg)
}
