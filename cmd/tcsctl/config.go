package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// configFile is tcsctl's config file: named contexts, each a set of
// connection settings, and the one in use.
//
//	current-context: prod
//	contexts:
//	  prod:
//	    catalog: https://catalog.prod.example.com
//	    regions: us-east-1=tcs.use1.example.com:443,eu-west-1=tcs.euw1.example.com:443
//	    ca-file: /etc/tcs/ca.pem
//	    token: {env: TCS_PROD_ADMIN_TOKEN}
//	    scan-token: {file: ~/.config/tcsctl/prod-scan.token}
//
// Credentials are references, never the token itself.
type configFile struct {
	CurrentContext string                    `json:"current-context,omitempty"`
	Contexts       map[string]*contextConfig `json:"contexts,omitempty"`
}

// contextConfig is one named context.
type contextConfig struct {
	Catalog     string         `json:"catalog,omitempty"`
	Regions     string         `json:"regions,omitempty"`
	Insecure    bool           `json:"insecure,omitempty"`
	TLS         bool           `json:"tls,omitempty"`
	CAFile      string         `json:"ca-file,omitempty"`
	Cert        string         `json:"cert,omitempty"`
	Key         string         `json:"key,omitempty"`
	ServerName  string         `json:"server-name,omitempty"`
	Token       *credentialRef `json:"token,omitempty"`
	LookupToken *credentialRef `json:"lookup-token,omitempty"`
	ScanToken   *credentialRef `json:"scan-token,omitempty"`
}

// credentialRef says where a token is: an environment variable or a file
// (mode 0600 or stricter). It is never the token.
type credentialRef struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (r *credentialRef) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return errors.New("tokens are never stored in the config file: reference one as {env: VARIABLE} or {file: PATH}")
	}
	type plain credentialRef
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode((*plain)(r)); err != nil {
		return fmt.Errorf("want {env: VARIABLE} or {file: PATH}: %w", err)
	}
	return r.check()
}

func (r *credentialRef) check() error {
	switch {
	case r.Env != "" && r.File != "":
		return errors.New("give env or file, not both")
	case r.Env == "" && r.File == "":
		return errors.New("want {env: VARIABLE} or {file: PATH}")
	case r.Env != "" && !envName.MatchString(r.Env):
		return fmt.Errorf("env %q is not an environment variable name", r.Env)
	}
	return nil
}

