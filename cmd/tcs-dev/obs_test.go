package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	obstest.CheckVersion(t, "tcs-dev", stdout.String())
}

// One metrics port serves the whole system; each part's metrics carry its
// component, the lookup servers' and appliers' their region.
func TestMetricsPortLabels(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.eventually(t, "acme.example.com", atVersion("acme", 1))
	if s.ep.Metrics == "" || !strings.Contains(s.stdout.String(), "http://"+s.ep.Metrics) {
		t.Fatalf("metrics endpoint %q not in the banner:\n%s", s.ep.Metrics, s.stdout.String())
	}
	s.rest(t, "GET", "/v1/tenants", rdr, "")
	testwait.For(t, "system ready", func() bool {
		code, _ := obstest.Get(t, s.ep.Metrics, "/readyz")
		return code == http.StatusOK
	})
	obstest.CheckSurface(t, s.ep.Metrics, map[string]string{"component": "dev"}, http.StatusOK)
	families := obstest.Scrape(t, s.ep.Metrics)
	for name, want := range map[string]map[string]string{
		"tcs_catalog_http_requests_total":         {"component": "catalog"},
		"tcs_publish_last_read_timestamp_seconds": {"component": "publish"},
		"tcs_apply_lag_seconds":                   {"component": "apply", "region": "eu-west-1"},
		"tcs_lookup_lookups_total":                {"component": "tcs", "region": "eu-west-1"},
	} {
		f := families[name]
		if f == nil {
			t.Errorf("no %s", name)
			continue
		}
		found := false
		for _, got := range f.Labels {
			match := true
			for k, v := range want {
				if k == "region" {
					match = match && got[k] == v
				} else if got[k] != v {
					t.Errorf("%s%v: %s=%q, want %q", name, got, k, got[k], v)
				}
			}
			found = found || match
		}
		if !found {
			t.Errorf("%s: no series with %v in %v", name, want, f.Labels)
		}
	}
}
