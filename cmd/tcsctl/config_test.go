package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// writeConfig writes a config file (mode 0600) and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConnPrecedence: each connection setting comes from its flag, else its
// environment variable, else the context, else the default.
func TestConnPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "scan.token")
	if err := os.WriteFile(tokenFile, []byte("scan-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, `current-context: dev
contexts:
  dev:
    catalog: http://127.0.0.1:7001
    regions: r1=127.0.0.1:7101
    token: {env: DEV_TOKEN}
  prod:
    catalog: https://catalog.prod.example.com
    regions: r1=tcs.prod.example.com:443,r2=tcs2.prod.example.com:443
    ca-file: /etc/tcs/ca.pem
    token: {env: PROD_TOKEN}
    scan-token: {file: `+tokenFile+`}
`)
	type want struct{ catalog, regions, token, scanToken, caFile string }
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want want
	}{
		{"defaults without a config file", map[string]string{}, nil,
			want{defaultCatalogURL, defaultRegions, "", "", ""}},
		{"the current context", map[string]string{"TCSCTL_CONFIG": cfg, "DEV_TOKEN": "dev-token"}, nil,
			want{"http://127.0.0.1:7001", "r1=127.0.0.1:7101", "dev-token", "", ""}},
		{"--context", map[string]string{"TCSCTL_CONFIG": cfg, "PROD_TOKEN": "prod-token"}, []string{"--context", "prod"},
			want{"https://catalog.prod.example.com", "r1=tcs.prod.example.com:443,r2=tcs2.prod.example.com:443", "prod-token", "scan-from-file", "/etc/tcs/ca.pem"}},
		{"TCSCTL_CONTEXT", map[string]string{"TCSCTL_CONFIG": cfg, "TCSCTL_CONTEXT": "prod", "PROD_TOKEN": "prod-token"}, nil,
			want{"https://catalog.prod.example.com", "r1=tcs.prod.example.com:443,r2=tcs2.prod.example.com:443", "prod-token", "scan-from-file", "/etc/tcs/ca.pem"}},
		{"env over context", map[string]string{"TCSCTL_CONFIG": cfg, "TCS_CATALOG_URL": "http://127.0.0.1:7002", "TCS_ADMIN_TOKEN": "env-token", "TCS_SCAN_TOKEN": "env-scan"}, []string{"--context", "prod"},
			want{"http://127.0.0.1:7002", "r1=tcs.prod.example.com:443,r2=tcs2.prod.example.com:443", "env-token", "env-scan", "/etc/tcs/ca.pem"}},
		{"flags over env and context", map[string]string{"TCSCTL_CONFIG": cfg, "TCS_CATALOG_URL": "http://127.0.0.1:7002", "TCS_ADMIN_TOKEN": "env-token", "DEV_TOKEN": "dev-token"},
			[]string{"--catalog", "http://127.0.0.1:7003", "--token", "flag-token", "--regions", "x=127.0.0.1:1", "--ca-file", "/ca.pem"},
			want{"http://127.0.0.1:7003", "x=127.0.0.1:1", "flag-token", "", "/ca.pem"}},
		{"XDG_CONFIG_HOME", map[string]string{"XDG_CONFIG_HOME": filepath.Dir(filepath.Dir(xdgConfig(t, cfg))), "DEV_TOKEN": "dev-token"}, nil,
			want{"http://127.0.0.1:7001", "r1=127.0.0.1:7101", "dev-token", "", ""}},
	} {
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		var c connFlags
		c.register(fs, func(k string) string { return tc.env[k] })
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := c.resolve(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := want{c.catalogURL, c.regions, c.token, c.scanToken, c.tls.CAFile}
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// xdgConfig copies the config file at path to DIR/tcsctl/config.yaml and
// returns the copy's path.
func xdgConfig(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tcsctl", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigRefuses: a config file that stores a token, that others can
// write, that names an unknown current context or holds an unknown key, a
// token file others can read, and a --context that does not exist are
// errors naming the cause.
func TestConfigRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	looseToken := filepath.Join(dir, "loose.token")
	if err := os.WriteFile(looseToken, []byte("t"), 0o644); err != nil {
		t.Fatal(err)
	}
	worldWritable := writeConfig(t, "contexts: {a: {catalog: http://127.0.0.1:1}}\n")
	if err := os.Chmod(worldWritable, 0o666); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, config string
		path         string
		env          map[string]string
		args         []string
		want         string
	}{
		{"a literal token", "current-context: a\ncontexts:\n  a:\n    token: s3cret-token-value\n", "", nil, nil,
			"tokens are never stored in the config file"},
		{"env and file", "current-context: a\ncontexts:\n  a:\n    token: {env: X, file: /y}\n", "", nil, nil, "give env or file, not both"},
		{"a bad env name", "current-context: a\ncontexts:\n  a:\n    token: {env: 'A-B'}\n", "", nil, nil, `env "A-B" is not an environment variable name`},
		{"an unknown key", "current-context: a\ncontexts:\n  a:\n    catalogue: http://x\n", "", nil, nil, `unknown field "catalogue"`},
		{"an unknown current context", "current-context: b\ncontexts:\n  a: {}\n", "", nil, nil, `current-context "b" is not one of its contexts`},
		{"an unknown --context", "contexts:\n  a: {}\n", "", nil, []string{"--context", "nope"}, `--context "nope": no such context`},
		{"an unset token variable", "current-context: a\ncontexts:\n  a:\n    token: {env: TCSCTL_TEST_UNSET}\n", "", nil, nil, "environment variable TCSCTL_TEST_UNSET is empty or unset"},
		{"a token file others can read", "current-context: a\ncontexts:\n  a:\n    token: {file: " + looseToken + "}\n", "", nil, nil, "readable by others: chmod 600 it"},
		{"a config file others can write", "", worldWritable, nil, nil, "writable by others"},
	} {
		path := tc.path
		if path == "" {
			path = writeConfig(t, tc.config)
		}
		args := append([]string{"tenant", "get", "acme"}, tc.args...)
		code, out, errOut := tcsctlIn(t, map[string]string{"TCSCTL_CONFIG": path}, "", args...)
		if code != exitError || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, code, errOut, tc.want)
		}
	}
}

// TestConfigCommands: set-context writes contexts (mode 0600, references
// only), get-contexts lists them, use-context and current-context switch
// and show the current one; bad input changes nothing.
func TestConfigCommands(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "config.yaml")
	env := map[string]string{"TCSCTL_CONFIG": path}
	must := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := tcsctlIn(t, env, "", args...)
		if code != want {
			t.Fatalf("tcsctl %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
	must(1, "config", "current-context")
	must(0, "config", "set-context", "dev", "--catalog", "http://127.0.0.1:8080", "--token-env", "DEV_ADMIN_TOKEN", "--current")
	must(0, "config", "set-context", "prod", "--catalog", "https://catalog.example.com", "--regions", "us-east-1=tcs.example.com:443",
		"--token-file", "/etc/tcsctl/prod.token", "--scan-token-env", "PROD_SCAN_TOKEN", "--ca-file", "/etc/tcs/ca.pem")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v", err, fi.Mode())
	}
	if out := must(0, "config", "current-context"); out != "dev\n" {
		t.Errorf("current-context: %q", out)
	}
	out := must(0, "config", "get-contexts")
	if !strings.Contains(out, "CURRENT") || !strings.Contains(out, "*        dev") || !strings.Contains(out, "prod") || !strings.Contains(out, "file:/etc/tcsctl/prod.token") {
		t.Errorf("get-contexts:\n%s", out)
	}
	var cfg configFile
	if err := json.Unmarshal([]byte(must(0, "config", "get-contexts", "-o", "json")), &cfg); err != nil || cfg.Contexts["prod"].ScanToken.Env != "PROD_SCAN_TOKEN" {
		t.Errorf("get-contexts -o json: %v %+v", err, cfg)
	}
	if err := yaml.Unmarshal([]byte(must(0, "config", "get-contexts", "-o", "yaml")), &cfg); err != nil || cfg.Contexts["prod"].CAFile != "/etc/tcs/ca.pem" {
		t.Errorf("get-contexts -o yaml: %v %+v", err, cfg)
	}
	must(0, "config", "use-context", "prod")
	if out := must(0, "config", "current-context"); out != "prod\n" {
		t.Errorf("after use-context prod: %q", out)
	}
	// Changing one setting keeps the others; an empty value removes one.
	must(0, "config", "set-context", "prod", "--catalog", "https://catalog2.example.com", "--ca-file", "")
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Contexts["prod"]; p.Catalog != "https://catalog2.example.com" || p.Regions != "us-east-1=tcs.example.com:443" || p.CAFile != "" || p.Token.File != "/etc/tcsctl/prod.token" {
		t.Errorf("prod after set-context: %+v", p)
	}

	before, _ := os.ReadFile(path)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "use-context", "staging"}, `context "staging": no such context`},
		{[]string{"config", "set-context", "prod", "--token", "s3cret"}, "--token: tokens are never stored in the config file: use --token-env VARIABLE or --token-file PATH"},
		{[]string{"config", "set-context", "prod", "--scan-token", "s3cret"}, "--scan-token: tokens are never stored"},
		{[]string{"config", "set-context", "prod", "--catalog", "ftp://x"}, `--catalog "ftp://x": want an http:// or https:// URL`},
		{[]string{"config", "set-context", "prod", "--regions", "us-east-1"}, `"us-east-1" is not REGION=HOST:PORT`},
		{[]string{"config", "set-context", "prod", "--token-env", "A B"}, `--token-env "A B": not an environment variable name`},
		{[]string{"config", "set-context", "prod", "--token-env", "A", "--token-file", "/f"}, "--token-env and --token-file exclude each other"},
		{[]string{"config", "set-context", "a b"}, `context name "a b"`},
		{[]string{"config", "set-context"}, "want 1 argument(s), got 0"},
	} {
		code, _, errOut := tcsctlIn(t, env, "", tc.args...)
		if code != exitError || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("refused commands changed the config file:\n%s\n→\n%s", before, after)
	}
	if strings.Contains(string(before), "s3cret") {
		t.Errorf("a token reached the config file:\n%s", before)
	}
	// Completion offers the contexts.
	for _, args := range [][]string{{"__complete", "config", "use-context", ""}, {"__complete", "verify", "--context", ""}, {"__complete", "tenant", "list", "--context", ""}} {
		if out := must(0, args...); !strings.Contains(out, "dev\n") || !strings.Contains(out, "prod\n") {
			t.Errorf("completion %v: %q", args[1:], out)
		}
	}
}
