package prometheus_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// dashboard is the part of a Grafana dashboard the test reads; decoding is
// strict about it (the rest of the JSON is Grafana's).
type dashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// grafanaVars are the Grafana variables the dashboards' PromQL uses, with a
// value of the right type for parsing.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m")

// TestDashboards checks every dashboard of infra/grafana: valid JSON with a
// unique uid and title, every panel on the Prometheus datasource variable
// with at least one query, every query valid PromQL (the Prometheus
// parser) reading only tcs_ metrics the Go code defines.
func TestDashboards(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("..", "grafana", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in infra/grafana: %v", err)
	}
	defined := codeMetrics(t)
	uids, titles := map[string]string{}, map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(raw) {
			t.Errorf("%s: not valid JSON", f)
			continue
		}
		var d dashboard
		if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&d); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid %q, title %q: want both", f, d.UID, d.Title)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %q", f, other, d.UID)
		}
		if other, dup := titles[d.Title]; dup {
			t.Errorf("%s and %s share title %q", f, other, d.Title)
		}
		uids[d.UID], titles[d.Title] = f, f
		if len(d.Panels) == 0 {
			t.Errorf("%s: no panels", f)
		}
		for _, p := range d.Panels {
			where := f + ": panel " + p.Title
			if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: datasource %+v, want the prometheus ${datasource} variable", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			for _, q := range p.Targets {
				expr := grafanaVars.Replace(q.Expr)
				parsed, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
				if err != nil {
					t.Errorf("%s, query %s: %q: %v", where, q.RefID, q.Expr, err)
					continue
				}
				names := 0
				parser.Inspect(parsed, func(n parser.Node, _ []parser.Node) error {
					vs, ok := n.(*parser.VectorSelector)
					if !ok {
						return nil
					}
					names++
					if !defined[vs.Name] {
						t.Errorf("%s, query %s reads %s, which no Go code defines", where, q.RefID, vs.Name)
					}
					return nil
				})
				if names == 0 {
					t.Errorf("%s, query %s reads no metric", where, q.RefID)
				}
			}
		}
	}
}
