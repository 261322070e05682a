package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// tcsctlIn runs tcsctl in-process with only env as its environment and
// returns its exit code and output.
func tcsctlIn(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestHelpOnStdout: -h, --help and help print the help on stdout and exit
// 0, for the root and for commands at every level.
func TestHelpOnStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"}, {"help", "verify"}, {"verify", "-h"}, {"tenant", "--help"},
		{"tenant", "apply", "-h"}, {"audit", "verify", "-h"}, {"config", "set-context", "--help"}, {"infra", "--help"},
	} {
		code, out, errOut := tcsctlIn(t, nil, "", args...)
		if code != exitOK || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("tcsctl %s: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", strings.Join(args, " "), code, out, errOut)
		}
	}
	// A command's own flags come first, its connection flags apart.
	_, out, _ := tcsctlIn(t, nil, "", "verify", "-h")
	own, conn, ok := strings.Cut(out, "\nConnection flags")
	if !ok || !strings.Contains(own, "--settle") || strings.Contains(own, "--catalog") || !strings.Contains(conn, "--catalog") || !strings.Contains(conn, "--context") || strings.Contains(conn, "--settle") {
		t.Errorf("verify -h does not list its connection flags apart:\n%s", out)
	}
	// The root's help lists every command.
	_, out, _ = tcsctlIn(t, nil, "", "--help")
	for _, c := range []string{"lookup", "get", "tenant", "resync", "verify", "repair", "transform", "backfill", "export", "audit", "infra", "token", "config", "completion", "version"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("--help does not list %s:\n%s", c, out)
		}
	}
}

// TestUsageErrors: bad usage exits 2 with a message on stderr naming what
// was wrong (and nothing on stdout); mistyped commands get suggestions.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"Usage:"}},
		{[]string{"frobnicate"}, []string{`tcsctl: unknown command "frobnicate"`}},
		{[]string{"verfy"}, []string{`unknown command "verfy"`, "Did you mean this?", "verify"}},
		{[]string{"tenant", "lst"}, []string{`tcsctl tenant: unknown tenant command "lst"`, "Did you mean this?", "list"}},
		{[]string{"tenant"}, []string{"missing tenant command: want apply, create, delete, get, history, list, patch"}},
		{[]string{"config", "use-contxt", "x"}, []string{"use-context"}},
		{[]string{"audit", "verfy"}, []string{`unknown command "verfy": want list or verify`, "verify"}},
		{[]string{"verify", "--bogus"}, []string{"tcsctl verify: unknown flag: --bogus", "Run 'tcsctl verify --help' for usage."}},
		{[]string{"verify", "-o", "xml"}, []string{`-o "xml": want table, json or yaml`}},
		{[]string{"lookup", "a.example.com", "-o", "xml"}, []string{`-o "xml": want json, yaml or table`}},
		{[]string{"get"}, []string{"tcsctl get: want 1 argument(s), got 0"}},
		{[]string{"get", "a", "b"}, []string{`want 1 argument(s), got 2: ["a" "b"]`}},
		{[]string{"tenant", "get"}, []string{"tcsctl tenant: want 1 argument(s), got 0"}},
		{[]string{"tenant", "list", "--limit", "-1"}, []string{"--limit -1: must not be negative"}},
		{[]string{"tenant", "create"}, []string{"-f is required"}},
		{[]string{"tenant", "create", "-f", "/nonexistent/t.yaml"}, []string{"-f: open /nonexistent/t.yaml"}},
		{[]string{"tenant", "patch", "acme"}, []string{"give --set FIELD=VALUE… or -f PATCH"}},
		{[]string{"tenant", "patch", "acme", "--set", "nofield"}, []string{`--set "nofield": want FIELD=VALUE`}},
		{[]string{"token"}, []string{"missing token command: want digest, new"}},
		{[]string{"token", "nwe"}, []string{`unknown token command "nwe"`, "new"}},
		{[]string{"verify", "--timeout", "soon"}, []string{`invalid argument "soon" for "--timeout"`}},
		{[]string{"transform", "--where", `id == "x"`}, []string{"--where and at least one --set are required"}},
		{[]string{"resync", "--batch", "0", "--all"}, []string{"--batch must be 1 to 1000"}},
		{[]string{"help", "verfy"}, []string{`no help for "verfy": not a command`, "verify"}},
		{[]string{"help", "tenant", "lst"}, []string{`no help for "tenant lst": not a command`, "list"}},
	} {
		code, out, errOut := tcsctlIn(t, nil, "", tc.args...)
		if code != exitError || out != "" {
			t.Errorf("tcsctl %s: exit %d, stdout %q; want 2 and no stdout", strings.Join(tc.args, " "), code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("tcsctl %s: stderr %q does not say %q", strings.Join(tc.args, " "), errOut, w)
			}
		}
	}
}

// TestVersionOutput: --version, -version and version print the same build
// line.
func TestVersionOutput(t *testing.T) {
	t.Parallel()
	_, want, _ := tcsctlIn(t, nil, "", "--version")
	for _, arg := range []string{"-version", "version", "-v"} {
		if code, out, _ := tcsctlIn(t, nil, "", arg); code != 0 || out != want {
			t.Errorf("tcsctl %s: exit %d, %q; want %q", arg, code, out, want)
		}
	}
	if !strings.HasPrefix(want, "tcsctl ") || strings.Count(want, "\n") != 1 {
		t.Errorf("--version: %q", want)
	}
}

// TestSingleDashLongFlags: Go-style -flag and -flag=value still work, as
// before cobra; a shorthand with its value attached (-ojson) too.
func TestSingleDashLongFlags(t *testing.T) {
	t.Parallel()
	// The --where is refused after parsing: the flags were understood.
	code, _, errOut := tcsctlIn(t, nil, "", "transform", "-where", `databse.host == "x"`, "-set=region=eu-west-1", "-dry-run")
	if code != exitError || !strings.Contains(errOut, "--where:") || strings.Contains(errOut, "shorthand") {
		t.Errorf("transform -where …: exit %d, %s", code, errOut)
	}
	code, _, errOut = tcsctlIn(t, nil, "", "verify", "-ojson", "-page-size", "0")
	if code != exitError || !strings.Contains(errOut, "--page-size must be 1 to 1000") {
		t.Errorf("verify -ojson -page-size 0: exit %d, %s", code, errOut)
	}
}

// TestCompletion: completion scripts for every shell, and completions of
// commands, subcommands and -o values.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := tcsctlIn(t, nil, "", "completion", sh)
		if code != 0 || !strings.Contains(out, "tcsctl") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, %s", sh, code, len(out), errOut)
		}
	}
	if code, _, _ := tcsctlIn(t, nil, "", "completion", "tcsh"); code != exitError {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "ver"}, []string{"verify", "version"}},
		{[]string{"__complete", "tenant", ""}, []string{"apply", "create", "delete", "get", "history", "list", "patch"}},
		{[]string{"__complete", "verify", "-o", ""}, []string{"table", "json", "yaml"}},
		{[]string{"__complete", "token", "new", "--role", ""}, []string{"admin", "reader", "lookup", "replica-scan"}},
		{[]string{"__complete", "infra", "template", ""}, []string{"home", "region"}},
	} {
		code, out, errOut := tcsctlIn(t, nil, "", tc.args...)
		if code != 0 {
			t.Errorf("%v: exit %d, %s", tc.args, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w+"\n") && !strings.Contains(out, w+"\t") {
				t.Errorf("%v: %q does not offer %s", tc.args, out, w)
			}
		}
	}
}
