package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// TestReconcilerRuns: tcs-dev runs the reconciler over every region, its
// metrics on the metrics port with component="reconcile", and a healthy
// system gives it nothing to resync.
func TestReconcilerRuns(t *testing.T) {
	t.Parallel()
	s := start(t, "--reconcile-interval", "50ms", "--reconcile-settle", "500ms")
	s.eventually(t, "acme.example.com", atVersion("acme", 1))
	// sum adds the values of name's series that carry labels.
	sum := func(name string, labels map[string]string) (float64, bool) {
		_, body := obstest.Get(t, s.ep.Metrics, "/metrics")
		total, found := 0.0, false
	next:
		for _, line := range strings.Split(body, "\n") {
			m := sampleLine.FindStringSubmatch(line)
			if m == nil || m[1] != name {
				continue
			}
			for k, v := range labels {
				if !strings.Contains(m[2], k+`="`+v+`"`) {
					continue next
				}
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			total += v
			found = true
		}
		return total, found
	}
	testwait.For(t, "three comparisons", func() bool {
		n, _ := sum("tcs_reconcile_cycles_total", map[string]string{"component": "reconcile", "outcome": "ok"})
		return n >= 3
	})
	for _, region := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		labels := map[string]string{"component": "reconcile", "region": region}
		if n, ok := sum("tcs_reconcile_buckets_compared_total", labels); !ok || n < 3*4096 {
			t.Errorf("tcs_reconcile_buckets_compared_total%v = %v (present %v), want at least three comparisons of 4096 buckets", labels, n, ok)
		}
		if n, ok := sum("tcs_reconcile_resyncs_total", labels); !ok || n != 0 {
			t.Errorf("tcs_reconcile_resyncs_total%v = %v (present %v), want 0 on a healthy system", labels, n, ok)
		}
	}
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