// read returns the token r refers to ("" for a nil r). A token file must
// not be readable by group or others.
func (r *credentialRef) read(getenv func(string) string, what string) (string, error) {
	if r == nil {
		return "", nil
	}
	if r.Env != "" {
		v := getenv(r.Env)
		if v == "" {
			return "", fmt.Errorf("context %s: environment variable %s is empty or unset", what, r.Env)
		}
		return v, nil
	}
	path := expandHome(getenv, r.File)
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("context %s: %w", what, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("context %s: token file %s is mode %#o, readable by others: chmod 600 it", what, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("context %s: %w", what, err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", fmt.Errorf("context %s: token file %s is empty", what, path)
	}
	return tok, nil
}

func expandHome(getenv func(string) string, p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok && getenv("HOME") != "" {
		return filepath.Join(getenv("HOME"), rest)
	}
	return p
}

// configPath is $TCSCTL_CONFIG, else $XDG_CONFIG_HOME/tcsctl/config.yaml,
// else ~/.config/tcsctl/config.yaml; "" if there is no home either.
func configPath(getenv func(string) string) string {
	if p := getenv("TCSCTL_CONFIG"); p != "" {
		return p
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "tcsctl", "config.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "tcsctl", "config.yaml")
	}
	return ""
}

// loadConfig reads the config file at path; a missing file is an empty
// config. A file others can write is refused: it says where tokens are.
func loadConfig(path string) (*configFile, error) {
	cfg := &configFile{}
	if path == "" {
		return cfg, nil
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("config file %s is mode %#o, writable by others, who could point its token references elsewhere: chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, cfg); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	for name, c := range cfg.Contexts {
		if c == nil {
			cfg.Contexts[name] = &contextConfig{}
		}
	}
	if cfg.CurrentContext != "" && cfg.Contexts[cfg.CurrentContext] == nil {
		return nil, fmt.Errorf("config file %s: current-context %q is not one of its contexts", path, cfg.CurrentContext)
	}
	return cfg, nil
}

// save writes cfg to path, mode 0600, through a temporary file renamed over
// it (its directory created mode 0700).
func (cfg *configFile) save(path string) error {
	if path == "" {
		return errors.New("no config file: set TCSCTL_CONFIG or HOME")
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return nil
}

// selectContext returns the context named by flag, else TCSCTL_CONTEXT,
// else the config file's current-context; nil when none is named and the
// file has no current context. A named context that does not exist is an
// error.
func selectContext(getenv func(string) string, flag string) (*contextConfig, error) {
	path := configPath(getenv)
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	name, from := flag, "--context"
	if name == "" {
		name, from = getenv("TCSCTL_CONTEXT"), "TCSCTL_CONTEXT"
	}
	if name == "" {
		return cfg.Contexts[cfg.CurrentContext], nil
	}
	c := cfg.Contexts[name]
	if c == nil {
		return nil, fmt.Errorf("%s %q: no such context in %s (tcsctl config get-contexts lists them)", from, name, displayPath(path))
	}
	return c, nil
}

func displayPath(p string) string {
	if p == "" {
		return "the config file (none: set TCSCTL_CONFIG or HOME)"
	}
	return p
}

func (cfg *configFile) names() []string {
	var out []string
	for n := range cfg.Contexts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (r *credentialRef) String() string {
	switch {
	case r == nil:
		return ""
	case r.Env != "":
		return "env:" + r.Env
	}
	return "file:" + r.File
}

// newConfigCmd is `tcsctl config`: named contexts.
func newConfigCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "manage named contexts (catalog URL, regions, TLS, credential references) in the config file",
		Long: `config manages the named contexts of tcsctl's config file ($TCSCTL_CONFIG, else
$XDG_CONFIG_HOME/tcsctl/config.yaml, else ~/.config/tcsctl/config.yaml). A context holds a
catalog URL, regions, TLS options, and credentials by reference: the name of an environment
variable or the path of a file (mode 0600) holding the token, never a token. Every setting
comes from its flag if given, else its environment variable, else the context (--context,
env TCSCTL_CONTEXT, else the current context), else the default. The file is written mode
0600; one others can write is refused.`,
		Args: cobra.ArbitraryArgs,
		RunE: subcommandsOnly,
	}
	path := func() string { return configPath(e.getenv) }

	getContexts := &cobra.Command{
		Use:   "get-contexts",
		Short: "list the contexts, the current one marked *",
		Args:  noArgs,
	}
	out := addOutput(getContexts.Flags(), "table", "json", "yaml")
	out.complete(getContexts)
	getContexts.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		cfg, err := loadConfig(path())
		if err != nil {
			return err
		}
		if out.format != "table" {
			return out.print(e.stdout, cfg, nil)
		}
		var rows [][]string
		for _, n := range cfg.names() {
			c := cfg.Contexts[n]
			cur := ""
			if n == cfg.CurrentContext {
				cur = "*"
			}
			rows = append(rows, []string{cur, n, c.Catalog, c.Regions, c.Token.String()})
		}
		if len(rows) == 0 {
			fmt.Fprintf(e.stderr, "no contexts in %s\n", displayPath(path()))
			return nil
		}
		return table(e.stdout, []string{"CURRENT", "NAME", "CATALOG", "REGIONS", "TOKEN"}, rows)
	})

	currentContext := &cobra.Command{
		Use:   "current-context",
		Short: "print the current context's name (exit 1 if there is none)",
		Args:  noArgs,
		RunE: e.action(func(ctx context.Context, _ []string) error {
			cfg, err := loadConfig(path())
			if err != nil {
				return err
			}
			if cfg.CurrentContext == "" {
				return finding("no current context in %s", displayPath(path()))
			}
			_, err = fmt.Fprintln(e.stdout, cfg.CurrentContext)
			return err
		}),
	}

	completeContexts := func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		cfg, err := loadConfig(path())
		if err != nil || len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return cfg.names(), cobra.ShellCompDirectiveNoFileComp
	}
	useContext := &cobra.Command{
		Use:               "use-context NAME",
		Short:             "make NAME the current context",
		Args:              exactArgs(1),
		ValidArgsFunction: completeContexts,
		RunE: e.action(func(ctx context.Context, args []string) error {
			cfg, err := loadConfig(path())
			if err != nil {
				return err
			}
			if cfg.Contexts[args[0]] == nil {
				return usagef("context %q: no such context in %s (have: %s)", args[0], displayPath(path()), strings.Join(cfg.names(), ", "))
			}
			cfg.CurrentContext = args[0]
			if err := cfg.save(path()); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "switched to context %q\n", args[0])
			return nil
		}),
	}

	cmd.AddCommand(getContexts, currentContext, useContext, newSetContextCmd(e, path))
	return cmd
}

