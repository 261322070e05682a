package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

var (
	// flagDef finds a flag's name where a binary defines it on a FlagSet:
	// fs.Duration("name", …), fs.StringVar(&x, "name", …), fs.Func("name", …).
	flagDef = regexp.MustCompile(`\b(?:fs|flags|set|f)\.(?:Bool|Int|Int64|Uint|Uint64|String|Duration|Float64|Var|Func|BoolFunc|TextVar)(?:Var)?P?\(\s*(?:[^,()"]+,\s*)?"([a-z][a-z0-9-]*)"`)
	// metricDef finds a metric name as the code registers it.
	metricDef = regexp.MustCompile(`"(tcs_[a-z0-9_]+)"`)
	alertDef  = regexp.MustCompile(`(?m)^\s*- alert: (\w+)\s*$`)

	docFlag   = regexp.MustCompile("(?:^|[\\s(`/])--([a-z][a-z0-9-]*)")
	docMetric = regexp.MustCompile(`\btcs_[a-z0-9_]*[a-z0-9]`)
	docAlert  = regexp.MustCompile("`(TCS[A-Z][A-Za-z]+)`")
	docLink   = regexp.MustCompile(`\]\(([^)#]+)(?:#[^)]*)?\)`)
)

// names is what exists in the code: flags of the binaries, metric names,
// Prometheus alerts.
type names struct {
	flags, metrics, alerts map[string]bool
}

func codeNames(t *testing.T) names {
	t.Helper()
	n := names{flags: map[string]bool{}, metrics: map[string]bool{}, alerts: map[string]bool{}}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
			return filepath.SkipDir // .emulators, .git, …
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasPrefix(filepath.ToSlash(path), "../cmd/") {
			for _, m := range flagDef.FindAllSubmatch(src, -1) {
				n.flags[string(m[1])] = true
			}
		}
		for _, m := range metricDef.FindAllSubmatch(src, -1) {
			n.metrics[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Glob("../infra/prometheus/rules/*.yml")
	if err != nil || len(rules) == 0 {
		t.Fatalf("no rules files in infra/prometheus/rules (%v)", err)
	}
	for _, f := range rules {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range alertDef.FindAllSubmatch(src, -1) {
			n.alerts[string(m[1])] = true
		}
	}
	for what, set := range map[string]map[string]bool{"flags": n.flags, "metrics": n.metrics, "alerts": n.alerts} {
		if len(set) < 5 {
			t.Fatalf("found only %d %s in the code: the extraction is broken", len(set), what)
		}
	}
	return n
}

// problems returns what doc (a page in this folder) names that does not
// exist: flags no binary defines, metrics the code does not register,
// alerts no rules file has, relative links to missing files.
func (n names) problems(doc string) []string {
	var out []string
	seen := map[string]bool{}
	report := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, m := range docFlag.FindAllStringSubmatch(doc, -1) {
		if !n.flags[m[1]] {
			report("flag --" + m[1] + " is defined by no binary in cmd/")
		}
	}
	for _, m := range docMetric.FindAllString(doc, -1) {
		base := m
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && n.metrics[b] {
				base = b
			}
		}
		if !n.metrics[base] {
			report("metric " + m + " is registered nowhere in the code")
		}
	}
	for _, m := range docAlert.FindAllStringSubmatch(doc, -1) {
		if !n.alerts[m[1]] {
			report("alert " + m[1] + " is in no infra/prometheus/rules file")
		}
	}
	for _, m := range docLink.FindAllStringSubmatch(doc, -1) {
		target := m[1]
		if strings.Contains(target, "://") {
			continue
		}
		if _, err := os.Stat(target); err != nil {
			report("link " + target + ": no such file")
		}
	}
	sort.Strings(out)
	return out
}

// TestOperationsDocNamesExist: every flag, metric, alert and link that
// operations.md and moves.md name exists.
func TestOperationsDocNamesExist(t *testing.T) {
	t.Parallel()
	names := codeNames(t)
	for _, page := range []string{"operations.md", "moves.md"} {
		doc, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range names.problems(string(doc)) {
			t.Error(page + ": " + p)
		}
	}
}

// TestDocCheckCatchesMadeUpNames: the check above reports names that do
// not exist, and accepts real ones in the forms the pages use.
func TestDocCheckCatchesMadeUpNames(t *testing.T) {
	t.Parallel()
	n := codeNames(t)
	doc := "Set `--poll-interval` and (--max-stale), watch `tcs_lookup_request_duration_seconds_bucket` and " +
		"`tcs_lookup_feed_up`; `TCSReplicationStalled` fires; see [deploy](deploy.md#probes).\n" +
		"But `--no-such-flag`, `tcs_no_such_metric_total`, `TCSNoSuchAlert` and [gone](gone.md) do not exist.\n"
	want := []string{
		"alert TCSNoSuchAlert is in no infra/prometheus/rules file",
		"flag --no-such-flag is defined by no binary in cmd/",
		"link gone.md: no such file",
		"metric tcs_no_such_metric_total is registered nowhere in the code",
	}
	if got := n.problems(doc); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
