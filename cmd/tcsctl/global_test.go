package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestConnectionFlagsBeforeTheCommand: connection flags work before the
// command as after it (tcsctl --context prod tenant list), and commands
// that connect to nothing accept them.
func TestConnectionFlagsBeforeTheCommand(t *testing.T) {
	t.Parallel()
	// A catalog that refuses every token answers at once; it counts the
	// requests that reach it.
	var asked atomic.Int64
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"type":"about:blank","title":"Unauthorized","status":401,"detail":"no such token"}`))
	}))
	t.Cleanup(refusing.Close)
	cfg := writeConfig(t, `contexts:
  dead:
    catalog: `+refusing.URL+`
`)
	env := map[string]string{"TCSCTL_CONFIG": cfg}
	for _, args := range [][]string{
		{"--context", "dead", "tenant", "list"},
		{"tenant", "list", "--context", "dead"},
		{"--context=dead", "tenant", "list"},
		{"--catalog", refusing.URL, "tenant", "list"},
		{"--timeout", "5s", "--context", "dead", "get", "acme"},
	} {
		before := asked.Load()
		code, out, errOut := tcsctlIn(t, env, "", args...)
		if code != exitError || out != "" || !strings.Contains(errOut, "401") || strings.Contains(errOut, `page token ""`) || asked.Load() == before {
			t.Errorf("tcsctl %s: exit %d, stdout %q, stderr %q, %d request(s) to the context's catalog; want 2, its 401, and the request", strings.Join(args, " "), code, out, errOut, asked.Load()-before)
		}
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
