// Package obstest checks a running binary's observability surface in
// tests: the metrics port's routes, tcs_build_info, and the labels every
// metric carries.
package obstest

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/buildinfo"
)

var listening = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// MetricsAddr returns the address a binary logged (text format) as
// "metrics listening", failing the test if there is none.
func MetricsAddr(tb testing.TB, logs string) string {
	tb.Helper()
	m := listening.FindStringSubmatch(logs)
	if m == nil {
		tb.Fatalf("no \"metrics listening\" line in the logs:\n%s", logs)
	}
	return m[1]
}

// Get fetches http://addr+path and returns the status and body.
func Get(tb testing.TB, addr, path string) (int, string) {
	tb.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get("http://" + addr + path)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	return res.StatusCode, string(b)
}

// Scrape fetches addr's /metrics and parses it.
func Scrape(tb testing.TB, addr string) map[string]*Family {
	tb.Helper()
	code, body := Get(tb, addr, "/metrics")
	if code != http.StatusOK {
		tb.Fatalf("GET /metrics: %d %s", code, body)
	}
	out := map[string]*Family{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			tb.Fatalf("/metrics: cannot parse line %q", line)
		}
		name, labels := m[1], map[string]string{}
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			labels[l[1]] = l[2]
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			// A histogram's or summary's series count as their family's.
			if base, ok := strings.CutSuffix(name, suffix); ok && strings.Contains(body, "# TYPE "+base+" ") {
				name = base
			}
		}
		if out[name] == nil {
			out[name] = &Family{Name: name}
		}
		out[name].Labels = append(out[name].Labels, labels)
	}
	return out
}

var (
	sample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$`)
	label  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// Family is one scraped metric family: each series' labels.
type Family struct {
	Name   string
	Labels []map[string]string
}

// CheckSurface checks the metrics port at addr: /metrics serves
// tcs_build_info with this build's version and revision, every series of
// each family in labelled carries want's labels, /healthz answers 200,
// /readyz answers readyCode, and other paths 404.
func CheckSurface(tb testing.TB, addr string, want map[string]string, readyCode int, labelled ...string) {
	tb.Helper()
	families := Scrape(tb, addr)
	info := buildinfo.Get()
	bi := families["tcs_build_info"]
	if bi == nil || len(bi.Labels) != 1 {
		tb.Fatalf("tcs_build_info: %+v, want one series", bi)
	}
	for k, v := range map[string]string{"version": info.Version, "revision": info.Revision, "goversion": info.GoVersion} {
		if got := bi.Labels[0][k]; got != v {
			tb.Errorf("tcs_build_info{%s=%q}, want %q", k, got, v)
		}
	}
	for _, name := range append([]string{"tcs_build_info", "go_goroutines"}, labelled...) {
		f := families[name]
		if f == nil {
			tb.Errorf("no metric %s on /metrics", name)
			continue
		}
		for _, got := range f.Labels {
			for k, v := range want {
				if got[k] != v {
					tb.Errorf("%s%v: label %s=%q, want %q", name, got, k, got[k], v)
				}
			}
		}
	}
	if code, body := Get(tb, addr, "/healthz"); code != http.StatusOK {
		tb.Errorf("GET /healthz: %d %s, want 200", code, body)
	}
	if code, body := Get(tb, addr, "/readyz"); code != readyCode {
		tb.Errorf("GET /readyz: %d %s, want %d", code, body, readyCode)
	}
	for _, p := range []string{"/", "/metricsx", "/debug/pprof/"} {
		if code, _ := Get(tb, addr, p); code != http.StatusNotFound {
			tb.Errorf("GET %s: %d, want 404", p, code)
		}
	}
}

// CheckVersion checks a --version line of binary.
func CheckVersion(tb testing.TB, binary, out string) {
	tb.Helper()
	want := buildinfo.Get().String(binary) + "\n"
	if out != want {
		tb.Errorf("--version printed %q, want %q", out, want)
	}
	if !strings.HasPrefix(out, fmt.Sprintf("%s version ", binary)) {
		tb.Errorf("--version printed %q, want it to start with %q", out, binary+" version ")
	}
}
