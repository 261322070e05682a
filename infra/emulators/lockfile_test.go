package emulators

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// installScriptsAllowed are the locked packages that have an install script
// install.sh does not run (npm ci --ignore-scripts), each with why that is
// fine. A new one fails TestLockfile until someone has looked at it.
var installScriptsAllowed = map[string]string{
	// kinesalite loads it only for its on-disk mode (--path); the tests
	// and docker-compose run it in memory (memdown).
	"node_modules/leveldown": "optional dependency of kinesalite, unused in memory mode",
}

// TestLockfile checks the committed npm project install.sh installs the
// emulators from: every package pinned with an integrity hash and fetched
// from the registry (no git or URL dependencies), the lockfile in step with
// package.json, exact versions, and no install script nobody has reviewed.
func TestLockfile(t *testing.T) {
	t.Parallel()
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	var lock struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Version          string            `json:"version"`
			Resolved         string            `json:"resolved"`
			Integrity        string            `json:"integrity"`
			HasInstallScript bool              `json:"hasInstallScript"`
			Dependencies     map[string]string `json:"dependencies"`
			Link             bool              `json:"link"`
		} `json:"packages"`
	}
	for name, v := range map[string]any{"npm/package.json": &pkg, "npm/package-lock.json": &lock} {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if lock.LockfileVersion < 2 {
		t.Errorf("lockfileVersion %d: want 2 or 3 (npm 7+), which npm ci reads exactly", lock.LockfileVersion)
	}
	exact := regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	for name, v := range pkg.Dependencies {
		if !exact.MatchString(v) {
			t.Errorf("package.json: %s %q: want an exact version", name, v)
		}
		if got := lock.Packages["node_modules/"+name].Version; got != v {
			t.Errorf("package-lock.json has %s %s, package.json wants %s: run npm install --ignore-scripts --package-lock-only in infra/emulators/npm", name, got, v)
		}
	}
	if diff := cmp.Diff(pkg.Dependencies, lock.Packages[""].Dependencies); diff != "" {
		t.Errorf("package-lock.json's root dependencies differ from package.json (-package.json +lock):\n%s", diff)
	}
	var scripts []string
	for path, p := range lock.Packages {
		if path == "" {
			continue
		}
		if p.Link || !strings.HasPrefix(path, "node_modules/") {
			t.Errorf("%s: a link or workspace package; want registry packages only", path)
		}
		if !strings.HasPrefix(p.Integrity, "sha512-") {
			t.Errorf("%s: integrity %q, want a sha512 hash", path, p.Integrity)
		}
		if p.Resolved != "" && !strings.HasPrefix(p.Resolved, "https://registry.npmjs.org/") {
			t.Errorf("%s: resolved from %s, want the npm registry", path, p.Resolved)
		}
		if p.HasInstallScript {
			scripts = append(scripts, path)
			if _, ok := installScriptsAllowed[path]; !ok {
				t.Errorf("%s has an install script, which install.sh does not run: check the package works without it (or run it explicitly in install.sh), then list it in installScriptsAllowed", path)
			}
		}
	}
	slices.Sort(scripts)
	t.Logf("%d locked packages; with install scripts (not run): %v", len(lock.Packages)-1, scripts)
}

// TestInstallScriptRunsNoScripts keeps install.sh on npm ci --ignore-scripts
// and pinned digests.
func TestInstallScriptRunsNoScripts(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("install.sh")
	if err != nil {
		t.Fatal(err)
	}
	src := string(raw)
	if !strings.Contains(src, "npm ci --ignore-scripts") {
		t.Error("install.sh does not install with npm ci --ignore-scripts")
	}
	if regexp.MustCompile(`(?m)^[^#]*npm (install|i|add) `).MatchString(src) {
		t.Error("install.sh runs npm install: it ignores the lockfile and runs install scripts")
	}
	for _, pin := range []string{"DYNAMODB_SIMULATOR_SHA256", "DYNAMODB_LOCAL_JAR_SHA256"} {
		if !regexp.MustCompile(`(?m)^` + pin + `=[0-9a-f]{64}$`).MatchString(src) {
			t.Errorf("install.sh: no %s=<64 hex digits>", pin)
		}
		if strings.Count(src, "$"+pin) == 0 {
			t.Errorf("install.sh: %s is pinned but never checked", pin)
		}
	}
}
