// Package prometheus holds TCS's Prometheus alerting rules (rules/*.yml)
// and their unit tests (tests/*.yml, run with promtool). Its Go tests check
// the rules with promtool, run their unit tests, and tie them to the code:
// every metric a rule reads must be one the code defines, and every alert
// must have a runbook in docs/runbooks.
package prometheus
