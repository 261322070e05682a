package main

import (
	"strings"
	"testing"
)

// TestConnectionFlagsBeforeTheCommand: connection flags work before the
// command as after it (tcsctl --context prod tenant list), and commands
// that connect to nothing accept them.
func TestConnectionFlagsBeforeTheCommand(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, `contexts:
  dead:
    catalog: http://127.0.0.1:1
`)
	env := map[string]string{"TCSCTL_CONFIG": cfg}
	for _, args := range [][]string{
		{"--context", "dead", "tenant", "list"},
		{"tenant", "list", "--context", "dead"},
		{"--context=dead", "tenant", "list"},
		{"--catalog", "http://127.0.0.1:1", "tenant", "list"},
		{"--timeout", "5s", "--context", "dead", "get", "acme"},
	} {
		// Each retries the refused connection for about a second.
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := tcsctlIn(t, env, "", args...)
			if code != exitError || out != "" || !strings.Contains(errOut, "127.0.0.1:1") || strings.Contains(errOut, `page token ""`) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 naming the context's catalog 127.0.0.1:1", code, out, errOut)
			}
		})
	}
	code, _, errOut := tcsctlIn(t, env, "", "--context", "nosuch", "tenant", "list")
	if code != exitError || !strings.Contains(errOut, `"nosuch"`) {
		t.Errorf("--context nosuch: exit %d, stderr %q; want 2 naming the context", code, errOut)
	}
	if code, out, errOut := tcsctlIn(t, env, "", "--context", "dead", "version"); code != 0 || !strings.Contains(out, "tcsctl") {
		t.Errorf("--context dead version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Listed once, with the command's flags, not again as global flags.
	_, out, _ := tcsctlIn(t, env, "", "tenant", "list", "--help")
	if strings.Count(out, "--context") != 1 || strings.Contains(out, "Global Flags") {
		t.Errorf("tenant list --help lists --context %d times (want 1), or global flags:\n%s", strings.Count(out, "--context"), out)
	}
}
