// Package prometheus holds TCS's Prometheus alerting rules (rules/*.yml)
// and their unit tests (tests/*.yml, run with promtool). Its Go tests check
// the rules with promtool, run their unit tests, and tie them to the code:
// every metric a rule reads must be one the code defines, and every alert
// must have a runbook in docs/runbooks. TestStallAlertEndToEnd runs a real
// Prometheus server with the rules against the AWS topology on the
// emulators, kills an applier and checks that TCSReplicationStalled fires
// in time and resolves.
package prometheus
