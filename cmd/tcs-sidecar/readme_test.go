package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/cmd/internal/configtest"
)

// TestReadmeListsEveryFlag: the README's sidecar section names every flag
// tcs-sidecar has, and no flag it does not have.
func TestReadmeListsEveryFlag(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(readme, []byte("## Sidecar (`tcs-sidecar`)"))
	if start < 0 {
		t.Fatal("README has no sidecar section")
	}
	section := string(readme[start:])
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var help bytes.Buffer
	parseConfig([]string{"--help"}, configtest.Env(nil), &help)
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(help.String(), -1) {
		have[m[1]] = true
		if !strings.Contains(section, "`--"+m[1]+"`") {
			t.Errorf("the README's sidecar section does not name --%s", m[1])
		}
	}
	if len(have) < 10 {
		t.Fatalf("found only %d flags in the help:\n%s", len(have), help.String())
	}
	for _, m := range regexp.MustCompile("`--([a-z-]+)`").FindAllStringSubmatch(section, -1) {
		if !have[m[1]] {
			t.Errorf("the README's sidecar section names --%s, which tcs-sidecar does not have", m[1])
		}
	}
}
