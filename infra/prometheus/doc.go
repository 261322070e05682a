// Package prometheus holds TCS's Prometheus rules (rules/*.yml: the SLOs'
// recording rules and burn-rate alerts in tcs-slo.yml, the pipeline's,
// the degraded dependencies' and the operations' alerts in the others) and
// their unit tests (tests/*.yml, run with promtool). Its Go tests check the
// rules with promtool, run their unit tests, require every alert to have a
// unit test where it fires and one where it stays quiet, and tie the rules
// to the code: every metric a rule reads must be one the code defines, and
// every alert must have a runbook in docs/runbooks. TestStallAlertEndToEnd
// runs a real Prometheus server with the rules against the AWS topology on
// the emulators, kills an applier and checks that TCSReplicationStalled
// fires in time and resolves.
package prometheus