func newSetContextCmd(e *env, path func() string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set-context NAME [--catalog URL] [--regions R=HOST:PORT,…] [--token-env VAR | --token-file PATH] …",
		Short: "create a context or change the settings given as flags (credentials by reference only)",
		Long: `set-context creates context NAME or changes the settings given as flags, leaving the others
as they are (an empty value removes a setting). Tokens are referenced, never stored: --token-env
names an environment variable, --token-file a file (mode 0600) holding the token; likewise
--lookup-token-env/-file and --scan-token-env/-file. --current also makes NAME the current context.`,
		Args: exactArgs(1),
	}
	fs := cmd.Flags()
	var c contextConfig
	var tokenEnv, tokenFile, lookupEnv, lookupFile, scanEnv, scanFile, literal string
	var current bool
	fs.StringVar(&c.Catalog, "catalog", "", "catalog admin REST API base URL")
	fs.StringVar(&c.Regions, "regions", "", "regions and their tcs gRPC addresses, REGION=HOST:PORT,…")
	fs.BoolVar(&c.Insecure, "insecure", false, "plaintext everywhere (see tcsctl get --help)")
	fs.BoolVar(&c.TLS, "tls", false, "TLS to loopback regions too")
	fs.StringVar(&c.CAFile, "ca-file", "", "PEM CA bundle")
	fs.StringVar(&c.Cert, "cert", "", "PEM client certificate for mutual TLS")
	fs.StringVar(&c.Key, "key", "", "PEM private key of --cert")
	fs.StringVar(&c.ServerName, "server-name", "", "server name to verify in certificates")
	fs.StringVar(&tokenEnv, "token-env", "", "environment variable holding the catalog token")
	fs.StringVar(&tokenFile, "token-file", "", "file (mode 0600) holding the catalog token")
	fs.StringVar(&lookupEnv, "lookup-token-env", "", "environment variable holding the regions' lookup token")
	fs.StringVar(&lookupFile, "lookup-token-file", "", "file (mode 0600) holding the regions' lookup token")
	fs.StringVar(&scanEnv, "scan-token-env", "", "environment variable holding the regions' replica-scan token")
	fs.StringVar(&scanFile, "scan-token-file", "", "file (mode 0600) holding the regions' replica-scan token")
	fs.BoolVar(&current, "current", false, "also make NAME the current context")
	for _, f := range []string{"token", "lookup-token", "scan-token"} {
		fs.StringVar(&literal, f, "", "refused: tokens are never stored")
		_ = fs.MarkHidden(f)
	}
	cmd.RunE = e.action(func(ctx context.Context, args []string) error {
		name := args[0]
		for _, f := range []string{"token", "lookup-token", "scan-token"} {
			if fs.Changed(f) {
				return usagef("--%s: tokens are never stored in the config file: use --%s-env VARIABLE or --%s-file PATH", f, f, f)
			}
		}
		if name == "" || strings.ContainsAny(name, " \t\n/") {
			return usagef("context name %q: want a non-empty name without spaces or /", name)
		}
		if fs.Changed("catalog") && c.Catalog != "" {
			if u, err := url.Parse(c.Catalog); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("--catalog %q: want an http:// or https:// URL", c.Catalog)
			}
		}
		if fs.Changed("regions") && c.Regions != "" {
			if _, err := parseRegions(c.Regions); err != nil {
				return &usageError{err}
			}
		}
		refs := []struct {
			flag      string
			env, file string
			dst       func(cur *contextConfig) **credentialRef
		}{
			{"token", tokenEnv, tokenFile, func(cur *contextConfig) **credentialRef { return &cur.Token }},
			{"lookup-token", lookupEnv, lookupFile, func(cur *contextConfig) **credentialRef { return &cur.LookupToken }},
			{"scan-token", scanEnv, scanFile, func(cur *contextConfig) **credentialRef { return &cur.ScanToken }},
		}
		for _, r := range refs {
			envSet, fileSet := fs.Changed(r.flag+"-env"), fs.Changed(r.flag+"-file")
			if envSet && fileSet && r.env != "" && r.file != "" {
				return usagef("--%s-env and --%s-file exclude each other", r.flag, r.flag)
			}
			if envSet && r.env != "" && !envName.MatchString(r.env) {
				return usagef("--%s-env %q: not an environment variable name", r.flag, r.env)
			}
		}
		cfg, err := loadConfig(path())
		if err != nil {
			return err
		}
		if cfg.Contexts == nil {
			cfg.Contexts = map[string]*contextConfig{}
		}
		cur := cfg.Contexts[name]
		verb := "modified"
		if cur == nil {
			cur, verb = &contextConfig{}, "created"
			cfg.Contexts[name] = cur
		}
		set := func(flag string, dst *string, v string) {
			if fs.Changed(flag) {
				*dst = v
			}
		}
		set("catalog", &cur.Catalog, c.Catalog)
		set("regions", &cur.Regions, c.Regions)
		set("ca-file", &cur.CAFile, c.CAFile)
		set("cert", &cur.Cert, c.Cert)
		set("key", &cur.Key, c.Key)
		set("server-name", &cur.ServerName, c.ServerName)
		if fs.Changed("insecure") {
			cur.Insecure = c.Insecure
		}
		if fs.Changed("tls") {
			cur.TLS = c.TLS
		}
		for _, r := range refs {
			dst := r.dst(cur)
			switch {
			case fs.Changed(r.flag+"-env") && r.env != "":
				*dst = &credentialRef{Env: r.env}
			case fs.Changed(r.flag+"-file") && r.file != "":
				*dst = &credentialRef{File: r.file}
			case fs.Changed(r.flag+"-env") || fs.Changed(r.flag+"-file"):
				*dst = nil
			}
		}
		if current {
			cfg.CurrentContext = name
		}
		if err := cfg.save(path()); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "context %q %s in %s\n", name, verb, path())
		return nil
	})
	return cmd
}
