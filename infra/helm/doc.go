// Package helm holds the tests of TCS's Helm chart (tcs/, rendered with the
// Helm Go module, helm.sh/helm/v4). With no cluster to install it in, the
// tests lint the chart and render it with the default values and with the
// values files of testdata/, then hold every rendered object to what a
// cluster would: each decodes strictly (unknown or duplicate fields are
// errors) into its k8s.io/api type, or for the Prometheus Operator's
// ServiceMonitor and PrometheusRule into local structs of the CRDs' fields.
// They check what a wrong chart would get wrong without a type error: every
// container's arguments are accepted by the binary they run (built from
// ./cmd and run with them and -h), probes and Services name ports that
// exist, selectors select, pods run non-root on a read-only root with no
// privilege escalation and no capabilities, GOMEMLIMIT follows the memory
// limit, and the PrometheusRule holds exactly the groups of
// infra/prometheus/rules (of which the chart keeps a copy, checked here
// byte for byte).
package helm
