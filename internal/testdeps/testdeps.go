// Package testdeps checks what a package links, for the tests that keep a
// library or a binary from linking what its users should not pay for.
package testdeps

import (
	"os/exec"
	"strings"
	"testing"
)

// Forbid fails tb for every package that the package in the test's
// directory links (go list -deps ., so test-only imports do not count) and
// whose import path starts with one of the prefixes. A prefix ending in a
// letter matches that package and the packages below it only
// ("…/streamer" matches "…/streamer/kinesis", not "…/streamerx").
func Forbid(tb testing.TB, prefixes ...string) {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Skip("no go command on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		tb.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		tb.Fatalf("go list -deps gave %d packages; is this the package directory?", len(deps))
	}
	self := deps[len(deps)-1]
	for _, dep := range deps {
		for _, p := range prefixes {
			if Matches(dep, p) {
				tb.Errorf("%s links %s (forbidden: %s)", self, dep, p)
			}
		}
	}
}

// Matches reports whether import path dep is prefix or, for a prefix that
// ends in "/", starts with it, or is below it.
func Matches(dep, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(dep, prefix)
	}
	return dep == prefix || strings.HasPrefix(dep, prefix+"/")
}
