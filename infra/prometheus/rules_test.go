package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// promtool runs Debian's promtool, which .ci/run installs (package
// prometheus). Without it the check cannot run: CI sets REQUIRE_PROMTOOL so
// that it never silently skips there.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool is not installed (apt-get install prometheus); REQUIRE_PROMTOOL is set")
		}
		t.Skip("promtool is not installed, so the rules were not checked (.ci/run installs it: apt-get install --no-install-recommends prometheus)")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestRulesAreValid(t *testing.T) {
	t.Parallel()
	promtool(t, append([]string{"check", "rules"}, ruleFiles(t)...)...)
}

// TestRulesUnitTests runs the alerts' unit tests: each alert fires on the
// series that mean trouble and stays quiet on healthy ones.
func TestRulesUnitTests(t *testing.T) {
	t.Parallel()
	tests, err := filepath.Glob("tests/*.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in tests/: %v", err)
	}
	promtool(t, append([]string{"test", "rules"}, tests...)...)
}

func ruleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("rules/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in rules/: %v", err)
	}
	return files
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var metricName = regexp.MustCompile(`\btcs_[a-z0-9_]+\b`)

// TestRulesMatchCode ties the rules to the code: every tcs_ metric a rule
// reads is one the Go code defines (a renamed metric would otherwise leave
// an alert that can never fire), every alert has a severity and a runbook
// in docs/runbooks, and every runbook belongs to an alert.
func TestRulesMatchCode(t *testing.T) {
	t.Parallel()
	defined := codeMetrics(t)
	runbooks := map[string]bool{}
	for _, f := range ruleFiles(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(raw, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		recorded := map[string]bool{}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
			}
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				for _, m := range metricName.FindAllString(r.Expr, -1) {
					if !defined[m] && !recorded[m] {
						t.Errorf("%s: rule %s%s reads %s, which no Go code defines", f, r.Alert, r.Record, m)
					}
				}
				if r.Alert == "" {
					continue
				}
				if s := r.Labels["severity"]; s != "page" && s != "ticket" {
					t.Errorf("%s: alert %s: severity %q, want page or ticket", f, r.Alert, s)
				}
				url := r.Annotations["runbook_url"]
				want := "docs/runbooks/" + r.Alert + ".md"
				if !strings.HasSuffix(url, want) {
					t.Errorf("%s: alert %s: runbook_url %q, want it to end in %s", f, r.Alert, url, want)
					continue
				}
				if _, err := os.Stat(filepath.Join("..", "..", want)); err != nil {
					t.Errorf("%s: alert %s: runbook %s: %v", f, r.Alert, want, err)
				}
				if r.Annotations["summary"] == "" {
					t.Errorf("%s: alert %s has no summary", f, r.Alert)
				}
				runbooks[r.Alert+".md"] = true
			}
		}
	}
	books, _ := filepath.Glob(filepath.Join("..", "..", "docs", "runbooks", "*.md"))
	for _, b := range books {
		if name := filepath.Base(b); name != "README.md" && !runbooks[name] {
			t.Errorf("runbook %s belongs to no alert", b)
		}
	}
}

// codeMetrics returns the tcs_ metric names the repository's Go code (not
// its tests) defines, with the series names a histogram adds.
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	literal := regexp.MustCompile(`"(tcs_[a-z0-9_]+)"`)
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && slices.Contains([]string{".git", ".emulators", ".bin", "node_modules", "data"}, d.Name()) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestEveryAlertIsUnitTested: every alert of rules/ has a promtool unit
// test in tests/ where it fires and one where it stays quiet, so that an
// alert cannot be added (or a test file dropped) without both.
func TestEveryAlertIsUnitTested(t *testing.T) {
	t.Parallel()
	type ruleTests struct {
		Tests []struct {
			Name          string `yaml:"name"`
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	files, err := filepath.Glob("tests/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests in tests/: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rt ruleTests
		if err := yaml.Unmarshal(raw, &rt); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	alerts := 0
	for _, f := range ruleFiles(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(raw, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				alerts++
				if !fires[r.Alert] {
					t.Errorf("%s: alert %s has no unit test in tests/ where it fires", f, r.Alert)
				}
				if !quiet[r.Alert] {
					t.Errorf("%s: alert %s has no unit test in tests/ where it stays quiet", f, r.Alert)
				}
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts found in rules/")
	}
}
