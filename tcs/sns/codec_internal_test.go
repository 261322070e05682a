package sns

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// TestMessageCarriesTraceContext: an invalidation's trace context crosses
// SNS/SQS; one without (and a message from a broadcaster that predates
// it) decodes with none, and an untraced message has no trace fields.
func TestMessageCarriesTraceContext(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	traced := tcs.Invalidation{TenantID: "acme", Version: 4, Hostnames: []string{"acme.example.com"}, CommittedAt: at,
		Trace: tenant.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "v=1"}}
	untraced := traced
	untraced.Trace = tenant.TraceContext{}
	for name, inv := range map[string]tcs.Invalidation{"traced": traced, "untraced": untraced} {
		body, err := encode(inv)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(body), "traceparent"); got != (name == "traced") {
			t.Errorf("%s: body %s", name, body)
		}
		got, err := decode(string(body))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(inv, got); diff != "" {
			t.Errorf("%s: decoded (-want +got):\n%s", name, diff)
		}
	}
	old := `{"kind":"invalidation","tenant_id":"acme","version":4,"hostnames":["acme.example.com"],"committed_at":"2026-01-02T03:04:05Z"}`
	got, err := decode(old)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(untraced, got); diff != "" {
		t.Errorf("old message decoded (-want +got):\n%s", diff)
	}
}
